"""``imilia-stain-stats``: a weight-free, deterministic 64-d H&E tile descriptor.

Made for demos and CI, not to replace a foundation model. Per tile (224 px at 0.5 µm/px;
other sizes are resized first):

1. Optical density ``OD = -log10((I + 1) / 256)`` per RGB channel, then Ruifrok-Johnston colour
   deconvolution with ``skimage.color.hed_from_rgb`` (the matrix of ``skimage.color.rgb2hed``)
   into haematoxylin H, eosin E and residual D amounts, clipped at 0.
2. Colour and stain statistics, H and E histograms (fixed bins), texture (gradients and an
   8-bin local sign-pattern histogram of the grey image).
3. Nuclei: H smoothed over 3 x 3 px, thresholded at :data:`NUCLEUS_H`, 4-connected components
   of at least :data:`MIN_BLOB_PX` px. A blob is *small-round-dense* (lymphocyte-like) when its
   area is 20-250 px (5-62 µm²), its minor/major axis ratio is >= 0.6 and its mean H >= 0.8.
   Counts, areas, roundness and where these blobs cluster (2 x 2 quadrants, 4 x 4 cells).

:data:`FEATURE_NAMES` lists the 64 features in order; docs/extractors.md explains each.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
from scipy import ndimage as ndi
from skimage.color import hed_from_rgb

from napari_imilia.errors import ImiliaError
from napari_imilia.features.extractors.base import Extractor, check_tiles, resize_tiles_uint8

TILE_PX = 224
TARGET_MPP = 0.5
VERSION = "1"
TISSUE_OD_SUM = 0.25
NUCLEUS_H = 0.6
DENSE_E = 0.35
MIN_BLOB_PX = 8
SRD_AREA_PX = (20.0, 250.0)
SRD_MIN_ROUNDNESS = 0.6
SRD_MIN_H = 0.8
H_BIN_EDGES = (0.0, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3)
E_BIN_EDGES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6)
FINE_BIN_WIDTH = 0.005
FINE_BINS = 800  # 0-4 OD; amounts above land in the last bin

FEATURE_NAMES: tuple[str, ...] = (
    *(f"rgb_mean_{c}" for c in "rgb"),
    *(f"rgb_std_{c}" for c in "rgb"),
    "tissue_fraction",
    "od_sum_mean",
    *(f"h_{s}" for s in ("mean", "std", "p10", "p50", "p90")),
    *(f"e_{s}" for s in ("mean", "std", "p10", "p50", "p90")),
    "d_mean",
    "h_mean_tissue",
    "e_mean_tissue",
    "h_e_ratio_tissue",
    "h_e_correlation",
    "h_dense_fraction",
    "e_dense_fraction",
    *(f"h_hist_{i}" for i in range(8)),
    *(f"e_hist_{i}" for i in range(8)),
    "blob_count_per100",
    "blob_area_mean_per100px",
    "blob_area_std_per100px",
    "blob_roundness_mean",
    "blob_h_mean",
    "srd_count_per100",
    "srd_fraction_of_blobs",
    "srd_area_fraction",
    "nuclear_fraction_max_quadrant",
    "srd_count_max_quadrant_per25",
    "srd_count_max_cell",
    "srd_dense_cell_fraction",
    "grad_h_mean",
    "grad_grey_mean",
    "grad_grey_std",
    *(f"sign_pattern_{i}" for i in range(8)),
)
FEATURE_DIM = len(FEATURE_NAMES)

_OD_LUT = (-np.log10((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)
_HED_FROM_OD = np.asarray(hed_from_rgb, dtype=np.float32)
_PLANAR_4 = np.zeros((3, 3, 3), dtype=bool)
_PLANAR_4[1] = ndi.generate_binary_structure(2, 1)


def builtin_digest() -> str:
    """SHA-256 of the descriptor's definition (version and constants), its 'weights' hash."""
    definition = {
        "name": "imilia-stain-stats",
        "version": VERSION,
        "tile_px": TILE_PX,
        "features": FEATURE_NAMES,
        "constants": [TISSUE_OD_SUM, NUCLEUS_H, DENSE_E, MIN_BLOB_PX, SRD_AREA_PX],
        "srd": [SRD_MIN_ROUNDNESS, SRD_MIN_H],
        "bins": [H_BIN_EDGES, E_BIN_EDGES],
    }
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def _fine_counts(values: np.ndarray) -> np.ndarray:
    """(B, N) stain amounts -> (B, FINE_BINS) counts on the 0.005-wide quantisation grid."""
    batch = values.shape[0]
    index = np.minimum((values * (1.0 / FINE_BIN_WIDTH)).astype(np.int64), FINE_BINS - 1)
    index += np.arange(batch, dtype=np.int64)[:, None] * FINE_BINS
    return np.bincount(index.ravel(), minlength=batch * FINE_BINS).reshape(batch, FINE_BINS)


