"""Each reader's grades in their own journal: every read kept and re-read, drafts, the old
one-grade file read as one reader's grade, two reader processes grading at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.review.drafts import clear_draft, has_draft, load_draft, save_draft
from napari_imilia.review.grade import GRADE_FILE, SlideGrade
from napari_imilia.review.grading import commit_grade, grading_state
from napari_imilia.review.reads import (
    POST_AI,
    PRE_AI,
    READS_DIR,
    GradeRead,
    append_read,
    latest_grade,
    load_slide_reads,
    reader_key,
)

SLIDE = "case_07"


def _read(reader: str, nancy: int, phase: str = POST_AI, **grade) -> GradeRead:
    return GradeRead(SLIDE, reader, phase, SlideGrade(nancy=nancy, **grade))


def test_every_read_is_kept_and_the_latest_shown(tmp_path: Path) -> None:
    folder = tmp_path / SLIDE
    append_read(folder, _read("Dr A", 1, PRE_AI, note="patchy"))
    append_read(folder, _read("Dr B", 3))
    saved = append_read(folder, _read("Dr A", 2, items={"erosion": 1}))
    reads = load_slide_reads(folder, SLIDE)
    assert [(r.reader, r.phase, r.grade.nancy) for r in reads.reads] == [
        ("Dr A", PRE_AI, 1),
        ("Dr B", POST_AI, 3),
        ("Dr A", POST_AI, 2),
    ]
    assert reads.latest().read_id == saved.read_id and reads.readers() == ["Dr A", "Dr B"]
    assert reads.first_opinion("Dr A").grade.note == "patchy"
    assert reads.latest("Dr A").grade.items == {"erosion": 1}
    assert reads.latest("Dr A").grade.reviewer == "Dr A"  # the reader signs the grade
    assert latest_grade(folder, SLIDE).nancy == 2
    files = sorted(p.name for p in (folder / READS_DIR).iterdir())
    assert files == sorted(f"{reader_key(r)}.jsonl" for r in ("Dr A", "Dr B"))
    assert reader_key("Dr A") != reader_key("dr a")  # two names never share a file


def test_bad_lines_are_skipped_with_a_reason(tmp_path: Path) -> None:
    folder = tmp_path / SLIDE
    append_read(folder, _read("Dr A", 1))
    own = folder / READS_DIR / f"{reader_key('Dr A')}.jsonl"
    forged = _read("Dr B", 4).to_dict()  # Dr B's grade written into Dr A's file
    with open(own, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"format": "napari-imilia-grade-read", "read": forged}) + "\n")
        handle.write('{"format": "napari-imilia-grade-read", "read": {"slide_id": "case_0')
    reads = load_slide_reads(folder, SLIDE)
    assert [r.grade.nancy for r in reads.reads] == [1]
    assert any("does not own this file" in w for w in reads.warnings)
    assert any("cut short by a crash" in w for w in reads.warnings)
    append_read(folder, _read("Dr A", 2))  # after a torn line: a new line, nothing lost
    assert [r.grade.nancy for r in load_slide_reads(folder, SLIDE).reads] == [1, 2]
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("")
    (folder / READS_DIR / f"{reader_key('Dr C')}.jsonl").symlink_to(outside)
    with pytest.raises(DataError, match=r"regular file|cannot be written|outside the results"):
        append_read(folder, _read("Dr C", 0))
    assert outside.read_text() == ""  # nothing appended through the link
    warnings = load_slide_reads(folder, SLIDE).warnings
    assert any("outside the results folder" in w for w in warnings)  # the gate refused it
    with pytest.raises(DataError, match="phase"):
        append_read(folder, _read("Dr A", 2, "during-AI"))
    with pytest.raises(DataError, match="0-10"):
        append_read(folder, _read("Dr A", 2, items={"erosion": 11}))


def test_an_old_slide_grade_file_is_one_readers_grade(tmp_path: Path) -> None:
    folder = tmp_path / SLIDE
    folder.mkdir()
    old = {"nancy": 3, "activity": "", "model_agreement": "agree", "note": "abscess",
           "reviewer": "Dr Old", "updated_utc": "2025-01-02T03:04:05Z"}  # fmt: skip
    header = {"format": "napari-imilia-slide-grade", "schema_version": 1, "slide_id": SLIDE}
    (folder / GRADE_FILE).write_text(json.dumps({**header, "grade": old}))
    reads = load_slide_reads(folder, SLIDE)
    (legacy,) = reads.reads
    assert legacy.legacy and legacy.reader == "Dr Old" and legacy.phase == POST_AI
    assert legacy.grade.nancy == 3 and legacy.utc == "2025-01-02T03:04:05Z"
    # a newer copy kept by an old cohort file wins over the file; a new read over both
    copy = SlideGrade(nancy=4, reviewer="Dr Old", updated_utc="2025-02-01T00:00:00Z")
    assert load_slide_reads(folder, SLIDE, legacy=copy).latest().grade.nancy == 4
    append_read(folder, _read("Dr New", 1))
    assert latest_grade(folder, SLIDE).nancy == 1
    assert load_slide_reads(folder, SLIDE, reader="Dr Old").latest().legacy
    assert (folder / GRADE_FILE).read_text().count('"nancy": 3') == 1  # never rewritten


def test_drafts_per_reader_and_slide(tmp_path: Path) -> None:
    folder = tmp_path / SLIDE
    save_draft(folder, SLIDE, "Dr A", SlideGrade(nancy=2, note="half typed"), PRE_AI)
    save_draft(folder, SLIDE, "Dr B", SlideGrade(note="other"), POST_AI)
    draft = load_draft(folder, SLIDE, "Dr A")
    assert draft.grade.note == "half typed" and draft.phase == PRE_AI and draft.saved_utc
    assert load_draft(folder, "other_slide", "Dr A") is None  # a draft of another slide
    assert has_draft(folder, "Dr B") and load_draft(folder, SLIDE, "Dr B").grade.note == "other"
    save_draft(folder, SLIDE, "Dr A", SlideGrade(), PRE_AI)  # emptied: no draft
    assert load_draft(folder, SLIDE, "Dr A") is None and has_draft(folder, "Dr B")
    clear_draft(folder, "Dr B")
    assert not has_draft(folder, "Dr B")


def test_commit_grade_outside_a_study(tmp_path: Path) -> None:
    save_draft(tmp_path / SLIDE, SLIDE, "Dr A", SlideGrade(nancy=1), POST_AI)
    read = commit_grade(tmp_path, SLIDE, "Dr A", SlideGrade(nancy=1, note="n"), started_utc="t0")
    assert read.phase == POST_AI and read.study_id == "" and read.started_utc == "t0"
    state = grading_state(tmp_path, SLIDE, "Dr A")
    assert state.draft is None and state.committed.read_id == read.read_id
    assert not state.model_hidden and state.next_phase == POST_AI
    with pytest.raises(ImiliaError, match="Nancy grade or an activity"):
        commit_grade(tmp_path, SLIDE, "Dr A", SlideGrade())
    with pytest.raises(ImiliaError):
        commit_grade(tmp_path, "../escape", "Dr A", SlideGrade(nancy=1))


# One reader's burst of grades on the same slides as another reader's, started together.
WRITER = """
import sys, time
from pathlib import Path
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.grading import commit_grade
root, reader, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
while not (root / "go").exists():
    time.sleep(0.005)
for i in range(count):
    commit_grade(root, f"slide_{i % 5}", reader, SlideGrade(nancy=i % 5, note=f"{reader} {i}"))
print("done", flush=True)
"""


def test_two_reader_processes_grading_at_once_lose_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = []
    for reader in ("Dr A", "Dr B", "Dr A"):  # Dr A in two windows too
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), reader, "60"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout.readline().strip() == "ready"
        children.append(child)
    (tmp_path / "go").touch()
    for child in children:
        assert child.stdout.read().strip() == "done" and child.wait(timeout=120) == 0
    notes = []
    for i in range(5):
        reads = load_slide_reads(tmp_path / f"slide_{i}", f"slide_{i}")
        assert reads.warnings == []
        notes += [r.grade.note for r in reads.reads]
    assert len(notes) == 180
    assert sorted(notes) == sorted(
        [f"Dr A {i}" for i in range(60)] * 2 + [f"Dr B {i}" for i in range(60)]
    )
