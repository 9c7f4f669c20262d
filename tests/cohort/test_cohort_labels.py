"""A labels CSV labels the cohort's slides and never changes which slides it has; cohort
files keep absolute paths, so a cohort built with relative paths reopens from anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from napari_imilia.cli import main
from napari_imilia.cohort.review import COHORT_FILE, Cohort
from napari_imilia.errors import DataError


@pytest.fixture
def study(tmp_path: Path, tiff_writer) -> Path:
    """The issue's study: study/slides/biopsy_0{1,2,3}.tiff and study/cohort/ for CSVs."""
    slides = tmp_path / "study" / "slides"
    slides.mkdir(parents=True)
    for k in (1, 2, 3):
        tiff_writer(slides / f"biopsy_0{k}.tiff", (512, 512), tile_px=256)
    (tmp_path / "study" / "cohort").mkdir()
    return tmp_path / "study"


def built_from_the_folder(study: Path) -> Path:
    """A cohort built from the slide folder with absolute paths (as the Cohort dock does)."""
    results = study / "results"
    Cohort.build(str(study / "slides"), str(results))
    return results


def saved_slides(results: Path) -> list[tuple[str, str, dict]]:
    data = json.loads((results / COHORT_FILE).read_text())
    return [(s["slide_id"], s["path"], s["labels"]) for s in data["slides"]]


def test_the_issue_labels_csv_labels_and_adds_no_slide(study, monkeypatch, capsys):
    results = built_from_the_folder(study)
    before = saved_slides(results)
    (study / "cohort" / "labels.csv").write_text(
        "slide,active,nancy\n"
        "slides/biopsy_01.svs,1,3\n"  # as people write it: not beside the CSV: by slide id
        "../slides/biopsy_02.tiff,0,0\n"  # relative to the CSV: by path
        "zzz,1,2\n"
        "yyy,0,1\n"
    )
    monkeypatch.chdir(study.parent)
    code = main(["report", "study/results", "--labels", "study/cohort/labels.csv"])
    out = capsys.readouterr().out
    assert code == 0
    assert "warning: 2 label rows match no slide of the cohort: zzz, yyy" in out.splitlines()
    after = saved_slides(results)
    assert [(i, p) for i, p, _ in after] == [(i, p) for i, p, _ in before]
    labels = {slide_id: labels for slide_id, _, labels in after}
    assert labels == {
        "biopsy_01": {"active": "1", "nancy": "3"},
        "biopsy_02": {"active": "0", "nancy": "0"},
        "biopsy_03": {},
    }
    reopened = Cohort.open(results)
    assert len(reopened) == 3 and reopened.counts()["error"] == 0


