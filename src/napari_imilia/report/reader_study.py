"""The reader-study report: agreement between readers, with the model as one more reader,
and what seeing the model changed (no Qt).

From a cohort's reads (:mod:`napari_imilia.review.reads`; in a study, the reads stamped
with its id) it computes, with bootstrap 95% CIs by slide (:mod:`.reader_metrics`):

- per pair of readers: quadratic-weighted kappa of the Nancy grade, kappa of the activity;
- per reader and for the consensus (majority activity, ties broken by the median Nancy
  grade): ROC-AUC of the model's score and kappa of the model's call (score >= threshold);
- over all readers: Fleiss' kappa (Nancy and activity) and ICC(2,1) / ICC(2,k) of Nancy;
- pre-AI against post-AI, per reader: how many grades changed, towards or away from the
  model's call, and agreement with the model before and after, on the same slides;
- a disagreement list: slides ranked by the spread of the readers' Nancy grades, then by
  the gap between the model's score and the share of readers calling the slide active.

A reader's opinion of a slide is their first one: the pre-AI read when there is one, else
their latest read. :func:`write_reader_study_report` writes ``reader_study.csv`` (one row
per read: slide, reader, phase, Nancy, activity, time), ``reader_study.json`` and
``reader_study.html`` into the results folder.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.cohort.review import Cohort
from napari_imilia.report import reader_metrics as M
from napari_imilia.report.metrics import DEFAULT_THRESHOLD, roc_auc
from napari_imilia.review.grade import NANCY_ACTIVE_FROM
from napari_imilia.review.indices import index_values
from napari_imilia.review.reads import POST_AI, PRE_AI, GradeRead

MODEL = "model"
LONG_COLUMNS: tuple[str, ...] = (
    "slide_id",
    "reader",
    "phase",
    "nancy",
    "activity",
    "model_agreement",
    "utc",
    "started_utc",
    "study_id",
    "score",
    "nancy_from_items",  # Nancy and RHI from the reader's item grades (review/indices.py)
    "rhi",
)


def _active(read: GradeRead | None) -> float:
    activity = "" if read is None else read.grade.effective_activity
    return {"active": 1.0, "inactive": 0.0}.get(activity, np.nan)


def _nancy(read: GradeRead | None) -> float:
    return np.nan if read is None or read.grade.nancy is None else float(read.grade.nancy)


@dataclass
class ReaderData:
    """The study's reads as arrays: ``first_*`` / ``pre_*`` / ``post_*`` are (slides x
    readers) with NaN where a reader has no such read; ``scores`` NaN where unscored."""

    slide_ids: list[str]
    readers: list[str]
    scores: np.ndarray
    long: pd.DataFrame
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    study: Any = None


def reader_data(cohort: Cohort) -> ReaderData:
    """Gather the reads of ``cohort`` (refreshed from the disk): its study's slides and
    reads when it has one, else every slide with a read."""
    cohort.refresh()
    study = cohort.study
    items = [i for i in cohort.items if i.reads is not None and not i.error]
    if study is not None:
        items = [i for i in items if study.includes(i.slide_id)]
    reads_by_slide = {
        item.slide_id: [
            r for r in item.reads.reads if study is None or r.study_id == study.study_id
        ]
        for item in items
    }
    if study is None:
        items = [i for i in items if reads_by_slide[i.slide_id]]
    readers = list(study.readers) if study is not None else []
    for reads in reads_by_slide.values():
        readers += [r.reader for r in reads if r.reader not in readers]
    slide_ids = [item.slide_id for item in items]
    scores = np.array([np.nan if i.score is None else i.score for i in items], np.float64)
    shape = (len(items), len(readers))
    arrays = {
        f"{kind}_{what}": np.full(shape, np.nan)
        for kind in ("first", "pre", "post")
        for what in ("nancy", "active")
    }
    rows = []
    for s, item in enumerate(items):
        reads = reads_by_slide[item.slide_id]
        for r, reader in enumerate(readers):
            own = [x for x in reads if x.reader == reader]
            pre = next((x for x in reversed(own) if x.phase == PRE_AI), None)
            post = next((x for x in reversed(own) if x.phase == POST_AI), None)
            for kind, read in (
                ("first", pre or (own[-1] if own else None)),
                ("pre", pre),
                ("post", post),
            ):
                arrays[f"{kind}_nancy"][s, r] = _nancy(read)
                arrays[f"{kind}_active"][s, r] = _active(read)
        rows += [_long_row(read, item.score) for read in reads]
    long = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
    for column in ("nancy", "nancy_from_items", "rhi"):
        long[column] = pd.to_numeric(long[column], errors="coerce").astype("Int64")
    return ReaderData(slide_ids, readers, scores, long, arrays, study)


def _long_row(read: GradeRead, score: float | None) -> dict[str, Any]:
    return {
        "slide_id": read.slide_id,
        "reader": read.reader,
        "phase": read.phase,
        "nancy": read.grade.nancy,
        "activity": read.grade.effective_activity,
        "model_agreement": read.grade.model_agreement,
        "utc": read.utc,
        "started_utc": read.started_utc,
        "study_id": read.study_id,
        "score": score,
        **index_values(read.grade.items),
    }


def paired(statistic: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """``statistic(x, y)`` with its bootstrap CI over the slides where both are known."""
    keep = ~np.isnan(x) & ~np.isnan(y)
    xs, ys = x[keep], y[keep]
    return M.with_ci(lambda i: statistic(xs[i], ys[i]), len(xs))


def _pair_rows(data: ReaderData, threshold: float) -> list[dict[str, Any]]:
    """Weighted kappa (Nancy) and kappa (activity) of every pair of readers, and kappa of
    each reader's activity with the model's call."""
    nancy, active = data.arrays["first_nancy"], data.arrays["first_active"]
    rows = []
    for a, b in itertools.combinations(range(len(data.readers)), 2):
        rows.append(
            {
                "reader_a": data.readers[a],
                "reader_b": data.readers[b],
                "nancy_weighted_kappa": paired(M.weighted_kappa, nancy[:, a], nancy[:, b]),
                "activity_kappa": paired(M.kappa, active[:, a], active[:, b]),
            }
        )
    call = np.where(np.isnan(data.scores), np.nan, data.scores >= threshold)
    for a, reader in enumerate(data.readers):
        rows.append(
            {
                "reader_a": reader,
                "reader_b": MODEL,
                "nancy_weighted_kappa": {"value": None, "ci95": None, "n": 0},
                "activity_kappa": paired(M.kappa, active[:, a], call),
            }
        )
    return rows


def consensus(nancy: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(median Nancy, majority activity) per slide over the readers who read it (NaN where
    none did); an activity tie goes to the median Nancy grade (>= 2 is active)."""
    with np.errstate(all="ignore"):
        median = np.array([np.nan if np.isnan(r).all() else np.nanmedian(r) for r in nancy])
        share = np.array([np.nan if np.isnan(r).all() else np.nanmean(r) for r in active])
    majority = np.where(share > 0.5, 1.0, np.where(share < 0.5, 0.0, np.nan))
    tie = (share == 0.5) & ~np.isnan(median)
    majority[tie] = (median[tie] >= NANCY_ACTIVE_FROM).astype(np.float64)
    return median, majority


