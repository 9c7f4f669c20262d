"""What the reports say: the model evaluated (cohort report), small samples flagged, p-values
for people, the cell-class legend and readable marker columns (slide report), checked in the
files and in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_imilia.cohort.review import Cohort
from napari_imilia.report import write_cohort_report, write_slide_report
from napari_imilia.report.metrics import (
    MIN_SLIDES_PER_CLASS,
    agreement_metrics,
    format_p,
    small_sample_cautions,
)
from napari_imilia.review.grade import SlideGrade
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


#: Width of the browser window the pages must fit (px).
PAGE_WIDTH_PX = 1100


def _render(page: Path) -> tuple[str, int]:
    """(the page's text as headless Chromium renders it, the document's width in px, a table
    scrolling sideways in its box counted too) in a window ``PAGE_WIDTH_PX`` wide."""
    probe = page.with_name(f"probe_{page.name}")
    script = (
        "<script>window.addEventListener('load',()=>{const p=document.createElement('pre');"
        "p.id='rendered';p.textContent=document.body.innerText;"
        "p.dataset.width=Math.max(document.documentElement.scrollWidth,"
        "...[...document.querySelectorAll('.wide')].map(w=>w.scrollWidth-w.clientWidth+"
        "document.documentElement.clientWidth));document.body.append(p);});"
        "</script>"
    )
    text = page.read_text(encoding="utf-8")
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)  # let it run
    probe.write_text(text.replace("</body>", script + "</body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         f"--window-size={PAGE_WIDTH_PX},1000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    probe.unlink()
    rendered = dom[dom.index('<pre id="rendered"') :]
    width = int(rendered.split('data-width="')[1].split('"')[0])
    return html.unescape(rendered).replace("\u00ad", ""), width  # soft hyphens: no text


def _page_text(page: Path) -> str:
    return _render(page)[0]


def test_p_values_and_small_samples_are_said_for_people() -> None:
    assert format_p(0.0) == "< 0.001" and format_p(3e-7) == "< 0.001"
    assert format_p(0.0123) == "0.012" and format_p(None) == "-"
    # n = 3 per class, a perfect ranking: the "p = 0.0, CI 1.0-1.0" gets cautions
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    active = np.array([0, 0, 0, 1, 1, 1])
    nancy = np.array([0, 0, 1, 2, 3, 4])
    metrics = agreement_metrics(scores, active, scores, nancy)
    assert set(metrics["cautions"]) == {"roc_auc_ci95", "spearman_p"}
    assert "3 active and 3 inactive" in metrics["cautions"]["roc_auc_ci95"]
    big = np.repeat([0, 1], MIN_SLIDES_PER_CLASS)
    assert small_sample_cautions(big, big, has_ci=True, has_p=True) == {}
    assert "spearman_p" in small_sample_cautions(big, np.r_[big, 2], has_ci=True, has_p=True)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/install_system_deps.sh)")
def test_cohort_report_names_the_model_and_flags_small_samples(scored_copy: Path) -> None:
    cohort = Cohort.open(scored_copy)
    for slide_id, nancy in (("case_00", 0), ("case_01", 3), ("case_02", 0), ("case_03", 2)):
        cohort.set_grade(cohort.index_of(slide_id), SlideGrade(nancy=nancy, reviewer="Dr Zoe"))
    paths = write_cohort_report(cohort)
    info = json.loads((cohort.slide_dir(cohort.index_of("case_00")) / "slide.json").read_text())
    (model,) = json.loads(paths["json"].read_text())["models"]
    assert model["model_sha256"] == info["model_sha256"] and model["n_slides"] == 12
    assert model["extractor"] == "imilia-stain-stats" and model["model_is_demo"] is False
    text = _page_text(paths["html"])
    for shown in (
        "model SHA-256",
        info["model_sha256"],
        "imilia-stain-stats",
        info["extractor_sha256"],
        "threshold (slide score called active)",
        "DEMO model\tno",
        "Caution",
        "fewer than 10 in a class",
    ):
        assert shown in text, shown
    assert "small sample" in text.split("ROC-AUC 95% CI")[1].split("\n")[0]
    table = pd.read_csv(paths["csv"]).set_index("slide_id")
    assert table.loc["case_01", "reviewer"] == "Dr Zoe"


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/install_system_deps.sh)")
def test_cohort_report_of_the_demo_model_says_demo(tmp_path: Path) -> None:
    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.predict.slide import predict_slide

    slide = write_synthetic_slide(
        tmp_path / "slides" / "a.svs", width_px=1024, height_px=1024, seed=2, levels=(1, 4)
    )
    predict_slide(slide, tmp_path / "results", device="cpu", progress=False, decode_workers=0)
    cohort = Cohort.build(tmp_path / "slides", tmp_path / "results")
    text = _page_text(write_cohort_report(cohort)["html"])
    assert "DEMO model trained on synthetic slides" in text
    assert "DEMO model\tyes: not for diagnosis" in text and "imilia-demo" in text


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/install_system_deps.sh)")
def test_slide_report_has_a_legend_and_readable_marker_columns(scored_copy: Path) -> None:
    cohort = Cohort.open(scored_copy)
    page = write_slide_report(cohort.slide_dir(cohort.index_of("case_11")), top_k=2)
    html = page.read_text(encoding="utf-8")
    assert "density_per_mm2_" not in html and "intraepithelial_" not in html
    assert '<div class="overlays"><div class="figs">' in html and 'class="legend"' in html
    text = _page_text(page)
    assert "Cell classes" in text and "epithelium (outline)" in text
    for header in ("lymphocytes per mm²", "neutrophils per mm²", "epithelium (fraction of"):
        assert header in text, header
    # the marker table fits the page: nothing scrolls sideways
    assert _render(page)[1] <= PAGE_WIDTH_PX