def test_a_labels_file_matching_nothing_is_an_error_and_changes_no_byte(study, capsys):
    results = built_from_the_folder(study)
    saved = (results / COHORT_FILE).read_bytes()
    csv = study / "cohort" / "labels.csv"
    csv.write_text("slide,active\nzzz.svs,1\nother/yyy.svs,0\n")
    assert main(["report", str(results), "--labels", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matches a slide of the cohort" in err
    assert "zzz.svs" in err and "nothing was changed" in err
    assert (results / COHORT_FILE).read_bytes() == saved
    assert not (results / "cohort_report.html").exists()


def test_labels_failing_on_a_predict_results_folder_leave_no_cohort_file(study, capsys):
    results = study / "predicted"
    results.mkdir()
    slide = study / "slides" / "biopsy_01.tiff"
    (results / "cohort.csv").write_text(
        f"slide,slide_id,status,score,n_tiles,error\n{slide},biopsy_01,error,,,failed\n"
    )
    csv = study / "cohort" / "labels.csv"
    csv.write_text("slide,active\nzzz.svs,1\n")
    assert main(["report", str(results), "--labels", str(csv)]) == 2
    assert not (results / COHORT_FILE).exists()


def test_apply_labels_rows_match_by_path_then_by_one_slide_id(study, tiff_writer):
    other = study / "elsewhere"
    other.mkdir()
    tiff_writer(other / "biopsy_03.tiff", (512, 512), tile_px=256)  # a second biopsy_03
    cohort = Cohort.build(str(study / "slides"), str(study / "results"))
    cohort = Cohort.build(str(other), str(study / "results"))  # appended: 4 slides
    assert [item.slide_id for item in cohort.items].count("biopsy_03") == 2
    csv = study / "cohort" / "labels.csv"
    csv.write_text(
        "path,nancy\n"
        f"{study / 'slides' / 'biopsy_01.tiff'},2\n"  # by path (absolute)
        "/nowhere/biopsy_01.tiff,4\n"  # the same slide by slide id: later rows win
        "biopsy_03.tiff,1\n"  # two slides have this id: matches none
        "../elsewhere/biopsy_03.tiff,3\n"  # by path: the second one
    )
    assert cohort.apply_labels(csv) == 2
    by_path = {Path(item.path): item.labels for item in cohort.items}
    assert by_path[study / "slides" / "biopsy_01.tiff"] == {"nancy": "4"}
    assert by_path[other / "biopsy_03.tiff"] == {"nancy": "3"}
    assert by_path[study / "slides" / "biopsy_03.tiff"] == {}
    assert cohort.warnings == ["1 label row matches no slide of the cohort: biopsy_03.tiff"]
    assert len(Cohort.open(study / "results")) == 4


def test_apply_labels_refuses_an_unreadable_csv(study):
    cohort = Cohort.build(str(study / "slides"), str(study / "results"))
    saved = cohort.path.read_bytes()
    bad = study / "cohort" / "no_path.csv"
    bad.write_text("name,active\nbiopsy_01,1\n")
    with pytest.raises(DataError, match="no slide path column"):
        cohort.apply_labels(bad)
    assert cohort.path.read_bytes() == saved


def test_a_cohort_built_with_relative_paths_reopens_from_another_folder(study, monkeypatch):
    monkeypatch.chdir(study)
    cohort = Cohort.build("slides", "results")
    assert cohort.results_root == study / "results"
    data = json.loads((study / "results" / COHORT_FILE).read_text())
    assert data["source"] == str(study / "slides")
    assert all(Path(s["path"]).is_absolute() for s in data["slides"])
    monkeypatch.chdir(study / "cohort")
    reopened = Cohort.open(study / "results")
    assert len(reopened) == 3 and reopened.counts()["error"] == 0
    again = Cohort.build(str(study / "results"))  # from its saved file, elsewhere
    assert [item.path for item in again.items] == [item.path for item in cohort.items]


def test_slide_paths_a_cohort_file_holds_relative_are_relative_to_its_folder(study, monkeypatch):
    cohort = Cohort.build(str(study / "slides"), str(study / "results"))
    data = json.loads(cohort.path.read_text())
    for record in data["slides"]:
        record["path"] = os.path.relpath(record["path"], study / "results")  # ../slides/...
    cohort.path.write_text(json.dumps(data))
    monkeypatch.chdir(study / "cohort")
    reopened = Cohort.open(study / "results")
    assert [item.path for item in reopened.items] == [item.path for item in cohort.items]
    assert reopened.counts()["error"] == 0


def test_csv_rows_fall_back_to_the_current_folder_only_where_that_finds_the_file(
    study, monkeypatch
):
    from napari_imilia.slide.discover import slides_from_csv

    csv = study / "cohort" / "labels.csv"
    csv.write_text("slide\nslides/biopsy_01.tiff\nslides/absent.tiff\n")
    monkeypatch.chdir(study)
    rows = [row.path for row in slides_from_csv(csv)]
    assert rows == [
        str(study / "slides" / "biopsy_01.tiff"),  # only the current folder finds it
        str(study / "cohort" / "slides" / "absent.tiff"),  # found nowhere: beside the CSV
    ]
