"""The reviewer identity: one checked name per user, kept in the user's config folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_imilia.errors import ImiliaError
from napari_imilia.review.reviewer import (
    MAX_REVIEWER_CHARS,
    REVIEWER_FILE,
    check_reviewer_name,
    load_reviewer,
    save_reviewer,
)
from napari_imilia.user_dirs import CONFIG_ENV, config_dir


def test_saved_name_is_read_back_from_the_config_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "cfg"))
    assert load_reviewer() == ""  # nobody yet
    assert save_reviewer("  Dr. Émilie Laurent ") == "Dr. Émilie Laurent"
    assert config_dir() == tmp_path / "cfg"
    data = json.loads((tmp_path / "cfg" / REVIEWER_FILE).read_text(encoding="utf-8"))
    assert data == {"reviewer": "Dr. Émilie Laurent"}
    assert load_reviewer() == "Dr. Émilie Laurent"
    assert [p.name for p in (tmp_path / "cfg").iterdir()] == [REVIEWER_FILE]  # no temp file


@pytest.mark.parametrize(
    "bad", ["", "   ", "a\nb", "tab\there", "x" * (MAX_REVIEWER_CHARS + 1), "zero\u200bwidth"]
)
def test_what_cannot_be_a_name_is_refused(bad: str) -> None:
    with pytest.raises(ImiliaError, match="reviewer name"):
        check_reviewer_name(bad)


def test_an_unreadable_or_crafted_file_gives_no_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path))
    for content in ("{not json", '["list"]', '{"reviewer": 5}', '{"reviewer": "a\\nb"}'):
        (tmp_path / REVIEWER_FILE).write_text(content, encoding="utf-8")
        assert load_reviewer() == ""
