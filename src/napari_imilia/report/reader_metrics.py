"""Agreement between readers, and between readers and the model (no Qt).

Inputs are plain arrays over slides. Nancy grades are integers 0-4; activity is 1 (active)
or 0 (inactive); a missing read is NaN in a (slides x readers) matrix. Every function
returns None where the number is undefined (no slide, one category only...) rather than
guessing. Definitions:

- weighted Cohen's kappa, quadratic weights on the Nancy scale 0-4 (the distance between
  grades i and j counts (i - j)^2 / 16), as scikit-learn's ``cohen_kappa_score(a, b,
  weights="quadratic", labels=range(5))``;
- Fleiss' kappa over all readers (Fleiss 1971), slides read by every reader;
- ICC(2,1) and ICC(2,k) (Shrout and Fleiss 1979: two-way random effects, absolute
  agreement; one reader, the mean of k readers), slides read by every reader;
- bootstrap 95% CIs: slides resampled with replacement (``BOOTSTRAP_SAMPLES``, seeded),
  percentile interval of the resamples where the number is defined.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_imilia.report.metrics import cohen_kappa

NANCY_LEVELS: tuple[int, ...] = (0, 1, 2, 3, 4)
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def weighted_kappa(
    a: np.ndarray, b: np.ndarray, levels: tuple[int, ...] = NANCY_LEVELS
) -> float | None:
    """Quadratic-weighted Cohen's kappa of two readers' grades on ``levels``; None for no
    slide or when the expected disagreement is 0 (one grade for everything)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if len(a) == 0:
        return None
    k = len(levels)
    index = {level: i for i, level in enumerate(levels)}
    observed = np.zeros((k, k))
    for x, y in zip(a, b, strict=True):
        observed[index[int(x)], index[int(y)]] += 1
    positions = np.arange(k, dtype=np.float64)
    weights = (positions[:, None] - positions[None, :]) ** 2 / max(k - 1, 1) ** 2
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    denominator = float((weights * expected).sum())
    if denominator == 0:
        return None
    return 1.0 - float((weights * observed).sum()) / denominator


def kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Unweighted Cohen's kappa of two readers' labels (e.g. active 1 / inactive 0)."""
    return cohen_kappa(np.asarray(a), np.asarray(b))


def complete_rows(matrix: np.ndarray) -> np.ndarray:
    """The rows (slides) of a (slides x readers) matrix with no NaN."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix[~np.isnan(matrix).any(axis=1)] if matrix.size else matrix


def fleiss_kappa(matrix: np.ndarray, levels: tuple[int, ...] = NANCY_LEVELS) -> float | None:
    """Fleiss' kappa of a (slides x readers) matrix of categories in ``levels`` (slides
    with a missing read left out); None with fewer than 2 readers or slides, or one
    category only."""
    ratings = complete_rows(matrix)
    if ratings.ndim != 2 or ratings.shape[0] < 2 or ratings.shape[1] < 2:
        return None
    n_slides, n_readers = ratings.shape
    counts = np.stack([(ratings == level).sum(axis=1) for level in levels], axis=1)
    p_category = counts.sum(axis=0) / (n_slides * n_readers)
    agreement = ((counts * (counts - 1)).sum(axis=1)) / (n_readers * (n_readers - 1))
    p_bar, p_expected = float(agreement.mean()), float((p_category**2).sum())
    if p_expected >= 1.0:
        return None
    return (p_bar - p_expected) / (1.0 - p_expected)


def icc(matrix: np.ndarray) -> dict[str, float] | None:
    """``{'icc2_1': ..., 'icc2_k': ...}`` of a (slides x readers) matrix of grades (slides
    with a missing read left out); None with fewer than 2 readers or slides, or no variance."""
    ratings = complete_rows(matrix)
    if ratings.ndim != 2 or ratings.shape[0] < 2 or ratings.shape[1] < 2:
        return None
    n, k = ratings.shape
    grand = ratings.mean()
    ss_rows = k * float(((ratings.mean(axis=1) - grand) ** 2).sum())
    ss_cols = n * float(((ratings.mean(axis=0) - grand) ** 2).sum())
    ss_error = float(((ratings - grand) ** 2).sum()) - ss_rows - ss_cols
    ms_rows, ms_cols = ss_rows / (n - 1), ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    single = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    average = ms_rows + (ms_cols - ms_error) / n
    if single <= 0 or average <= 0:
        return None
    return {
        "icc2_1": (ms_rows - ms_error) / single,
        "icc2_k": (ms_rows - ms_error) / average,
    }


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float | None],
    n_slides: int,
    *,
    n_samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> list[float] | None:
    """Percentile bootstrap CI of ``statistic(slide_indices)`` over slides resampled with
    replacement; resamples where it is undefined are left out (None when over half are)."""
    if n_slides < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_samples):
        value = statistic(rng.integers(0, n_slides, size=n_slides))
        if value is not None and np.isfinite(value):
            values.append(value)
    if len(values) < n_samples / 2:
        return None
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return [float(low), float(high)]


def with_ci(
    statistic: Callable[[np.ndarray], float | None], n_slides: int, **options: Any
) -> dict[str, Any]:
    """``{'value', 'ci95', 'n'}``: the statistic on every slide and its bootstrap CI."""
    value = statistic(np.arange(n_slides)) if n_slides else None
    ci = bootstrap_ci(statistic, n_slides, **options) if value is not None else None
    return {"value": value, "ci95": ci, "n": int(n_slides)}
