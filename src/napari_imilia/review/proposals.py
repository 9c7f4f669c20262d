"""Item grades proposed from the census, calibrated on one reviewer's own grades (no Qt).

Once at least :data:`MIN_SLIDES` slides of a cohort carry a reviewer's grade of an item, with
at least :data:`MIN_LEVELS` different grades among them, a proportional-odds (cumulative
logit) model fitted on them proposes that item's grade for the reviewer's other slides with a
census. Its features are the item's census values (:func:`napari_imilia.review.evidence.
evidence_features`: log cells/mm² over the slide and in the worst 500 µm window; for
neutrophils in epithelium also the share of epithelial tiles involved), standardised; a ridge
penalty (:data:`RIDGE`) keeps the fit finite when the grades separate perfectly.

Each item's model carries its agreement figure: the cross-validated quadratic weighted kappa
between the reviewer's grades and the grade the model predicts for each slide when fitted
without it (on the item's whole scale): **leave-one-out** up to :data:`LOO_MAX_SLIDES`
graded slides, **10-fold** (seeded) beyond, so a refit stays well under a second. A
proposal is made only with that figure (no figure, no proposal), and is never stored:
accepting one is the reviewer setting
the item in the grade form and committing a normal read. Erosion or ulceration is not
measured by the census, so it is never proposed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.census import CensusData, census_dir
from napari_imilia.review.evidence import ItemEvidence, evidence_features, item_evidence
from napari_imilia.review.indices import ITEMS, ITEMS_BY_KEY
from napari_imilia.review.reads import load_slide_reads
from napari_imilia.trust.paths import path_inside

#: Fewest slides graded by the reviewer before an item's model is fitted, and the fewest
#: different grades among them.
MIN_SLIDES = 10
MIN_LEVELS = 2
#: L2 penalty on the standardised feature weights.
RIDGE = 0.1
#: Cross-validation: leave-one-out up to this many graded slides, else ``FOLDS``-fold.
LOO_MAX_SLIDES = 30
FOLDS = 10


@dataclass(frozen=True)
class OrdinalModel:
    """A fitted cumulative-logit model: P(grade <= level_j) = σ(θ_j − x·β) on standardised
    ``x``; ``levels`` the grades seen in training, in order."""

    levels: tuple[int, ...]
    mean: np.ndarray
    scale: np.ndarray
    beta: np.ndarray
    thresholds: np.ndarray

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, len(levels)) probability of each level."""
        x = (np.atleast_2d(features) - self.mean) / self.scale
        cumulative = expit(self.thresholds[None, :] - (x @ self.beta)[:, None])
        cumulative = np.hstack([np.zeros((len(x), 1)), cumulative, np.ones((len(x), 1))])
        return np.clip(np.diff(cumulative, axis=1), 0.0, 1.0)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(n,) the most probable grade of each row."""
        return np.asarray(self.levels)[np.argmax(self.probabilities(features), axis=1)]


def _thresholds(params: np.ndarray, d: int) -> np.ndarray:
    raw = params[d:]
    return np.cumsum(np.concatenate([raw[:1], np.exp(raw[1:])]))


def _slope(t: np.ndarray) -> np.ndarray:
    """σ'(t), 0 at ±inf."""
    s = expit(t)
    return np.where(np.isfinite(t), s * (1.0 - s), 0.0)


def _loss(
    params: np.ndarray, z: np.ndarray, index: np.ndarray, ridge: float
) -> tuple[float, np.ndarray]:
    """Penalised negative log-likelihood of the cumulative-logit model and its gradient."""
    d = z.shape[1]
    k = len(params) - d + 1
    beta, raw = params[:d], params[d:]
    theta = _thresholds(params, d)
    eta = z @ beta
    upper = np.append(theta, np.inf)[index] - eta
    lower = np.insert(theta, 0, -np.inf)[index] - eta
    p = np.clip(expit(upper) - expit(lower), 1e-12, None)
    slope_u, slope_l = _slope(upper), _slope(lower)
    # gradient of -log p: through eta (x·β) and through the thresholds
    d_eta = (slope_u - slope_l) / p
    d_theta = np.zeros(k - 1)
    np.add.at(d_theta, index[index < k - 1], -(slope_u / p)[index < k - 1])
    np.add.at(d_theta, index[index > 0] - 1, (slope_l / p)[index > 0])
    tail = d_theta[::-1].cumsum()[::-1][1:]  # dθ_j/draw_m = exp(raw_m) for j >= m
    d_raw = np.concatenate([[d_theta.sum()], np.exp(raw[1:]) * tail])
    grad = np.concatenate([z.T @ d_eta + ridge * beta, d_raw])
    return float(-np.log(p).sum() + 0.5 * ridge * beta @ beta), grad


