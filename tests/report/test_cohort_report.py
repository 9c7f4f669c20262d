"""Cohort and slide reports: numbers recomputed independently, pages rendered in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score

from napari_imilia.cli import main
from napari_imilia.cohort.review import Cohort
from napari_imilia.report import write_cohort_report, write_slide_report
from napari_imilia.report.metrics import bootstrap_auc_ci, cohen_kappa, roc_auc
from napari_imilia.review.grade import SlideGrade
from support.cohort_data import N_SLIDES, cohort_data, scored_results  # noqa: F401 (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Appended to a copy of a page: after load, the body says how many images decoded.
IMAGE_PROBE = (
    "<script>window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.images=i.length;"
    "document.body.dataset.rendered=i.filter(x=>x.complete&&x.naturalWidth>0).length;});"
    "</script>"
)


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


def rendered_images(page: Path, tmp_path: Path) -> tuple[int, int]:
    """(images on the page, images decoded with a width) in headless Chromium."""
    probe = tmp_path / f"probe_{page.parent.name}_{page.name}"
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    probe.write_text(text.replace("</body>", IMAGE_PROBE + "</body>"))  # the probe is a script
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    body = re.search(r"<body[^>]*>", dom).group(0)
    images = re.search(r'data-images="(\d+)"', body)
    rendered = re.search(r'data-rendered="(\d+)"', body)
    return int(images.group(1)), int(rendered.group(1))


def test_numbers_equal_an_independent_computation(scored_copy: Path, cohort_data) -> None:  # noqa: F811
    labels = pd.read_csv(cohort_data["csv"], dtype=str)
    labels["slide"] = [str(cohort_data["csv"].parent / p) for p in labels["slide"]]
    csv = scored_copy.parent / "labels.csv"
    labels.to_csv(csv, index=False)
    cohort = Cohort.build(csv, scored_copy)  # ground truth from the CSV's label columns...
    for slide_id, nancy in (("case_00", 4), ("case_05", 0)):  # ...except where reviewed
        cohort.set_grade(cohort.index_of(slide_id), SlideGrade(nancy=nancy))
    paths = write_cohort_report(cohort)
    metrics = json.loads(paths["json"].read_text())["metrics"]

    table = pd.read_csv(paths["csv"])  # the review table, recomputed from here on
    assert len(table) == N_SLIDES + 1
    sources = table.set_index("slide_id")["grade_source"]
    assert sources["case_00"] == "review" and sources["case_01"] == "csv"
    scored = table[table["score"].notna()]
    truth = (scored["activity"] == "active").astype(int).to_numpy()
    scores = scored["score"].to_numpy()
    called = (scores >= 0.5).astype(int)
    assert metrics["n_activity"] == N_SLIDES
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, scores))
    tn, fp, fn, tp = confusion_matrix(truth, called, labels=[0, 1]).ravel()
    assert metrics["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    kappa = cohen_kappa_score(truth, called)
    assert metrics["cohen_kappa"] == pytest.approx(kappa) or (
        np.isnan(kappa) and metrics["cohen_kappa"] is None
    )
    rho = spearmanr(scored["score"], scored["nancy"]).statistic
    assert metrics["spearman_rho"] == pytest.approx(rho)
    low, high = metrics["roc_auc_ci95"]
    assert low <= metrics["roc_auc"] <= high
    assert table.set_index("slide_id").loc["case_00", "nancy"] == 4  # the review wins


def test_metric_functions_on_known_values() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    truth = np.array([0, 0, 1, 1])
    assert roc_auc(scores, truth) == pytest.approx(0.75)  # the classic example
    assert roc_auc(scores, np.ones(4)) is None
    assert cohen_kappa(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])) == pytest.approx(0.5)
    assert cohen_kappa(np.ones(3), np.ones(3)) is None
    low, high = bootstrap_auc_ci(scores, truth, n_samples=200)
    assert 0 <= low <= 0.75 <= high <= 1


def test_report_before_any_grade_says_what_is_missing(cohort_data, tmp_path: Path) -> None:  # noqa: F811
    cohort = Cohort.build(cohort_data["folder"], tmp_path)
    paths = write_cohort_report(cohort)
    text = paths["html"].read_text()
    assert "Not computed yet" in text and "no slide is scored yet" in text
    metrics = json.loads(paths["json"].read_text())["metrics"]
    assert metrics["roc_auc"] is None and metrics["n_scored"] == 0
    assert len(pd.read_csv(paths["csv"])) == N_SLIDES + 1


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/install_system_deps.sh)")
def test_pages_render_their_images_in_chromium(scored_copy: Path, tmp_path: Path) -> None:
    cohort = Cohort.open(scored_copy)
    index = cohort.index_of("case_01")
    cohort.set_grade(index, SlideGrade(nancy=2, model_agreement="disagree", note="few PMN"))
    page = write_slide_report(cohort.slide_dir(index), top_k=1)
    text = page.read_text()
    assert "case_01" in text and "few PMN" in text and "2 (mildly active)" in text
    info = json.loads((cohort.slide_dir(index) / "slide.json").read_text())
    assert info["model_sha256"] in text and info["extractor_sha256"] in text
    assert "http://" not in text and "https://" not in text  # nothing fetched from a network
    assert rendered_images(page, tmp_path) == (2, 2)  # heatmap + one top tile
    cohort_page = write_cohort_report(cohort)["html"]
    images, rendered = rendered_images(cohort_page, tmp_path)
    assert images >= 3 and rendered == images
    shot = tmp_path / "cohort.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1280,1600", f"--screenshot={shot}", cohort_page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 10_000


def test_cli_report(scored_copy: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(scored_copy), "--top-tiles", "0"]) == 0
    out = capsys.readouterr().out
    assert (
        f"0 of {N_SLIDES + 1} reviewed, {N_SLIDES} scored, 1 error; {N_SLIDES} slide report" in out
    )
    for name in ("cohort_report.html", "cohort_report.json", "cohort_report.csv"):
        assert (scored_copy / name).is_file()
    assert (scored_copy / "case_00" / "report.html").is_file()
    assert 'href="./case_00/report.html"' in (scored_copy / "cohort_report.html").read_text()
    (tmp_path / "nothing").mkdir()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no cohort" in capsys.readouterr().err