def _versus_model(data: ReaderData, threshold: float) -> list[dict[str, Any]]:
    """ROC-AUC of the score and kappa of the call against each reader and the consensus."""
    active = data.arrays["first_active"]
    _, majority = consensus(data.arrays["first_nancy"], active)
    call = np.where(np.isnan(data.scores), np.nan, data.scores >= threshold)
    columns = [(reader, active[:, r]) for r, reader in enumerate(data.readers)]
    return [
        {
            "reader": name,
            "roc_auc": paired(lambda t, s: roc_auc(s, t), truth, data.scores),
            "call_kappa": paired(M.kappa, truth, call),
        }
        for name, truth in [*columns, ("consensus (majority)", majority)]
    ]


def _overall(data: ReaderData, prefix: str = "first") -> dict[str, Any]:
    """Fleiss' kappa (Nancy, activity) and ICC of the Nancy grade over all readers."""
    nancy, active = data.arrays[f"{prefix}_nancy"], data.arrays[f"{prefix}_active"]
    full_n = np.flatnonzero(~np.isnan(nancy).any(axis=1)) if nancy.size else np.array([], int)
    full_a = np.flatnonzero(~np.isnan(active).any(axis=1)) if active.size else np.array([], int)

    def icc_of(key: str):
        return lambda i: (M.icc(nancy[full_n[i]]) or {}).get(key)

    return {
        "n_readers": len(data.readers),
        "fleiss_kappa_nancy": M.with_ci(lambda i: M.fleiss_kappa(nancy[full_n[i]]), len(full_n)),
        "fleiss_kappa_activity": M.with_ci(
            lambda i: M.fleiss_kappa(active[full_a[i]], (0, 1)), len(full_a)
        ),
        "icc2_1_nancy": M.with_ci(icc_of("icc2_1"), len(full_n)),
        "icc2_k_nancy": M.with_ci(icc_of("icc2_k"), len(full_n)),
    }


