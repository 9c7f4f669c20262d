"""The reader-study report: three simulated readers with planted agreement give the numbers
scikit-learn, statsmodels and pingouin give on the same reads; pre/post counted by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from napari_imilia.cli import main
from napari_imilia.cohort.review import Cohort
from napari_imilia.report import reader_metrics as M
from napari_imilia.report import write_reports
from napari_imilia.report.reader_study import consensus
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.study import create_study
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

pingouin = pytest.importorskip("pingouin")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")

READERS = ("Dr Ada", "Dr Bo", "Dr Cy")
#: pingouin's names of ICC(2,1) and ICC(2,k): "ICC(A,1)" since 0.7, "ICC2" before.
ICC_NAMES = {"icc2_1": ("ICC(A,1)", "ICC2"), "icc2_k": ("ICC(A,k)", "ICC2k")}


def pingouin_icc(long: pd.DataFrame, targets: str, raters: str, ratings: str) -> dict:
    table = pingouin.intraclass_corr(long, targets=targets, raters=raters, ratings=ratings)
    by_type = table.set_index("Type")["ICC"]
    return {
        ours: next(by_type[n] for n in names if n in by_type) for ours, names in ICC_NAMES.items()
    }


LEVELS = [0, 1, 2, 3, 4]


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


def planted_reads(slide_ids: list[str], seed: int = 7) -> dict[str, dict[str, int]]:
    """Reader -> slide -> Nancy: Ada the truth, Bo one grade off on a third of the slides,
    Cy a random grade on half of them (seeded)."""
    rng = np.random.default_rng(seed)
    truth = {s: int(rng.integers(0, 5)) for s in slide_ids}
    bo = {s: int(np.clip(g + rng.choice([-1, 1]), 0, 4)) if i % 3 == 0 else g
          for i, (s, g) in enumerate(truth.items())}  # fmt: skip
    cy = {s: int(rng.integers(0, 5)) if i % 2 == 0 else g
          for i, (s, g) in enumerate(truth.items())}  # fmt: skip
    return {READERS[0]: truth, READERS[1]: bo, READERS[2]: cy}


def test_metrics_equal_the_reference_libraries_on_arrays() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 60)
    b = np.clip(a + rng.integers(-1, 2, 60), 0, 4)
    c = np.where(rng.random(60) < 0.5, rng.integers(0, 5, 60), a)
    assert M.weighted_kappa(a, b) == pytest.approx(
        cohen_kappa_score(a, b, weights="quadratic", labels=LEVELS)
    )
    assert M.kappa(a >= 2, b >= 2) == pytest.approx(cohen_kappa_score(a >= 2, b >= 2))
    matrix = np.stack([a, b, c], axis=1).astype(float)
    table, _ = inter_rater.aggregate_raters(matrix.astype(int), n_cat=5)
    assert M.fleiss_kappa(matrix) == pytest.approx(inter_rater.fleiss_kappa(table))
    long = pd.DataFrame(
        [(s, r, matrix[s, r]) for s in range(60) for r in range(3)],
        columns=["slide", "reader", "nancy"],
    )
    ref = pingouin_icc(long, "slide", "reader", "nancy")
    icc = M.icc(matrix)
    assert icc["icc2_1"] == pytest.approx(ref["icc2_1"]) and icc["icc2_k"] == pytest.approx(
        ref["icc2_k"]
    )
    # undefined cases say so
    assert M.weighted_kappa(np.array([2, 2]), np.array([2, 2])) is None
    assert M.fleiss_kappa(matrix[:, :1]) is None and M.icc(matrix[:1]) is None
    ci = M.bootstrap_ci(lambda i: M.weighted_kappa(a[i], b[i]), 60)
    assert ci[0] < M.weighted_kappa(a, b) < ci[1]


def test_consensus_majority_and_median() -> None:
    nancy = np.array([[0, 1, 3], [2, 3, np.nan], [1, 2, np.nan], [np.nan, np.nan, np.nan]])
    active = (nancy >= 2).astype(float)
    active[np.isnan(nancy)] = np.nan
    median, majority = consensus(nancy, active)
    assert median[:3].tolist() == [1.0, 2.5, 1.5] and np.isnan(median[3])
    # slide 2: one active one inactive, median 1.5 < 2 -> inactive; slide 3: nobody
    assert majority[:3].tolist() == [0.0, 1.0, 0.0] and np.isnan(majority[3])


def test_three_readers_blinded_study_report_matches_references(scored_copy: Path) -> None:
    cohort = Cohort.open(scored_copy, reader=READERS[0])
    slides = [item.slide_id for item in cohort.items if not item.error]
    create_study(scored_copy, slides, READERS, blinded=True, second_read=True, seed=3)
    planted = planted_reads(slides)
    scores = {item.slide_id: item.score for item in cohort.items if not item.error}
    change = {"changed": 0, "towards": 0, "away": 0}
    for reader, grades in planted.items():
        seen = Cohort.open(scored_copy, reader=reader)
        for slide_id, nancy in grades.items():
            seen.set_grade(seen.index_of(slide_id), SlideGrade(nancy=nancy))
        if reader == READERS[2]:  # Cy reads 4 slides again, moving to the model's call
            for slide_id in slides[:4]:
                called_active = scores[slide_id] >= 0.5
                after = 3 if called_active else 0
                seen.set_grade(seen.index_of(slide_id), SlideGrade(nancy=after))
                before = grades[slide_id]
                if after != before:  # towards: the call flips to the model's, or the
                    change["changed"] += 1  # grade moves the model's way within a call
                    flipped = (before >= 2) != (after >= 2)
                    up = after > before
                    towards = flipped or up == called_active
                    change["towards" if towards else "away"] += 1
    written = write_reports(Cohort.open(scored_copy, reader=READERS[0]), top_k=0)
    report = json.loads(written["study_json"].read_text())
    metrics = report["metrics"]
    long = pd.read_csv(written["study_csv"])
    assert len(long) == 3 * len(slides) + 4
    assert set(long["phase"]) == {"pre-AI", "post-AI"}

    pre = long[long["phase"] == "pre-AI"].pivot(index="slide_id", columns="reader", values="nancy")
    pre = pre.loc[slides, list(READERS)]
    for row in metrics["pairs"]:
        if row["reader_b"] == "model":
            truth = (pre[row["reader_a"]] >= 2).astype(int)
            call = (pd.Series(scores)[slides] >= 0.5).astype(int)
            expected = cohen_kappa_score(truth, call)
            assert row["activity_kappa"]["value"] == pytest.approx(expected)
            continue
        x, y = pre[row["reader_a"]], pre[row["reader_b"]]
        expected = cohen_kappa_score(x, y, weights="quadratic", labels=LEVELS)
        assert row["nancy_weighted_kappa"]["value"] == pytest.approx(expected)
        assert row["activity_kappa"]["value"] == pytest.approx(cohen_kappa_score(x >= 2, y >= 2))
        low, high = row["nancy_weighted_kappa"]["ci95"]
        assert low <= expected <= high and row["nancy_weighted_kappa"]["n"] == len(slides)

    table, _ = inter_rater.aggregate_raters(pre.to_numpy(int), n_cat=5)
    overall = metrics["overall"]
    assert overall["fleiss_kappa_nancy"]["value"] == pytest.approx(inter_rater.fleiss_kappa(table))
    stacked = pre.stack().rename("nancy").reset_index()
    ref = pingouin_icc(stacked, "slide_id", "reader", "nancy")
    assert overall["icc2_1_nancy"]["value"] == pytest.approx(ref["icc2_1"])
    assert overall["icc2_k_nancy"]["value"] == pytest.approx(ref["icc2_k"])

    versus = {row["reader"]: row for row in metrics["versus_model"]}
    for reader in READERS:
        truth = (pre[reader] >= 2).astype(int)
        if truth.nunique() == 2:
            expected = roc_auc_score(truth, pd.Series(scores)[slides])
            assert versus[reader]["roc_auc"]["value"] == pytest.approx(expected)
    assert "consensus (majority)" in versus

    by_reader = {row["reader"]: row for row in metrics["pre_post"]}
    cy = by_reader[READERS[2]]
    assert cy["n_both"] == 4 and cy["changed"] == change["changed"]
    assert (cy["towards_model"], cy["away_from_model"]) == (change["towards"], change["away"])
    assert by_reader["all readers"]["changed"] == change["changed"] > 0
    assert by_reader[READERS[0]]["n_both"] == 0
    html = written["study_html"].read_text()
    assert "Fleiss" in html and "ICC(2,1)" in html and "reader_study.csv" in html
    assert all(reader in html for reader in READERS)


def test_imilia_study_and_report_commands(scored_copy: Path, capsys) -> None:
    assert main(["study", str(scored_copy), "--readers", "A,B", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "blinded, with a second read" in out and "A: 0 of 12 read" in out
    study = json.loads((scored_copy / "study.json").read_text())["study"]
    assert study["seed"] == 5 and sorted(study["orders"]["A"]) == sorted(study["slide_ids"])
    assert study["orders"]["A"] != study["orders"]["B"]  # each reader's own order
    assert main(["study", str(scored_copy), "--readers", "C"]) == 2  # one study per folder
    assert "already holds a study" in capsys.readouterr().err
    assert main(["study", str(scored_copy), "--add-reader", "C"]) == 0
    assert "C: 0 of 12 read" in capsys.readouterr().out
    cohort = Cohort.open(scored_copy, reader="A")
    cohort.set_grade(cohort.index_of("case_01"), SlideGrade(nancy=2))
    assert main(["report", str(scored_copy), "--no-slide-pages"]) == 0
    assert "reader study report" in capsys.readouterr().out
    assert (scored_copy / "reader_study.html").is_file()


def test_reader_study_csv_neutralises_formula_names(scored_copy: Path) -> None:
    """A reader named like a spreadsheet formula is written as text in reader_study.csv
    (issue 20's rule for every CSV a reviewer opens), and read back as typed in the JSON."""
    hostile = '=HYPERLINK("http://evil.example","open me")'
    slides = [item.slide_id for item in Cohort.open(scored_copy).items if not item.error]
    create_study(scored_copy, slides, [hostile, "Dr B"], blinded=False, second_read=False)
    seen = Cohort.open(scored_copy, reader=hostile)
    seen.set_grade(seen.index_of(slides[0]), SlideGrade(nancy=2))
    written = write_reports(Cohort.open(scored_copy, reader=hostile), top_k=0)
    text = written["study_csv"].read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and "\n=HYPERLINK" not in text
    report = json.loads(written["study_json"].read_text())
    assert hostile in report["study"]["readers"]  # the raw name in the JSON beside it
