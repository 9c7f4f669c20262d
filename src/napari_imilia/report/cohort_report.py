"""The cohort report: the model evaluated, the review table and the model against the
pathologist (no Qt).

:func:`write_cohort_report` writes ``results_root/cohort_report.csv`` (one row per slide),
``cohort_report.json`` (the table and every number) and ``cohort_report.html`` (the same with
plots embedded; no network). The pathologist's call on a slide is the grade given in the
review (``slide_grade.json``) or, when there is none, the cohort CSV's label columns:
``active`` (also ``label``, ``activity``, ``inflamed``; 1/0, active/inactive, yes/no,
true/false) and ``nancy`` (0-4). ``grade_source`` says which. Before any slide is graded the
report still renders and says what is missing. The page and the JSON name the model that
scored the slides (:func:`cohort_models`: name, SHA-256, extractor and its weights' SHA-256,
DEMO flag) with the threshold; a CI or p-value from fewer than 10 slides in a class
carries a caution, and p-values below 0.001 read "< 0.001".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia import __version__
from napari_imilia.cohort.item import read_slide_json
from napari_imilia.cohort.review import Cohort, CohortItem
from napari_imilia.export.tables import spreadsheet_csv
from napari_imilia.files import write_text_atomic
from napari_imilia.report import html as H
from napari_imilia.report.metrics import (
    DEFAULT_THRESHOLD,
    agreement_metrics,
    format_p,
    roc_curve,
)
from napari_imilia.review.entry import utc_now
from napari_imilia.review.grade import NANCY_GRADES, activity_for_nancy
from napari_imilia.review.indices import INDEX_COLUMNS, ITEM_COLUMNS, index_values, item_columns

ACTIVE_COLUMNS: tuple[str, ...] = ("active", "label", "activity", "inflamed")
NANCY_COLUMNS: tuple[str, ...] = ("nancy", "nancy_index", "nhi")
_TRUE = {"1", "1.0", "active", "yes", "true", "y"}
_FALSE = {"0", "0.0", "inactive", "no", "false", "n"}
REPORT_COLUMNS: tuple[str, ...] = (
    "slide_id",
    "status",
    "score",
    "n_tiles",
    "model_call",
    "nancy",
    "activity",
    "grade_source",
    "model_agreement",
    "reviewer",
    "note",
    *INDEX_COLUMNS,  # Nancy and RHI from the reviewer's item grades (review/indices.py)
    *ITEM_COLUMNS,
    "error",
)


def _label(labels: dict[str, str], names: tuple[str, ...]) -> str | None:
    lowered = {k.strip().lower(): v for k, v in labels.items()}
    return next((lowered[n] for n in names if lowered.get(n, "").strip()), None)


def csv_truth(labels: dict[str, str]) -> tuple[int | None, str]:
    """(Nancy grade, activity) from a cohort CSV's labels; None / '' where absent or
    unreadable."""
    nancy: int | None = None
    raw = _label(labels, NANCY_COLUMNS)
    if raw is not None:
        try:
            value = float(raw)
            nancy = int(value) if value in NANCY_GRADES else None
        except ValueError:
            nancy = None
    activity = ""
    raw = _label(labels, ACTIVE_COLUMNS)
    if raw is not None and raw.strip().lower() in _TRUE:
        activity = "active"
    elif raw is not None and raw.strip().lower() in _FALSE:
        activity = "inactive"
    return nancy, activity or activity_for_nancy(nancy)


def slide_truth(item: CohortItem) -> tuple[int | None, str, str]:
    """(Nancy grade, activity, source): the review's grade ('review'), else the CSV labels
    ('csv'), else (None, '', '')."""
    grade = item.grade
    if grade is not None and grade.is_graded:
        return grade.nancy, grade.effective_activity, "review"
    nancy, activity = csv_truth(item.labels)
    if nancy is not None or activity:
        return nancy, activity, "csv"
    return None, "", ""


def report_table(cohort: Cohort, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """One row per slide, columns :data:`REPORT_COLUMNS` (``model_call``: 'active' when the
    score is at least ``threshold``)."""
    rows = []
    for item in cohort.items:
        nancy, activity, source = slide_truth(item)
        grade = item.grade
        call = "" if item.score is None else ("active" if item.score >= threshold else "inactive")
        rows.append(
            {
                "slide_id": item.slide_id,
                "status": item.status,
                "score": item.score,
                "n_tiles": item.n_tiles,
                "model_call": call,
                "nancy": nancy,
                "activity": activity,
                "grade_source": source,
                "model_agreement": "" if grade is None else grade.model_agreement,
                "reviewer": "" if grade is None else grade.reviewer,
                "note": "" if grade is None else grade.note,
                **index_values(None if grade is None else grade.items),
                **item_columns(None if grade is None else grade.items),
                "error": item.error,
            }
        )
    table = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    table["n_tiles"] = pd.to_numeric(table["n_tiles"], errors="coerce").astype("Int64")
    table["nancy"] = pd.to_numeric(table["nancy"], errors="coerce").astype("Int64")
    for column in (*INDEX_COLUMNS, *ITEM_COLUMNS):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def table_metrics(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """:func:`agreement_metrics` over the scored slides of a :func:`report_table`."""
    scored = table[table["score"].notna()]
    with_activity = scored[scored["activity"].isin(["active", "inactive"])]
    with_nancy = scored[scored["nancy"].notna()]
    metrics = agreement_metrics(
        with_activity["score"].to_numpy(np.float64),
        (with_activity["activity"] == "active").to_numpy(int),
        with_nancy["score"].to_numpy(np.float64),
        with_nancy["nancy"].to_numpy(np.float64),
        threshold=threshold,
    )
    metrics["n_slides"] = len(table)
    metrics["n_scored"] = len(scored)
    metrics["n_reviewed"] = int((table["status"] == "reviewed").sum())
    metrics["n_error"] = int((table["status"] == "error").sum())
    metrics["grade_sources"] = {
        k: int(v) for k, v in table["grade_source"].replace("", "none").value_counts().items()
    }
    if metrics["n_scored"] == 0:
        metrics["missing"].insert(
            0, "no slide is scored yet: press Score all or run imilia predict"
        )
    return metrics


def cohort_models(cohort: Cohort) -> list[dict[str, Any]]:
    """The models that scored the cohort's slides, most slides first: name, ``model_sha256``,
    extractor, ``extractor_sha256``, ``model_is_demo`` and ``n_slides`` (read from one
    ``slide.json`` per model)."""
    firsts: dict[str, int] = {}
    counts: dict[str, int] = {}
    for index, item in enumerate(cohort.items):
        if item.score is None or not item.model_sha256:
            continue
        firsts.setdefault(item.model_sha256, index)
        counts[item.model_sha256] = counts.get(item.model_sha256, 0) + 1
    models = []
    for sha, index in firsts.items():
        info = read_slide_json(cohort.slide_dir(index), cohort.items[index].slide_id) or {}
        models.append(
            {
                "model": str(info.get("model") or cohort.items[index].model),
                "model_sha256": sha,
                "extractor": info.get("extractor"),
                "extractor_sha256": info.get("extractor_sha256"),
                "model_is_demo": bool(info.get("model_is_demo")),
                "n_slides": counts[sha],
            }
        )
    return sorted(models, key=lambda m: -m["n_slides"])


def _model_html(models: list[dict[str, Any]], threshold: float) -> str:
    """The section naming the model(s) evaluated, a DEMO banner first when one is a demo."""
    if not models:
        return '<p class="missing">No slide is scored yet: no model to name.</p>'
    parts = []
    if any(m["model_is_demo"] for m in models):
        parts.append(
            '<p class="demo"><b>DEMO model</b> trained on synthetic slides: its scores say '
            "nothing about real inflammation; not for diagnosis.</p>"
        )
    if len(models) > 1:
        parts.append(
            f'<p class="caution">The slides were scored by {len(models)} different models: '
            "the numbers below mix them.</p>"
        )
    for model in models:
        parts.append(
            H.key_values(
                [
                    ("model", model["model"]),
                    ("model SHA-256", model["model_sha256"]),
                    ("feature extractor", model["extractor"]),
                    ("extractor weights SHA-256", model["extractor_sha256"] or "- (weight-free)"),
                    ("threshold (slide score called active)", f"{threshold:g}"),
                    ("DEMO model", "yes: not for diagnosis" if model["model_is_demo"] else "no"),
                    ("slides scored by it", model["n_slides"]),
                ]
            )
        )
    return "".join(parts)


def _plots(table: pd.DataFrame, metrics: dict[str, Any]) -> list[tuple[bytes, str]]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figures: list[tuple[bytes, str]] = []
    scored = table[table["score"].notna()]
    graded = scored[scored["activity"].isin(["active", "inactive"])]
    if metrics["roc_auc"] is not None:
        fpr, tpr = roc_curve(
            graded["score"].to_numpy(), (graded["activity"] == "active").to_numpy()
        )
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(fpr, tpr, color="#c0392b", lw=2, marker=".")
        ax.plot([0, 1], [0, 1], ls="--", color="#999")
        low, high = metrics["roc_auc_ci95"]
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1))
        small = " — small sample" if "roc_auc_ci95" in metrics["cautions"] else ""
        ax.set_title(
            f"ROC: AUC {metrics['roc_auc']:.3f} (95% CI {low:.3f}-{high:.3f}){small}", fontsize=9
        )
        figures.append(
            (H.figure_png(fig), "ROC curve of the slide score against active / inactive")
        )
    if len(graded):
        c = metrics["confusion"]
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        ax.imshow(matrix, cmap="Blues")
        for (r, col), value in np.ndenumerate(matrix):
            ax.text(
                col,
                r,
                str(value),
                ha="center",
                va="center",
                fontsize=14,
                color="white" if value > matrix.max() / 2 else "black",
            )
        ax.set_xticks([0, 1], ["inactive", "active"])
        ax.set_yticks([0, 1], ["inactive", "active"])
        ax.set(xlabel=f"model (score >= {metrics['threshold']:g})", ylabel="pathologist")
        figures.append((H.figure_png(fig), "Confusion matrix at the model's threshold"))
    with_nancy = scored[scored["nancy"].notna()]
    if len(with_nancy):
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        rng = np.random.default_rng(0)
        x = with_nancy["nancy"].to_numpy(np.float64)
        ax.scatter(x + rng.uniform(-0.12, 0.12, len(x)), with_nancy["score"], s=22, color="#2c3e50")
        ax.set_xticks(range(5))
        ax.set(xlabel="Nancy histological index", ylabel="slide score", xlim=(-0.5, 4.5))
        rho = metrics["spearman_rho"]
        title = "Spearman rho " + ("-" if rho is None else f"{rho:.3f}")
        if rho is not None:
            title += f", p {format_p(metrics['spearman_p'])}"
            title += " — small sample" if "spearman_p" in metrics["cautions"] else ""
        ax.set_title(title, fontsize=9)
        figures.append((H.figure_png(fig), "Slide score by Nancy grade"))
    if len(scored):
        fig, ax = plt.subplots(figsize=(4.2, 3.0))
        ax.hist(scored["score"], bins=20, range=(0, 1), color="#7f8c8d")
        ax.axvline(metrics["threshold"], color="#c0392b", ls="--")
        ax.set(xlabel="slide score", ylabel="slides")
        figures.append((H.figure_png(fig), "Distribution of slide scores (dashed: threshold)"))
    return figures


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    return value


def _html(
    cohort: Cohort, table: pd.DataFrame, metrics: dict[str, Any], models: list[dict[str, Any]]
) -> str:
    m = metrics
    ci = m["roc_auc_ci95"]
    warn = {key: " ⚠ small sample" for key in m["cautions"]}
    numbers = [
        ("slides", m["n_slides"]),
        ("scored", m["n_scored"]),
        ("reviewed (graded in napari)", m["n_reviewed"]),
        ("in error", m["n_error"]),
        ("with an activity call (scored)", m["n_activity"]),
        ("model threshold (score)", m["threshold"]),
        ("ROC-AUC", m["roc_auc"]),
        (
            "ROC-AUC 95% CI (bootstrap)",
            "-" if ci is None else f"{ci[0]:.4f} - {ci[1]:.4f}{warn.get('roc_auc_ci95', '')}",
        ),
        ("Cohen's kappa (model call vs pathologist)", m["cohen_kappa"]),
        ("with a Nancy grade (scored)", m["n_nancy"]),
        ("Spearman rho (score vs Nancy)", m["spearman_rho"]),
        ("Spearman p-value", format_p(m["spearman_p"]) + warn.get("spearman_p", "")),
    ]
    c = m["confusion"]
    body = [
        "<h1>Cohort report: model against pathologist</h1>",
        f'<p class="muted">{H.esc(cohort.results_root)} &middot; {H.esc(cohort.summary_text())}'
        f" &middot; {H.esc(utc_now())} &middot; napari-imilia {H.esc(__version__)}</p>",
    ]
    if m["missing"]:
        items = "".join(f"<li>{H.esc(t)}</li>" for t in m["missing"])
        body.append(f'<div class="missing"><b>Not computed yet</b><ul>{items}</ul></div>')
    body += ["<h2>Model</h2>", _model_html(models, m["threshold"])]
    body += ["<h2>Agreement</h2>", H.key_values(numbers)]
    if m["cautions"]:
        items = "".join(f"<li>{H.esc(t)}</li>" for t in m["cautions"].values())
        body.append(f'<div class="caution"><b>Caution</b><ul>{items}</ul></div>')
    body.append(
        "<h3>Confusion matrix (rows: pathologist, columns: model)</h3><table><tr><th></th>"
        "<th>model inactive</th><th>model active</th></tr>"
        f'<tr><th>inactive</th><td class="num">{c["tn"]}</td><td class="num">{c["fp"]}</td></tr>'
        f'<tr><th>active</th><td class="num">{c["fn"]}</td><td class="num">{c["tp"]}</td></tr>'
        "</table>"
    )
    plots = _plots(table, metrics)
    if plots:
        figs = "".join(H.figure(png, caption) for png, caption in plots)
        body += ["<h2>Plots</h2>", f'<div class="figs">{figs}</div>']
    body += [
        "<h2>Review table</h2>",
        f'<div class="wide">{H.table(table.drop(columns=list(ITEM_COLUMNS)))}</div>',
    ]
    links = [H.slide_report_link(cohort.results_root, sid) for sid in table["slide_id"]]
    links = [link for link in links if link]
    if links:
        body += ["<h2>Slide reports</h2>", "<p>" + " &middot; ".join(links) + "</p>"]
    return H.page("Cohort report", "".join(body))


def write_cohort_report(cohort: Cohort, *, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Path]:
    """Write ``cohort_report.csv``, ``.json`` and ``.html`` into the cohort's results folder;
    returns their paths by kind ('csv', 'json', 'html')."""
    root = cohort.results_root
    table = report_table(cohort, threshold)
    metrics = table_metrics(table, threshold)
    models = cohort_models(cohort)
    csv_path = write_text_atomic(root / "cohort_report.csv", spreadsheet_csv(table))
    payload = {
        "format": "napari-imilia-cohort-report",
        "software": f"napari-imilia {__version__}",
        "created_utc": utc_now(),
        "results_root": str(root),
        "models": models,
        "metrics": metrics,
        "slides": table.astype(object).to_dict("records"),
    }
    text = json.dumps(_json_ready(payload), indent=1, ensure_ascii=False, allow_nan=False)
    json_path = write_text_atomic(root / "cohort_report.json", text + "\n")
    page = _html(cohort, table, metrics, models)
    html_path = write_text_atomic(root / "cohort_report.html", page)
    return {"csv": csv_path, "json": json_path, "html": html_path}
