"""Nancy and RHI from item grades in the reports and exports, re-read from the files: the
slide report, the cohort report (CSV and JSON), the bundle's slide_grade.csv (through the
spreadsheet-safe writer) and the reader-study table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.cohort.review import Cohort
from napari_imilia.report import write_cohort_report, write_slide_report
from napari_imilia.report.reader_study import reader_data
from napari_imilia.review.bundle import export_review_bundle
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.indices import ACUTE, CHRONIC, EPI_NEUTROPHILS, EROSION, LP_NEUTROPHILS
from napari_imilia.review.reviewer import save_reviewer
from napari_imilia.review.session import ReviewSession
from support.scored import make_scored_slide

READER = "Dr Ada"
ITEMS = {CHRONIC: 3, LP_NEUTROPHILS: 2, EPI_NEUTROPHILS: 2, EROSION: 1, ACUTE: 2}
NANCY, RHI = 3, 18  # tree: no ulcer, acute moderate-severe -> 3; 3 + 4 + 6 + 5 = 18


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    slide, results = make_scored_slide(tmp_path_factory.mktemp("indices_reports"))
    cohort = Cohort.build(slide, results, reader=READER)
    cohort.set_grade(0, SlideGrade(nancy=NANCY, items=ITEMS), reader=READER)
    return cohort


def test_slide_and_cohort_reports_carry_both_indices(graded: Cohort) -> None:
    page = write_slide_report(graded.slide_dir(0), top_k=0).read_text(encoding="utf-8")
    assert "Robarts histopathology index (RHI)" in page and f"{RHI} / 33" in page
    assert "Nancy from the item grades" in page and "chronic infiltrate 3 (marked increase)" in page
    paths = write_cohort_report(graded)
    row = pd.read_csv(paths["csv"]).iloc[0]
    assert row["nancy_from_items"] == NANCY and row["rhi"] == RHI
    assert row["item_chronic_infiltrate"] == 3 and row["item_acute_infiltrate"] == 2
    assert pd.isna(row["item_eosinophils"])
    slides = json.loads(paths["json"].read_text())["slides"]
    assert slides[0]["rhi"] == RHI and slides[0]["nancy_from_items"] == NANCY
    assert "rhi" in paths["html"].read_text(encoding="utf-8")


def test_bundle_grade_csv_and_reader_table_carry_both_indices(
    graded: Cohort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    save_reviewer(READER)
    item = graded.items[0]
    session = ReviewSession.open(item.path, graded.results_root)
    try:
        files = export_review_bundle(session, tmp_path / "out")
    finally:
        session.close()
    path = next(f for f in files if f.name.endswith(".slide_grade.csv"))
    row = pd.read_csv(path).iloc[0]
    assert row["rhi"] == RHI and row["nancy_from_items"] == NANCY and row["nancy"] == NANCY
    assert row["item_erosion_ulceration"] == 1
    long = reader_data(graded).long
    assert long["rhi"].tolist() == [RHI] and long["nancy_from_items"].tolist() == [NANCY]