def fit_ordinal(features: np.ndarray, grades: np.ndarray, ridge: float = RIDGE) -> OrdinalModel:
    """Fit :class:`OrdinalModel` to (n, d) ``features`` and (n,) integer ``grades`` (at
    least two different ones) by penalised maximum likelihood (BFGS, analytic gradient)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(grades, dtype=np.int64)
    levels = tuple(int(v) for v in np.unique(y))
    if len(levels) < 2:
        raise ImiliaError("an ordinal model needs at least two different grades")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    index = np.searchsorted(levels, y)
    d, k = z.shape[1], len(levels)
    start = np.concatenate([np.zeros(d), [-(k - 2) / 2.0], np.zeros(k - 2)])
    result = minimize(_loss, start, args=(z, index, ridge), jac=True, method="BFGS")
    params = result.x
    return OrdinalModel(levels, mean, scale, params[:d], _thresholds(params, d))


def quadratic_kappa(a: np.ndarray, b: np.ndarray, max_grade: int) -> float | None:
    """Quadratic weighted kappa of two gradings on the scale 0..``max_grade``; None when
    undefined (one grade everywhere)."""
    from sklearn.metrics import cohen_kappa_score

    value = cohen_kappa_score(a, b, weights="quadratic", labels=list(range(max_grade + 1)))
    return None if not np.isfinite(value) else float(value)


def cross_validated_kappa(
    features: np.ndarray, grades: np.ndarray, max_grade: int, *, loo_max: int = LOO_MAX_SLIDES
) -> tuple[float | None, str]:
    """(quadratic weighted kappa, scheme) of each slide's grade against the model fitted
    without it: leave-one-out up to ``loo_max`` slides, else
    :data:`FOLDS`-fold (slides shuffled with seed 0). A fold whose training slides hold one
    grade only predicts that grade."""
    x, y = np.asarray(features, np.float64), np.asarray(grades, np.int64)
    n = len(y)
    if n <= loo_max:
        folds, scheme = [np.array([i]) for i in range(n)], "leave-one-out"
    else:
        order = np.random.default_rng(0).permutation(n)
        folds, scheme = np.array_split(order, FOLDS), f"{FOLDS}-fold"
    predicted = np.empty_like(y)
    for held in folds:
        keep = np.ones(n, bool)
        keep[held] = False
        if len(np.unique(y[keep])) < 2:
            predicted[held] = y[keep][0]
            continue
        predicted[held] = fit_ordinal(x[keep], y[keep]).predict(x[held])
    return quadratic_kappa(y, predicted, max_grade), scheme


def loo_kappa(features: np.ndarray, grades: np.ndarray, max_grade: int) -> float | None:
    """Leave-one-out quadratic weighted kappa, whatever the number of slides."""
    return cross_validated_kappa(features, grades, max_grade, loo_max=len(grades))[0]


@dataclass(frozen=True)
class ItemModel:
    """An item's calibration: ``n_slides`` graded slides with a census used, their
    ``levels``, the cross-validated ``kappa`` (None: not defined) and its ``scheme``
    ('leave-one-out' or '10-fold'), the fitted ``model`` (None while there are too few
    grades: ``why`` says what is missing)."""

    key: str
    n_slides: int
    levels: tuple[int, ...]
    kappa: float | None
    model: OrdinalModel | None
    why: str = ""
    scheme: str = ""


@dataclass
class CohortProposals:
    """A reviewer's calibrated item models over a cohort and the proposals they make:
    ``models`` by item key; ``proposals[slide_id][item key]`` = (grade, probability)."""

    reader: str
    models: dict[str, ItemModel] = field(default_factory=dict)
    proposals: dict[str, dict[str, tuple[int, float]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def for_slide(self, slide_id: str) -> dict[str, tuple[int, float]]:
        return self.proposals.get(slide_id, {})


def calibrate(
    evidence: dict[str, list[ItemEvidence]], grades: dict[str, dict[str, int]], reader: str
) -> CohortProposals:
    """Fit each item's model on the slides of ``evidence`` that ``grades`` (slide id ->
    items) grade, and propose for the slides of ``evidence`` not graded on that item."""
    out = CohortProposals(reader)
    for item in ITEMS:
        rows = {s: evidence_features(e, item.key) for s, e in evidence.items()}
        if any(v is None for v in rows.values()) or not rows:
            out.models[item.key] = ItemModel(item.key, 0, (), None, None, "not measured")
            continue
        graded = [s for s in rows if item.key in grades.get(s, {})]
        y = np.array([grades[s][item.key] for s in graded], np.int64)
        levels = tuple(int(v) for v in np.unique(y))
        if len(graded) < MIN_SLIDES or len(levels) < MIN_LEVELS:
            why = (
                f"{len(graded)} of {MIN_SLIDES} slides graded with a census, "
                f"{len(levels)} of {MIN_LEVELS} grade levels"
            )
            out.models[item.key] = ItemModel(item.key, len(graded), levels, None, None, why)
            continue
        x = np.vstack([rows[s] for s in graded])
        kappa, scheme = cross_validated_kappa(x, y, item.max_grade)
        model = fit_ordinal(x, y)
        out.models[item.key] = ItemModel(item.key, len(graded), levels, kappa, model, scheme=scheme)
        if kappa is None:
            continue
        for slide_id in rows:
            if slide_id not in graded:
                p = model.probabilities(rows[slide_id])[0]
                best = int(np.argmax(p))
                out.proposals.setdefault(slide_id, {})[item.key] = (
                    int(model.levels[best]),
                    float(p[best]),
                )
    return out


_EVIDENCE_CACHE: dict[tuple[str, int], list[ItemEvidence]] = {}


def slide_evidence(results_root: str | os.PathLike[str], slide_id: str) -> list[ItemEvidence]:
    """The item evidence of a slide's finished census ([] without one), cached by the
    census's ``census.json`` time stamp."""
    folder = census_dir(results_root, slide_id)
    info = Path(folder) / "census.json"
    try:
        stamp = info.stat().st_mtime_ns
    except OSError:
        return []
    key = (str(folder), stamp)
    if key not in _EVIDENCE_CACHE:
        _EVIDENCE_CACHE[key] = item_evidence(CensusData.load(folder))
    return _EVIDENCE_CACHE[key]


