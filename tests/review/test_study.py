"""The reader study: seeded orders recorded, which phase a grade gets, when the model is
hidden, pre-AI and post-AI reads both kept, progress; the session's withheld prediction."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.review.bundle import slide_grade_frame
from napari_imilia.review.drafts import save_draft
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.grading import commit_grade, grading_state, shown_grade
from napari_imilia.review.reads import POST_AI, PRE_AI, load_slide_reads
from napari_imilia.review.reviewer import save_reviewer
from napari_imilia.review.session import ReviewSession
from napari_imilia.review.study import (
    STUDY_FILE,
    add_reader,
    blinding_reason,
    create_study,
    load_study,
    reader_order,
    reader_progress,
)

SLIDES = [f"s{i:02d}" for i in range(10)]


def test_orders_are_seeded_recorded_and_per_reader(tmp_path: Path) -> None:
    study = create_study(tmp_path, SLIDES, ["A", "B"], seed=42, name="pilot", created_by="C")
    again = load_study(tmp_path)
    assert again == study and again.orders["A"] == reader_order(42, "A", tuple(SLIDES))
    assert sorted(again.orders["A"]) == SLIDES and again.orders["A"] != again.orders["B"]
    assert again.orders["A"] != tuple(SLIDES)  # shuffled
    with pytest.raises(ImiliaError, match="already holds a study"):
        create_study(tmp_path, SLIDES, ["D"])
    added = add_reader(tmp_path, "D")
    assert added.order_for("D") == reader_order(42, "D", tuple(SLIDES)) == study.order_for("D")
    with pytest.raises(ImiliaError, match="at least one reader"):
        create_study(tmp_path / "other", SLIDES, [])
    with pytest.raises(ImiliaError, match="control character"):
        create_study(tmp_path / "other", SLIDES, ["bad\nname"])


def test_blinded_second_read_keeps_both_reads(tmp_path: Path) -> None:
    create_study(tmp_path, SLIDES, ["A", "B"], blinded=True, second_read=True, seed=1)
    assert "commit your grade" in blinding_reason(tmp_path, "s03", "A")
    assert "set your reviewer name" in blinding_reason(tmp_path, "s03", "")
    assert blinding_reason(tmp_path, "not_in_study", "A") == ""
    first = commit_grade(tmp_path, "s03", "A", SlideGrade(nancy=3, note="blind"))
    assert first.phase == PRE_AI and first.study_id == load_study(tmp_path).study_id
    assert blinding_reason(tmp_path, "s03", "A") == ""  # A sees the model now...
    assert blinding_reason(tmp_path, "s03", "B") != ""  # ...B still does not
    second = commit_grade(tmp_path, "s03", "A", SlideGrade(nancy=1, note="after AI"))
    third = commit_grade(tmp_path, "s03", "A", SlideGrade(nancy=2, note="changed mind"))
    assert second.phase == third.phase == POST_AI
    reads = load_slide_reads(tmp_path / "s03", "s03")
    assert [(r.phase, r.grade.nancy) for r in reads.reads] == [(PRE_AI, 3), (POST_AI, 1),
                                                              (POST_AI, 2)]  # fmt: skip
    state = grading_state(tmp_path, "s03", "A")
    assert state.pre_ai.grade.nancy == 3 and state.post_ai.grade.nancy == 2  # never overwritten
    with pytest.raises(ImiliaError, match="reviewer name"):
        commit_grade(tmp_path, "s04", "", SlideGrade(nancy=1))
    with pytest.raises(ImiliaError, match="Nancy grade or an activity"):
        commit_grade(tmp_path, "s04", "A", SlideGrade(note="only a note"))
    save_draft(tmp_path / "s05", "s05", "A", SlideGrade(nancy=0), PRE_AI)
    progress = reader_progress(load_study(tmp_path), tmp_path, "A")
    assert progress.text() == "1 of 10 read, 1 read again after the model, 1 draft"


def test_in_a_study_a_reader_is_shown_only_their_own_grade(tmp_path: Path) -> None:
    commit_grade(tmp_path, "s01", "B", SlideGrade(nancy=4))  # before the study
    assert shown_grade(tmp_path, "s01", "A").nancy == 4  # no study: the newest by anyone
    create_study(tmp_path, SLIDES, ["A", "B"], seed=1)
    commit_grade(tmp_path, "s02", "B", SlideGrade(nancy=3))
    assert shown_grade(tmp_path, "s02", "A") is None  # B's grade stays B's
    commit_grade(tmp_path, "s02", "A", SlideGrade(nancy=1))
    assert shown_grade(tmp_path, "s02", "A").nancy == 1
    assert shown_grade(tmp_path, "s02", "B").nancy == 3
    session = SimpleNamespace(results_root=tmp_path, slide_id="s02")
    save_reviewer("A")
    (row,) = slide_grade_frame(session).to_dict("records")  # the Export dock's bundle
    assert row["nancy"] == 1 and row["reviewer"] == "A"


def test_without_second_read_the_blind_grade_is_final(tmp_path: Path) -> None:
    create_study(tmp_path, SLIDES, ["A"], blinded=True, second_read=False, seed=1)
    commit_grade(tmp_path, "s01", "A", SlideGrade(nancy=2))
    assert grading_state(tmp_path, "s01", "A").next_phase is None
    with pytest.raises(ImiliaError, match="final"):
        commit_grade(tmp_path, "s01", "A", SlideGrade(nancy=4))
    assert [r.grade.nancy for r in load_slide_reads(tmp_path / "s01", "s01").reads] == [2]


def test_open_study_and_a_damaged_study_file(tmp_path: Path) -> None:
    create_study(tmp_path, SLIDES, ["A"], blinded=False, seed=1)
    assert blinding_reason(tmp_path, "s01", "A") == ""
    assert commit_grade(tmp_path, "s01", "A", SlideGrade(nancy=2)).phase == POST_AI
    (tmp_path / STUDY_FILE).write_text('{"format": "napari-imilia-reader-study", "study": [')
    with pytest.raises(DataError):
        load_study(tmp_path)
    assert "stays hidden" in blinding_reason(tmp_path, "s01", "A")  # unsure: hidden
    data = {"format": "napari-imilia-reader-study", "study": {"study_id": "x", "readers": ["A"],
            "slide_ids": ["s1"], "seed": 1, "blinded": "no"}}  # fmt: skip
    (tmp_path / STUDY_FILE).write_text(json.dumps(data))
    with pytest.raises(DataError, match="true or false"):
        load_study(tmp_path)


def test_session_withholds_and_reveals_its_prediction() -> None:
    slide = SimpleNamespace(slide_id="s01")
    session = ReviewSession(slide, Path("/nowhere"))
    result = SimpleNamespace(slide_id="s01", score=0.9, info={})
    seen: list = []
    session.prediction_changed.connect(seen.append)
    session.set_prediction(result)
    session.withhold_prediction("blinded study")
    assert session.prediction is None and seen == [result, None]
    newer = SimpleNamespace(slide_id="s01", score=0.7, info={})
    session.set_prediction(newer)  # a run finished while hidden: kept aside, not shown
    assert session.prediction is None and seen == [result, None]
    session.reveal_prediction()
    assert session.prediction is newer and seen[-1] is newer and not session.withheld_reason
    with pytest.raises(ImiliaError):
        session.withhold_prediction("")
