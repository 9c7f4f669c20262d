"""Cohort review (no Qt): build from a folder and a CSV, score all, grade, restart, recover."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.cohort.review import COHORT_FILE, Cohort, CohortFileError
from napari_imilia.cohort.scoring import score_unscored
from napari_imilia.errors import DataError
from napari_imilia.progress import RunProgress
from napari_imilia.review.grade import (
    GRADE_FILE,
    NANCY_GRADES,
    SlideGrade,
    load_slide_grade,
    nancy_label,
)
from napari_imilia.review.reads import latest_grade
from support.cohort_data import N_SLIDES, cohort_data, scored_results  # noqa: F401 (fixtures)


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A private copy of the scored cohort's results folder."""
    return Path(shutil.copytree(scored_results, tmp_path / "results", symlinks=True))


def test_build_from_folder(cohort_data, tmp_path: Path) -> None:  # noqa: F811
    cohort = Cohort.build(cohort_data["folder"], tmp_path / "res")
    ids = [item.slide_id for item in cohort]
    assert ids == ["broken", *(f"case_{i:02d}" for i in range(8))] + [
        f"case_{i:02d}" for i in range(8, N_SLIDES)
    ]  # sorted by path: slides/ then slides/sub/
    broken = cohort[0]
    assert broken.status == "error" and "broken.svs" in broken.error
    assert {item.status for item in cohort.items[1:]} == {"not scored"}
    assert cohort.unscored() == list(range(1, N_SLIDES + 1))
    assert cohort.summary_text() == f"0 of {N_SLIDES + 1} reviewed, 0 scored, 1 error"
    saved = json.loads((tmp_path / "res" / COHORT_FILE).read_text())
    assert [s["slide_id"] for s in saved["slides"]] == ids


def test_build_from_csv_with_bad_rows(cohort_data, tmp_path: Path) -> None:  # noqa: F811
    csv = tmp_path / "cohort.csv.in.csv"
    table = pd.read_csv(cohort_data["csv"], dtype=str)
    table["slide"] = [str(cohort_data["csv"].parent / p) for p in table["slide"]]
    twin = tmp_path / "elsewhere" / "case_01.tiff"
    twin.parent.mkdir()
    shutil.copy(table["slide"].iloc[1], twin)
    extra = pd.DataFrame(
        [
            {"slide": str(tmp_path / "gone.svs"), "active": "1", "nancy": "4"},
            {"slide": str(twin), "active": "0", "nancy": "0"},
        ]
    )
    pd.concat([table, extra]).to_csv(csv, index=False)
    cohort = Cohort.build(csv, tmp_path / "res")
    assert len(cohort) == N_SLIDES + 3
    assert cohort[0].labels == {"active": "0", "nancy": "0"}
    gone = cohort[cohort.index_of("gone")]
    assert gone.status == "error" and "slide file not found" in gone.error
    duplicate = cohort.items[-1]
    assert duplicate.slide_id == "case_01" and duplicate.status == "error"
    assert "duplicate slide id 'case_01'" in duplicate.error
    assert cohort[cohort.index_of("case_01")].status == "not scored"  # the first one goes on
    assert cohort.counts()["error"] == 3  # broken, gone, duplicate


