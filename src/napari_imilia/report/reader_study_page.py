"""The reader-study report's files: ``reader_study.csv`` (long: one row per read),
``reader_study.json`` (every number) and ``reader_study.html`` (self-contained), and the
readers' grades table of a slide report (no Qt). Numbers: :mod:`.reader_study`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia import __version__
from napari_imilia.cohort.review import Cohort
from napari_imilia.export.tables import spreadsheet_csv
from napari_imilia.files import write_text_atomic
from napari_imilia.report import html as H
from napari_imilia.report.cohort_report import _json_ready
from napari_imilia.report.metrics import DEFAULT_THRESHOLD
from napari_imilia.report.reader_study import (
    MODEL,
    disagreements,
    reader_data,
    study_metrics,
)
from napari_imilia.review.entry import utc_now
from napari_imilia.review.reads import load_slide_reads
from napari_imilia.review.study import study_progress

STUDY_FILES = ("reader_study.csv", "reader_study.json", "reader_study.html")


def has_reader_study(cohort: Cohort) -> bool:
    """True when the cohort has a study, or reads by two readers or more."""
    if cohort.study is not None:
        return True
    readers = {r.reader for i in cohort.items if i.reads is not None for r in i.reads.reads}
    return len(readers) >= 2


def _estimate(cell: dict[str, Any]) -> str:
    value, ci = cell["value"], cell["ci95"]
    if value is None:
        return "-"
    text = f"{value:.3f}"
    return text + (f" ({ci[0]:.3f} to {ci[1]:.3f})" if ci else "")


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{H.esc(title)}</th>" for _, title in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row[key]
            text = _estimate(value) if isinstance(value, dict) else H.fmt(value, 3)
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _design(cohort: Cohort) -> list[tuple[str, Any]]:
    study = cohort.study
    if study is None:
        return [("study", "none: every reader's grades in this results folder")]
    progress = study_progress(study, cohort.results_root)
    return [
        ("study", study.name or study.study_id),
        ("design", study.design_text()),
        ("readers", ", ".join(study.readers)),
        ("slide order seed", study.seed),
        ("set up", f"{study.created_utc} by {study.created_by or '-'}"),
        *((f"progress of {p.reader}", p.text()) for p in progress),
    ]


def _html(cohort: Cohort, metrics: dict[str, Any], worst: pd.DataFrame) -> str:
    root = cohort.results_root
    body = [
        "<h1>Reader study: agreement between readers and with the model</h1>",
        f'<p class="muted">{H.esc(root)} &middot; {H.esc(utc_now())} &middot; napari-imilia '
        f"{H.esc(__version__)} &middot; estimates with bootstrap 95% CI by slide "
        f"({metrics['bootstrap_samples']} resamples, seed {metrics['bootstrap_seed']}); "
        "a reader's opinion is their first (pre-AI) read</p>",
        H.key_values(
            [*_design(cohort), ("slides", metrics["n_slides"]), ("reads", metrics["n_reads"])]
        ),
        _caution(metrics["n_slides"]),
        "<h2>Between readers (and the model's call)</h2>",
        _table(
            metrics["pairs"],
            [
                ("reader_a", "reader"),
                ("reader_b", "with"),
                ("nancy_weighted_kappa", "Nancy: weighted kappa (quadratic)"),
                ("activity_kappa", "activity: kappa"),
            ],
        ),
        "<h2>All readers</h2>",
        _overall_table(metrics),
        "<h2>Each reader against the model</h2>",
        f'<p class="muted">model\'s call: active when the score is at least '
        f"{metrics['threshold']:g}</p>",
        _table(
            metrics["versus_model"],
            [
                ("reader", "reader"),
                ("roc_auc", "ROC-AUC of the score"),
                ("call_kappa", "kappa of the call"),
            ],
        ),
        "<h2>Before and after seeing the model</h2>",
        _table(
            metrics["pre_post"],
            [
                ("reader", "reader"),
                ("n_both", "slides read twice"),
                ("changed", "grades changed"),
                ("towards_model", "towards the model"),
                ("away_from_model", "away from it"),
                ("kappa_before", "kappa with the call, before"),
                ("kappa_after", "after"),
            ],
        ),
        "<h2>Where readers disagree</h2>",
        _disagreement_html(root, worst),
        '<p class="muted">Every read: <a href="reader_study.csv">reader_study.csv</a> '
        '&middot; <a href="cohort_report.html">cohort report</a></p>',
    ]
    return H.page("Reader study", "".join(body))


#: Below this many slides the report warns that its intervals are wide and unstable.
FEW_SLIDES = 10


def _caution(n_slides: int) -> str:
    if n_slides >= FEW_SLIDES:
        return ""
    return (
        f'<p class="missing">Only {n_slides} slide(s): kappas, ICC and their bootstrap '
        "intervals are unstable at this size; read them as a check of the set-up, not as "
        "results.</p>"
    )


def _overall_table(metrics: dict[str, Any]) -> str:
    names = [
        ("fleiss_kappa_nancy", "Fleiss' kappa, Nancy 0-4"),
        ("fleiss_kappa_activity", "Fleiss' kappa, activity"),
        ("icc2_1_nancy", "ICC(2,1), Nancy (one reader)"),
        ("icc2_k_nancy", "ICC(2,k), Nancy (mean of the readers)"),
    ]
    rows = [("first read", metrics["overall"])]
    if any(r["n_both"] for r in metrics["pre_post"]):
        rows += [("pre-AI", metrics["overall_pre_ai"]), ("post-AI", metrics["overall_post_ai"])]
    head = "<th></th>" + "".join(f"<th>{H.esc(t)}</th>" for _, t in names) + "<th>slides</th>"
    body = "".join(
        f"<tr><th>{H.esc(label)}</th>"
        + "".join(f"<td>{_estimate(values[k])}</td>" for k, _ in names)
        + f"<td>{values['fleiss_kappa_nancy']['n']}</td></tr>"
        for label, values in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _disagreement_html(root: Path, worst: pd.DataFrame) -> str:
    if worst.empty:
        return '<p class="missing">No slide has a read yet.</p>'
    head = ["slide", "readers", "Nancy by reader", "spread", "share active", "score", "gap"]
    rows = []
    for row in worst.itertuples(index=False):
        cells = [
            H.slide_report_link(root, row.slide_id) or H.esc(row.slide_id),
            str(row.n_readers),
            H.esc(row.nancy_by_reader),
            H.fmt(row.nancy_spread, 0),
            H.fmt(row.share_active, 2),
            H.fmt(row.score, 3),
            H.fmt(row.gap_to_model, 3),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    heads = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_reader_study_report(
    cohort: Cohort, *, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Path]:
    """Write the reader-study report into the cohort's results folder; returns the files by
    kind ('study_csv', 'study_json', 'study_html')."""
    data = reader_data(cohort)
    metrics = study_metrics(data, threshold)
    worst = disagreements(data)
    root = cohort.results_root
    csv_path = write_text_atomic(root / STUDY_FILES[0], spreadsheet_csv(data.long))
    payload = {
        "format": "napari-imilia-reader-study-report",
        "software": f"napari-imilia {__version__}",
        "created_utc": utc_now(),
        "study": None if data.study is None else data.study.to_dict(),
        "model_reader": MODEL,
        "metrics": metrics,
        "disagreements": worst.astype(object).to_dict("records"),
    }
    text = json.dumps(_json_ready(payload), indent=1, ensure_ascii=False, allow_nan=False)
    json_path = write_text_atomic(root / STUDY_FILES[1], text + "\n")
    html_path = write_text_atomic(root / STUDY_FILES[2], _html(cohort, metrics, worst))
    return {"study_csv": csv_path, "study_json": json_path, "study_html": html_path}


def reads_html(results_dir: str | os.PathLike[str], slide_id: str) -> str:
    """The table of every reader's grades of one slide for its report ('' with none)."""
    reads = load_slide_reads(results_dir, slide_id).reads
    if not reads:
        return ""
    table = pd.DataFrame(
        [
            {
                "reader": r.reader or "-",
                "phase": r.phase,
                "Nancy": r.grade.nancy,
                "activity": r.grade.effective_activity,
                "agreement with the model": r.grade.model_agreement,
                "note": r.grade.note,
                "committed (UTC)": r.utc[:19].replace("T", " "),
            }
            for r in reads
        ]
    )
    table["Nancy"] = pd.to_numeric(table["Nancy"]).astype("Int64")
    return "<h3>Every reader's grades</h3>" + H.table(table)