def _quantiles(counts: np.ndarray, fractions: tuple[float, ...]) -> np.ndarray:
    """(len(fractions), B) lower edges of the fine bins holding each quantile."""
    cumulative = np.cumsum(counts, axis=1)
    targets = np.asarray(fractions)[None, :] * cumulative[:, -1:]
    index = np.array(
        [
            np.searchsorted(row, target, side="left")
            for row, target in zip(cumulative, targets, strict=True)
        ]
    )
    return (index * FINE_BIN_WIDTH).T


def _coarse_hist(counts: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """(len(edges), B) fractions of pixels per coarse bin; the last bin is open-ended."""
    starts = [round(edge / FINE_BIN_WIDTH) for edge in edges] + [FINE_BINS]
    sums = [counts[:, a:b].sum(axis=1) for a, b in itertools.pairwise(starts)]
    return np.asarray(sums) / counts.sum(axis=1)[None]


def _channel_moments(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (3, B) mean and std of each RGB channel in [0, 1], from 256-level counts."""
    batch = tiles.shape[0]
    planes = tiles.transpose(0, 3, 1, 2).reshape(batch * 3, -1).astype(np.int64)
    planes += np.arange(batch * 3, dtype=np.int64)[:, None] * 256
    counts = np.bincount(planes.ravel(), minlength=batch * 3 * 256).reshape(batch * 3, 256)
    levels = np.arange(256, dtype=np.float64) / 255.0
    n_px = counts.sum(axis=1)
    mean = counts @ levels / n_px
    var = np.maximum(counts @ levels**2 / n_px - mean**2, 0.0)
    return mean.reshape(batch, 3).T, np.sqrt(var).reshape(batch, 3).T


def _stain_features(tiles: np.ndarray, hed: np.ndarray, od_sum: np.ndarray) -> list[np.ndarray]:
    batch = tiles.shape[0]
    h, e, d = (hed[i].reshape(batch, -1) for i in range(3))
    tissue = (od_sum > TISSUE_OD_SUM).reshape(batch, -1)
    n_tissue = np.maximum(tissue.sum(axis=1), 1)
    h_tissue = (h * tissue).sum(axis=1) / n_tissue
    e_tissue = (e * tissue).sum(axis=1) / n_tissue
    h_mean, e_mean = h.mean(axis=1, dtype=np.float64), e.mean(axis=1, dtype=np.float64)
    h_var = np.maximum((h * h).mean(axis=1, dtype=np.float64) - h_mean**2, 0.0)
    e_var = np.maximum((e * e).mean(axis=1, dtype=np.float64) - e_mean**2, 0.0)
    cov = (h * e).mean(axis=1, dtype=np.float64) - h_mean * e_mean
    denom = np.sqrt(h_var * e_var)
    corr = np.where(denom > 1e-12, cov / np.maximum(denom, 1e-12), 0.0)
    h_counts, e_counts = _fine_counts(h), _fine_counts(e)
    rgb_mean, rgb_std = _channel_moments(tiles)
    return [
        rgb_mean,
        rgb_std,
        tissue.mean(axis=1)[None],
        od_sum.reshape(batch, -1).mean(axis=1, dtype=np.float64)[None],
        h_mean[None],
        np.sqrt(h_var)[None],
        _quantiles(h_counts, (0.1, 0.5, 0.9)),
        e_mean[None],
        np.sqrt(e_var)[None],
        _quantiles(e_counts, (0.1, 0.5, 0.9)),
        d.mean(axis=1, dtype=np.float64)[None],
        h_tissue[None],
        e_tissue[None],
        (h_tissue / (e_tissue + 0.05))[None],
        corr[None],
        (h > NUCLEUS_H).mean(axis=1)[None],
        (e > DENSE_E).mean(axis=1)[None],
        _coarse_hist(h_counts, H_BIN_EDGES),
        _coarse_hist(e_counts, E_BIN_EDGES),
    ]


def _blob_table(h_smooth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-blob tile index, area, centroid, roundness and mean H of the nucleus mask."""
    mask = h_smooth > NUCLEUS_H
    labels, n_labels = ndi.label(mask, structure=_PLANAR_4)
    b_idx, y_idx, x_idx = (np.asarray(a, dtype=np.float64) for a in np.nonzero(mask))
    flat = labels[mask]

    def per_label(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights=weights, minlength=n_labels + 1)[1:]

    area = np.maximum(per_label(None), 1.0)
    mean_y, mean_x = per_label(y_idx) / area, per_label(x_idx) / area
    var_y = per_label(y_idx**2) / area - mean_y**2 + 1.0 / 12.0
    var_x = per_label(x_idx**2) / area - mean_x**2 + 1.0 / 12.0
    cov = per_label(y_idx * x_idx) / area - mean_y * mean_x
    half_sum, half_diff = (var_y + var_x) / 2.0, np.sqrt(((var_y - var_x) / 2.0) ** 2 + cov**2)
    roundness = np.sqrt(np.maximum(half_sum - half_diff, 0.0) / (half_sum + half_diff))
    table = {
        "tile": np.rint(per_label(b_idx) / area).astype(np.int64),
        "area": area,
        "y": mean_y,
        "x": mean_x,
        "roundness": roundness,
        "h": per_label(h_smooth[mask].astype(np.float64)) / area,
    }
    keep = area >= MIN_BLOB_PX
    return {key: value[keep] for key, value in table.items()}


def _per_tile(values: np.ndarray, tile: np.ndarray, batch: int) -> np.ndarray:
    return np.bincount(tile, weights=values, minlength=batch)


def _nuclei_features(h_smooth: np.ndarray) -> list[np.ndarray]:
    batch, side = h_smooth.shape[0], h_smooth.shape[1]
    blobs = _blob_table(h_smooth)
    tile, area = blobs["tile"], blobs["area"]
    count = _per_tile(np.ones_like(area), tile, batch)
    safe = np.maximum(count, 1)
    area_mean = _per_tile(area, tile, batch) / safe
    area_sq = _per_tile(area**2, tile, batch) / safe
    srd = (
        (area >= SRD_AREA_PX[0])
        & (area <= SRD_AREA_PX[1])
        & (blobs["roundness"] >= SRD_MIN_ROUNDNESS)
        & (blobs["h"] >= SRD_MIN_H)
    )
    srd_count = _per_tile(srd.astype(np.float64), tile, batch)
    half = side // 2
    mask = h_smooth > NUCLEUS_H
    quadrants = [
        mask[:, ys, xs].mean(axis=(1, 2))
        for ys in (slice(0, half), slice(half, None))
        for xs in (slice(0, half), slice(half, None))
    ]
    cell_px = side / 4.0
    cell = (
        tile * 16
        + np.minimum(blobs["y"] // cell_px, 3).astype(np.int64) * 4
        + np.minimum(blobs["x"] // cell_px, 3).astype(np.int64)
    )
    cells = np.bincount(cell[srd], minlength=batch * 16).reshape(batch, 4, 4)
    quadrant_counts = cells.reshape(batch, 2, 2, 2, 2).sum(axis=(2, 4)).reshape(batch, 4)
    return [
        (count / 100.0)[None],
        (area_mean / 100.0)[None],
        (np.sqrt(np.maximum(area_sq - area_mean**2, 0.0)) / 100.0)[None],
        (_per_tile(blobs["roundness"], tile, batch) / safe)[None],
        (_per_tile(blobs["h"], tile, batch) / safe)[None],
        (srd_count / 100.0)[None],
        (srd_count / safe)[None],
        (_per_tile(area * srd, tile, batch) / float(side * side))[None],
        np.max(quadrants, axis=0)[None],
        (quadrant_counts.max(axis=1) / 25.0)[None],
        cells.reshape(batch, 16).max(axis=1)[None].astype(np.float64),
        (cells.reshape(batch, 16) >= 3).mean(axis=1)[None],
    ]


def _texture_features(tiles: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
    batch = tiles.shape[0]
    grey = tiles.transpose(3, 0, 1, 2).sum(axis=0, dtype=np.int16)  # 0..765

    def grad(img: np.ndarray) -> np.ndarray:
        gy = np.abs(np.diff(img, axis=1))[:, :, :-1]
        gx = np.abs(np.diff(img, axis=2))[:, :-1, :]
        return (gy + gx).reshape(batch, -1)

    grey_grad = grad(grey).astype(np.float32) / (2.0 * 765.0)
    centre = grey[:, :-1, :-1]
    code = (
        (grey[:, :-1, 1:] > centre).view(np.uint8)
        + 2 * (grey[:, 1:, :-1] > centre).view(np.uint8)
        + 4 * (grey[:, 1:, 1:] > centre).view(np.uint8)
    ).reshape(batch, -1)
    offsets = np.arange(batch, dtype=np.int64)[:, None] * 8
    pattern = np.bincount((code + offsets).ravel(), minlength=batch * 8).reshape(batch, 8)
    return [
        (grad(h).mean(axis=1, dtype=np.float64) / 2.0)[None],
        grey_grad.mean(axis=1, dtype=np.float64)[None],
        grey_grad.std(axis=1, dtype=np.float64)[None],
        (pattern / code.shape[1]).T,
    ]


def stain_stats(tiles_uint8: np.ndarray) -> np.ndarray:
    """(B, 224, 224, 3) uint8 tiles -> (B, 64) float32 features (:data:`FEATURE_NAMES`)."""
    tiles = np.ascontiguousarray(tiles_uint8)
    if tiles.shape[0] == 0:
        return np.zeros((0, FEATURE_DIM), dtype=np.float32)
    od = _OD_LUT[tiles.transpose(3, 0, 1, 2)]  # (3, B, H, W)
    hed = np.stack(
        [np.maximum(sum(od[c] * _HED_FROM_OD[c, s] for c in range(3)), 0.0) for s in range(3)]
    )
    h_smooth = ndi.uniform_filter(hed[0], size=(1, 3, 3), mode="nearest")
    parts = [
        *_stain_features(tiles, hed, od[0] + od[1] + od[2]),
        *_nuclei_features(h_smooth),
        *_texture_features(tiles, hed[0]),
    ]
    features = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts], axis=0).T
    if features.shape[1] != FEATURE_DIM:
        raise ImiliaError(f"imilia-stain-stats produced {features.shape[1]} features")
    return np.ascontiguousarray(features, dtype=np.float32)


class StainStatsExtractor(Extractor):
    """Weight-free ``imilia-stain-stats`` extractor (CPU, numpy/scipy; see module docstring)."""

    requires_weights = False

    def __init__(self, batch_size: int = 64) -> None:
        import torch

        if int(batch_size) < 1:
            raise ImiliaError(f"batch_size must be >= 1, got {batch_size}")
        self.name = "imilia-stain-stats"
        self.description = (
            "builtin, no weights: H&E colour deconvolution, stain histograms, nucleus blobs "
            "(small round dense = lymphocyte-like) and texture, 64-d"
        )
        self.dim = FEATURE_DIM
        self.tile_px = TILE_PX
        self.target_mpp = TARGET_MPP
        self.mean = (0.0, 0.0, 0.0)
        self.std = (1.0, 1.0, 1.0)
        self.weights_sha256 = builtin_digest()
        self.device = torch.device("cpu")
        self.batch_size = int(batch_size)

    def embed(self, tiles_uint8: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 tiles -> (B, 64) float32 features (resized to 224 px first)."""
        tiles = resize_tiles_uint8(check_tiles(tiles_uint8, self.name), self.tile_px)
        parts = [
            stain_stats(tiles[start : start + self.batch_size])
            for start in range(0, len(tiles), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)
