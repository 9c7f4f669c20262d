"""The model against the pathologist, slide by slide: ROC-AUC with a bootstrap 95% CI, the
confusion matrix at the model's threshold, Cohen's kappa and Spearman's rho (no Qt).

Inputs are plain arrays: ``scores`` (slide probabilities 0-1), ``active`` (1 active, 0
inactive, the pathologist's call) and ``nancy`` (0-4). Slides without the needed grade are
left out by the caller; each function says what it cannot compute (``None``) instead of
guessing, with a reason in :func:`agreement_metrics`' ``missing``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr

#: The model calls a slide active when its score is at least this (a probability).
DEFAULT_THRESHOLD = 0.5
#: A CI or p-value from fewer slides than this in some class carries a caution.
MIN_SLIDES_PER_CLASS = 10
#: p-values below this are printed as "< 0.001".
SMALLEST_P_SHOWN = 0.001
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def roc_auc(scores: np.ndarray, active: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    active = np.asarray(active).astype(bool)
    n_pos, n_neg = int(active.sum()), int((~active).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[active].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auc_ci(
    scores: np.ndarray,
    active: np.ndarray,
    *,
    n_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the ROC-AUC (slides resampled with replacement; samples
    with one class only are drawn again); None without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    active = np.asarray(active).astype(bool)
    if roc_auc(scores, active) is None:
        return None
    rng = np.random.default_rng(seed)
    n = len(scores)
    values: list[float] = []
    while len(values) < n_samples:
        pick = rng.integers(0, n, size=n)
        auc = roc_auc(scores[pick], active[pick])
        if auc is not None:
            values.append(auc)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def roc_curve(scores: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct score, from (0, 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    active = np.asarray(active).astype(bool)
    thresholds = np.unique(scores)[::-1]
    n_pos, n_neg = max(int(active.sum()), 1), max(int((~active).sum()), 1)
    fpr = [0.0] + [float(((scores >= t) & ~active).sum() / n_neg) for t in thresholds]
    tpr = [0.0] + [float(((scores >= t) & active).sum() / n_pos) for t in thresholds]
    return np.array(fpr), np.array(tpr)


def confusion(
    scores: np.ndarray, active: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, int]:
    """Counts ``tp``, ``fp``, ``tn``, ``fn`` of the model's call (score >= threshold)."""
    called = np.asarray(scores, dtype=np.float64) >= threshold
    truth = np.asarray(active).astype(bool)
    return {
        "tp": int((called & truth).sum()),
        "fp": int((called & ~truth).sum()),
        "tn": int((~called & ~truth).sum()),
        "fn": int((~called & truth).sum()),
    }


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two raters' labels; None for no slide, or when chance agreement is 1
    (both raters gave one and the same label to every slide)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return None
    labels = np.union1d(a, b)
    observed = float((a == b).mean())
    expected = float(sum((a == k).mean() * (b == k).mean() for k in labels))
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """Spearman's rho and its two-sided p-value; (None, None) with fewer than 3 pairs or a
    constant variable."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, None
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def agreement_metrics(
    scores: np.ndarray,
    active: np.ndarray,
    nancy_scores: np.ndarray,
    nancy: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """All the numbers of the cohort report. ``scores``/``active``: slides with an activity
    call; ``nancy_scores``/``nancy``: slides with a Nancy grade. ``missing`` lists, in
    words, what could not be computed and why."""
    active = np.asarray(active).astype(int)
    missing: list[str] = []
    auc = roc_auc(scores, active)
    if len(active) == 0:
        missing.append("no slide is both scored and graded active / inactive yet")
    elif auc is None:
        missing.append("ROC-AUC needs both active and inactive slides among the graded ones")
    called = (np.asarray(scores, dtype=np.float64) >= threshold).astype(int)
    kappa = cohen_kappa(called, active)
    if len(active) and kappa is None:
        missing.append(
            "Cohen's kappa is undefined: the model and the pathologist each gave "
            "one and the same call to every slide"
        )
    rho, p_value = spearman(nancy_scores, nancy)
    if rho is None:
        missing.append("Spearman needs at least 3 scored slides with different Nancy grades")
    ci = bootstrap_auc_ci(scores, active) if auc is not None else None
    cautions = small_sample_cautions(active, nancy, has_ci=ci is not None, has_p=rho is not None)
    return {
        "threshold": float(threshold),
        "n_activity": len(active),
        "n_active": int(active.sum()),
        "n_inactive": int(len(active) - active.sum()),
        "roc_auc": auc,
        "roc_auc_ci95": None if ci is None else list(ci),
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
        "bootstrap_seed": BOOTSTRAP_SEED,
        "confusion": confusion(scores, active, threshold),
        "cohen_kappa": kappa,
        "n_nancy": len(nancy),
        "spearman_rho": rho,
        "spearman_p": p_value,
        "missing": missing,
        "cautions": cautions,
    }


def small_sample_cautions(
    active: np.ndarray, nancy: np.ndarray, *, has_ci: bool, has_p: bool
) -> dict[str, str]:
    """A caution per statistic computed from fewer than :data:`MIN_SLIDES_PER_CLASS` slides
    in some class: ``roc_auc_ci95`` (active / inactive slides), ``spearman_p`` (slides per
    Nancy grade present). Empty when every class is large enough."""
    cautions: dict[str, str] = {}
    active = np.asarray(active).astype(int)
    n_active, n_inactive = int(active.sum()), int(len(active) - active.sum())
    if has_ci and min(n_active, n_inactive) < MIN_SLIDES_PER_CLASS:
        cautions["roc_auc_ci95"] = (
            f"small sample: {n_active} active and {n_inactive} inactive slides (fewer than "
            f"{MIN_SLIDES_PER_CLASS} in a class); the bootstrap CI understates the uncertainty"
        )
    grades, counts = np.unique(np.asarray(nancy, dtype=np.float64), return_counts=True)
    if has_p and counts.size and counts.min() < MIN_SLIDES_PER_CLASS:
        per_grade = ", ".join(f"{int(g)}: {int(c)}" for g, c in zip(grades, counts, strict=True))
        cautions["spearman_p"] = (
            f"small sample: slides per Nancy grade {per_grade} (fewer than "
            f"{MIN_SLIDES_PER_CLASS} in a grade); read the p-value with caution"
        )
    return cautions


def format_p(p_value: float | None) -> str:
    """A p-value for people: '-' when none, '< 0.001' below :data:`SMALLEST_P_SHOWN`, else
    three decimals."""
    if p_value is None or not np.isfinite(p_value):
        return "-"
    if p_value < SMALLEST_P_SHOWN:
        return f"< {SMALLEST_P_SHOWN:g}"
    return f"{p_value:.3f}"