def test_empty_folder_and_bad_sources(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no slide found in .*empty"):
        Cohort.build(tmp_path / "empty", tmp_path / "res")
    with pytest.raises(DataError, match="no slide file matches"):
        Cohort.build(str(tmp_path / "*.svs"), tmp_path / "res")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("name,label\na,1\n")
    with pytest.raises(DataError, match="no slide path column"):
        Cohort.build(bad_csv, tmp_path / "res")
    with pytest.raises(DataError, match="no cohort in"):
        Cohort.open(tmp_path / "res")
    assert not (tmp_path / "res" / COHORT_FILE).exists()


def test_scored_cohort_reads_cached_results(scored_copy: Path) -> None:
    cohort = Cohort.open(scored_copy)
    assert cohort.counts() == {
        "not scored": 0,
        "scored": N_SLIDES,
        "in review": 0,
        "reviewed": 0,
        "error": 1,
    }
    for index, item in enumerate(cohort.items[1:], start=1):
        info = json.loads((cohort.slide_dir(index) / "slide.json").read_text())
        assert item.score == pytest.approx(info["score"]) and item.n_tiles == info["n_tiles"]
    listed = pd.read_csv(scored_copy / "cohort.csv")
    assert len(listed) == N_SLIDES + 1  # every slide, not only those scored last
    assert listed.set_index("slide_id").loc["broken", "status"] == "error"


def test_grade_restart_and_recover(scored_copy: Path) -> None:
    cohort = Cohort.open(scored_copy)
    first, second = cohort.index_of("case_00"), cohort.index_of("case_03")
    cohort.set_current(first)
    cohort.set_grade(first, SlideGrade(nancy=3, model_agreement="agree", note="abscess"))
    cohort.set_grade(second, SlideGrade(nancy=1, activity="active", reviewer="dr b"))
    cohort.set_current(cohort.step(+1))
    assert cohort.current_index == first + 1

    again = Cohort.open(scored_copy)  # a restart
    assert again.current_index == first + 1
    assert again[first].grade.nancy == 3 and again[first].grade.note == "abscess"
    assert again[first].grade.effective_activity == "active"
    assert again[second].grade.effective_activity == "active"  # set by hand, not from Nancy 1
    assert again[first].status == "reviewed" and again[first + 1].status == "in review"
    assert again.summary_text() == f"2 of {N_SLIDES + 1} reviewed, {N_SLIDES} scored, 1 error"
    assert latest_grade(scored_copy / "case_00", "case_00") == again[first].grade
    assert not (scored_copy / "case_00" / GRADE_FILE).exists()  # reads, not the old file

    # the cohort file damaged: a clear error, the file kept aside, grades come back
    path = scored_copy / COHORT_FILE
    path.write_text('{"format": "napari-imilia-cohort", "slides": [', encoding="utf-8")
    with pytest.raises(CohortFileError, match=r"could not be read.*kept as") as caught:
        Cohort.open(scored_copy)
    assert caught.value.backup.read_text().startswith('{"format"') and not path.exists()
    rebuilt = Cohort.build(scored_copy)  # from the results folder's cohort.csv
    assert rebuilt[rebuilt.index_of("case_00")].grade.nancy == 3
    assert rebuilt[rebuilt.index_of("case_03")].grade.reviewer == "dr b"


def test_slide_removed_between_sessions(scored_copy: Path, tmp_path: Path) -> None:
    cohort = Cohort.open(scored_copy)
    index = cohort.index_of("case_02")
    cohort.set_grade(index, SlideGrade(nancy=0))
    moved = tmp_path / "moved.tiff"
    shutil.move(cohort[index].path, moved)
    try:
        reopened = Cohort.open(scored_copy)
        item = reopened[index]
        assert item.status == "error" and "slide file not found" in item.error
        assert item.grade.nancy == 0  # the review is not lost
        assert reopened.step(+1) is not None and index not in reopened.unscored()
    finally:
        shutil.move(moved, cohort[index].path)
    assert Cohort.open(scored_copy)[index].status == "reviewed"


def test_score_all_progress_and_cancel(cohort_data, tmp_path: Path) -> None:  # noqa: F811
    cohort = Cohort.build(str(cohort_data["folder"] / "sub" / "case_0[89].tiff"), tmp_path)
    assert [item.slide_id for item in cohort] == ["case_08", "case_09"]
    cancel = threading.Event()
    seen: list[RunProgress] = []

    def on_progress(progress: RunProgress) -> None:
        seen.append(progress)
        cancel.set()  # stop after the first slide

    final = score_unscored(
        cohort, cancel=cancel, on_progress=on_progress, model_path=cohort_data["model"]
    )
    assert final.cancelled and final.done == 1 and final.total == 2
    assert seen[0].text().startswith("1 of 2 slides scored")
    assert [item.status for item in cohort] == ["scored", "not scored"]  # not 'error'
    assert Cohort.open(tmp_path)[1].status == "not scored"
    final = score_unscored(cohort, model_path=cohort_data["model"])
    assert final.done == 1 and [item.status for item in cohort] == ["scored", "scored"]


def test_grade_validation(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Nancy grade must be 0, 1, 2, 3 or 4"):
        SlideGrade.from_dict({"nancy": 5})
    with pytest.raises(DataError, match="'active' or 'inactive'"):
        SlideGrade.from_dict({"activity": "maybe"})
    assert SlideGrade(nancy=2).effective_activity == "active"
    assert SlideGrade(nancy=1).effective_activity == "inactive"
    assert not SlideGrade(note="x").is_graded
    assert nancy_label(4).startswith("4 - severely active: ulceration")
    assert set(NANCY_GRADES) == {0, 1, 2, 3, 4}
    (tmp_path / GRADE_FILE).write_text("{not json")
    with pytest.warns(UserWarning, match="could not be read"):
        assert load_slide_grade(tmp_path, "x") is None
    assert list(tmp_path.glob(f"{GRADE_FILE}.corrupt-*"))


def test_grade_is_carried_into_the_export_bundle(scored_copy: Path, tmp_path: Path) -> None:
    from napari_imilia.review.bundle import export_review_bundle
    from napari_imilia.review.session import ReviewSession

    cohort = Cohort.open(scored_copy)
    index = cohort.index_of("case_04")
    session = ReviewSession.open(cohort[index].path, scored_copy)
    written = export_review_bundle(session, tmp_path / "export")
    assert not any(p.name.endswith("slide_grade.csv") for p in written)  # not graded yet
    cohort.set_grade(index, SlideGrade(nancy=2, model_agreement="agree", note="focal"))
    written = export_review_bundle(session, tmp_path / "export")
    (grade_csv,) = [p for p in written if p.name == "case_04.slide_grade.csv"]
    row = pd.read_csv(grade_csv).iloc[0]
    assert (row["slide_id"], row["nancy"], row["model_agreement"], row["note"]) == (
        "case_04",
        2,
        "agree",
        "focal",
    )
    meta = json.loads(grade_csv.with_name("case_04.slide_grade.meta.json").read_text())
    assert meta["imilia"]["model_sha256"] == session.prediction.info["model_sha256"]


def test_a_saved_unscored_cohort_reopens_from_its_folder(cohort_data, tmp_path: Path) -> None:  # noqa: F811
    first = Cohort.build(str(cohort_data["folder"] / "sub" / "*.tiff"), tmp_path)
    first.set_current(1)
    assert not (tmp_path / "cohort.csv").exists()
    again = Cohort.build(tmp_path)  # the results folder: no slide in it, its cohort file
    assert [item.slide_id for item in again] == [item.slide_id for item in first]
    assert again.current_index == 1
