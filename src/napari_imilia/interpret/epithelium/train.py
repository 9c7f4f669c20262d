"""Training of the EpiSeg probe: tile-grouped cross-validation, the reference's settings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_imilia.errors import DataError
from napari_imilia.interpret.epithelium.probe import (
    CLEAR_PATCH_TOLERANCE,
    DEFAULT_THRESHOLD,
    PATCH_PX,
    EpiSegProbe,
    patch_fractions_from_mask,
)

#: Regularisation strengths tried in cross-validation (the reference's ``logspace(-2, 1, 4)``).
DEFAULT_C_VALUES: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
#: Lower-C tie-break: C values whose mean AP is within this of the best count as equal.
AP_TIE_TOLERANCE = 1e-3


def grouped_folds(n_tiles: int, folds: int, seed: int) -> list[np.ndarray]:
    """Tile indices held out in each fold: tiles shuffled with ``seed``, split near-evenly."""
    order = np.random.default_rng(seed).permutation(n_tiles)
    return [np.sort(part) for part in np.array_split(order, folds)]


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, max_iter: int) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    model.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision, NaN when ``labels`` hold one class only."""
    from sklearn.metrics import average_precision_score

    if labels.size == 0 or labels.all() or not labels.any():
        return float("nan")
    return float(average_precision_score(labels, scores))


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _checked_inputs(
    tokens: np.ndarray, masks: np.ndarray, folds: int, c_values: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(N, h, w, D) tokens and (N, H, W) bool masks, or ``DataError`` for unusable input."""
    tokens = np.asarray(tokens)
    masks = np.asarray(masks).astype(bool)
    if tokens.ndim != 4:
        raise DataError(f"patch tokens must be (N, h, w, D); got shape {tokens.shape}")
    if masks.ndim != 3 or masks.shape[0] != tokens.shape[0]:
        raise DataError(f"masks must be (N, H, W) with N={tokens.shape[0]}; got {masks.shape}")
    n_tiles = tokens.shape[0]
    if folds < 2:
        raise DataError(f"EpiSeg cross-validation needs at least 2 folds; got {folds}")
    if n_tiles < folds:
        raise DataError(
            f"{n_tiles} tiles cannot be split into {folds} folds; add tiles or lower --folds"
        )
    if not c_values:
        raise DataError("c_values is empty; give at least one regularisation strength C")
    return tokens, masks


def _patch_labels(
    tokens: np.ndarray, masks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tile and patch: tokens ``(N, h*w, D)`` float32, ``is_epi`` (majority epithelium)
    and ``clear`` (epithelium fraction within ``CLEAR_PATCH_TOLERANCE`` of 0 or 1), both
    ``(N, h*w)`` bool."""
    n_tiles, n_rows, n_cols, dim = tokens.shape
    fractions = np.stack([patch_fractions_from_mask(m, (n_rows, n_cols)) for m in masks])
    clear = (fractions < CLEAR_PATCH_TOLERANCE) | (fractions > 1.0 - CLEAR_PATCH_TOLERANCE)
    x_all = tokens.reshape(n_tiles, n_rows * n_cols, dim).astype(np.float32, copy=False)
    fractions = fractions.reshape(n_tiles, -1)
    clear = clear.reshape(n_tiles, -1)
    is_epi = fractions > 0.5
    if not (is_epi[clear].any() and (~is_epi[clear]).any()):
        raise DataError(
            "EpiSeg training needs patches that are clearly epithelium and clearly not; "
            f"the masks give {int(is_epi[clear].sum())} epithelium and "
            f"{int((~is_epi[clear]).sum())} other clear patches"
        )
    return x_all, is_epi, clear


def _cross_validate(
    x_all: np.ndarray,
    is_epi: np.ndarray,
    clear: np.ndarray,
    c: float,
    fold_tiles: list[np.ndarray],
    seed: int,
    max_iter: int,
) -> dict[str, Any]:
    """Average precision of each held-out fold for one C: on its clear patches (the
    reference's) and on all its patches labelled by majority."""
    n_tiles, dim = x_all.shape[0], x_all.shape[2]
    fold_ap: list[float] = []
    fold_ap_all: list[float] = []
    for held_out in fold_tiles:
        train = np.ones(n_tiles, dtype=bool)
        train[held_out] = False
        x_train, y_train = x_all[train][clear[train]], is_epi[train][clear[train]]
        if y_train.all() or not y_train.any():
            raise DataError(
                "a cross-validation fold has training patches of one class only; "
                f"use more tiles with and without epithelium, or fewer folds than "
                f"{len(fold_tiles)}"
            )
        model = _fit(x_train, y_train, float(c), seed, max_iter)
        scores = model.predict_proba(x_all[~train].reshape(-1, dim))[:, 1]
        fold_ap.append(
            _average_precision(is_epi[~train][clear[~train]], scores[clear[~train].ravel()])
        )
        fold_ap_all.append(_average_precision(is_epi[~train].ravel(), scores))
    return {
        "c": float(c),
        "fold_ap": fold_ap,
        "mean_ap": _nanmean(fold_ap),
        "fold_ap_all_patches": fold_ap_all,
        "mean_ap_all_patches": _nanmean(fold_ap_all),
    }


def _best_c(per_c: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry of ``per_c`` with the best mean AP; the lowest C among near-ties."""
    finite = [e for e in per_c if np.isfinite(e["mean_ap"])]
    if not finite:
        raise DataError(
            "no cross-validation fold has held-out patches of both classes; "
            "use more tiles with and without epithelium"
        )
    best_ap = max(e["mean_ap"] for e in finite)
    return min(
        (e for e in finite if abs(e["mean_ap"] - best_ap) < AP_TIE_TOLERANCE), key=lambda e: e["c"]
    )


def train_episeg_probe(
    tokens: np.ndarray,
    masks: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    c_values: Sequence[float] = DEFAULT_C_VALUES,
    threshold: float = DEFAULT_THRESHOLD,
    max_iter: int = 500,
    extractor_name: str = "",
    extractor_weights_sha256: str = "",
    mpp: float = 0.5,
    patch_px: int = PATCH_PX,
) -> tuple[EpiSegProbe, dict[str, Any]]:
    """Train an EpiSeg probe with tile-grouped cross-validation.

    ``tokens``: (N, h, w, D) patch tokens of N tiles; ``masks``: (N, H, W) bool epithelium
    masks at tile resolution. Returns the probe refit on all clear patches with the chosen C,
    and JSON-ready metrics: per C the average precision of each fold (clear patches, as the
    reference) and their mean, plus for the chosen C the AP over all patches labelled by
    majority (fraction > 0.5, the reference's test-set rule).
    """
    tokens, masks = _checked_inputs(tokens, masks, folds, c_values)
    n_tiles, n_rows, n_cols, _dim = tokens.shape
    x_all, is_epi, clear = _patch_labels(tokens, masks)
    fold_tiles = grouped_folds(n_tiles, folds, seed)
    per_c = [_cross_validate(x_all, is_epi, clear, c, fold_tiles, seed, max_iter) for c in c_values]
    best = _best_c(per_c)
    best_c = best["c"]

    final = _fit(x_all[clear], is_epi[clear], best_c, seed, max_iter)
    metrics: dict[str, Any] = {
        "folds": int(folds),
        "seed": int(seed),
        "n_tiles": int(n_tiles),
        "grid": [int(n_rows), int(n_cols)],
        "n_patches": int(n_tiles * n_rows * n_cols),
        "n_clear_patches": int(clear.sum()),
        "n_clear_epithelium_patches": int(is_epi[clear].sum()),
        "fold_tiles": [part.tolist() for part in fold_tiles],
        "per_c": per_c,
        "best_c": float(best_c),
        "fold_ap": best["fold_ap"],
        "mean_ap": best["mean_ap"],
        "fold_ap_all_patches": best["fold_ap_all_patches"],
        "mean_ap_all_patches": best["mean_ap_all_patches"],
        "threshold": float(threshold),
        "final_model_converged": bool(final.converged_),
    }
    probe = EpiSegProbe(
        weights=final.coef_[0].astype(np.float64),
        bias=float(final.intercept_[0]),
        threshold=float(threshold),
        extractor_name=extractor_name,
        extractor_weights_sha256=extractor_weights_sha256,
        patch_px=int(patch_px),
        mpp=float(mpp),
        c=float(best_c),
        provenance={
            "trainer": "napari_imilia.interpret.epithelium.train_episeg_probe",
            "n_tiles": int(n_tiles),
            "n_clear_patches": int(clear.sum()),
            "cv_mean_ap": best["mean_ap"],
            "folds": int(folds),
            "seed": int(seed),
            "max_iter": int(max_iter),
        },
    )
    return probe, metrics