def _direction(pre: tuple[float, float], post: tuple[float, float], call: float) -> str:
    """'towards' / 'away' (from the model's call) / '' for a changed grade."""
    (n0, a0), (n1, a1) = pre, post
    step = (a1 - a0) if a0 == a0 and a1 == a1 and a1 != a0 else (n1 - n0)
    if step != step or step == 0:
        return ""
    return "towards" if (step > 0) == (call == 1.0) else "away"


def pre_post(data: ReaderData, threshold: float) -> list[dict[str, Any]]:
    """Per reader (and 'all readers'): slides with both reads, grades changed, changes
    towards / away from the model's call, kappa of the activity with the call before and
    after on those slides."""
    call = (data.scores >= threshold).astype(np.float64)
    pn, pa = data.arrays["pre_nancy"], data.arrays["pre_active"]
    qn, qa = data.arrays["post_nancy"], data.arrays["post_active"]
    rows, pooled = [], {"before": [], "after": [], "call": []}
    for r, reader in enumerate(data.readers):
        both = np.flatnonzero(~np.isnan(pa[:, r]) & ~np.isnan(qa[:, r]) & ~np.isnan(data.scores))
        changed = [s for s in both if pn[s, r] != qn[s, r] or pa[s, r] != qa[s, r]]
        ways = [_direction((pn[s, r], pa[s, r]), (qn[s, r], qa[s, r]), call[s]) for s in changed]
        pooled["before"] += list(pa[both, r])
        pooled["after"] += list(qa[both, r])
        pooled["call"] += list(call[both])
        rows.append(
            {
                "reader": reader,
                "n_both": len(both),
                "changed": len(changed),
                "towards_model": ways.count("towards"),
                "away_from_model": ways.count("away"),
                "kappa_before": M.kappa(pa[both, r], call[both]) if len(both) else None,
                "kappa_after": M.kappa(qa[both, r], call[both]) if len(both) else None,
            }
        )
    before, after, calls = (np.array(pooled[k]) for k in ("before", "after", "call"))
    rows.append(
        {
            "reader": "all readers",
            "n_both": len(before),
            "changed": sum(x["changed"] for x in rows),
            "towards_model": sum(x["towards_model"] for x in rows),
            "away_from_model": sum(x["away_from_model"] for x in rows),
            "kappa_before": M.kappa(before, calls) if len(before) else None,
            "kappa_after": M.kappa(after, calls) if len(after) else None,
        }
    )
    return rows


def disagreements(data: ReaderData) -> pd.DataFrame:
    """Slides ranked by the readers' Nancy spread (max - min), then by the gap between the
    model's score and the share of readers calling the slide active."""
    nancy, active = data.arrays["first_nancy"], data.arrays["first_active"]
    rows = []
    for s, slide_id in enumerate(data.slide_ids):
        grades = {r: nancy[s, i] for i, r in enumerate(data.readers) if nancy[s, i] == nancy[s, i]}
        calls = active[s][~np.isnan(active[s])]
        share = float(calls.mean()) if len(calls) else np.nan
        values = list(grades.values())
        rows.append(
            {
                "slide_id": slide_id,
                "n_readers": int((~np.isnan(active[s]) | ~np.isnan(nancy[s])).sum()),
                "nancy_by_reader": ", ".join(f"{r}: {int(v)}" for r, v in grades.items()),
                "nancy_spread": (max(values) - min(values)) if values else np.nan,
                "share_active": share,
                "score": data.scores[s],
                "gap_to_model": abs(data.scores[s] - share),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(
        ["nancy_spread", "gap_to_model"], ascending=False, na_position="last", kind="mergesort"
    ).reset_index(drop=True)


def study_metrics(data: ReaderData, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Every number of the report (see the module docstring)."""
    return {
        "threshold": float(threshold),
        "n_slides": len(data.slide_ids),
        "n_reads": len(data.long),
        "readers": list(data.readers),
        "pairs": _pair_rows(data, threshold),
        "versus_model": _versus_model(data, threshold),
        "overall": _overall(data),
        "overall_pre_ai": _overall(data, "pre"),
        "overall_post_ai": _overall(data, "post"),
        "pre_post": pre_post(data, threshold),
        "bootstrap_samples": M.BOOTSTRAP_SAMPLES,
        "bootstrap_seed": M.BOOTSTRAP_SEED,
    }