def cohort_proposals(
    results_root: str | os.PathLike[str], slide_ids: list[str], reader: str
) -> CohortProposals:
    """:func:`calibrate` on ``reader``'s own latest item grades of ``slide_ids`` (their
    reads only) and the slides' censuses; a census or journal that cannot be read is left
    out with a warning."""
    evidence: dict[str, list[ItemEvidence]] = {}
    grades: dict[str, dict[str, int]] = {}
    warnings: list[str] = []
    for slide_id in slide_ids:
        try:
            found = slide_evidence(results_root, slide_id)
            folder = path_inside(results_root, slide_id)
            reads = load_slide_reads(folder, slide_id, reader=reader)
        except (ImiliaError, OSError) as error:
            warnings.append(f"{slide_id}: {error}")
            continue
        warnings += reads.warnings
        if found:
            evidence[slide_id] = found
        latest = reads.latest(reader)  # their current grade of the slide
        items = {} if latest is None else latest.grade.items
        items = {k: v for k, v in items.items() if k in ITEMS_BY_KEY}
        if items:
            grades[slide_id] = items
    out = calibrate(evidence, grades, reader)
    out.warnings = warnings
    return out


def kappa_text(model: ItemModel) -> str:
    """'κ 0.82 (leave-one-out, 14 slides)' (or '10-fold') or why there is no figure."""
    if model.model is None:
        return f"no proposal yet: {model.why}"
    if model.kappa is None or math.isnan(model.kappa):
        return f"no proposal: agreement undefined ({model.n_slides} slides)"
    return f"κ {model.kappa:.2f} ({model.scheme}, {model.n_slides} slides)"
