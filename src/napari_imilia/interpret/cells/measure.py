"""Per-nucleus measurements from an instance label image: the table and contours of
``TileCells``.

Coordinate convention (as ``TileCells``, QuPath's continuous level-0 coordinates): label pixel
(row r, column c) covers the level-0 square [x0 + c s, x0 + (c + 1) s) x [y0 + r s, y0 + (r + 1) s),
s = ``level0_per_px``, so its centre is (x0 + (c + 0.5) s, y0 + (r + 0.5) s). A sub-pixel
position (row, col) in pixel-index units (pixel centres at integers, as skimage gives them)
maps to level-0 with ``index_to_level0``; centroids and contours use that mapping, so they
agree with pixel-square polygons (``epithelium_polygons``, ``labels_to_geometries``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import find_contours

from napari_imilia.errors import DataError
from napari_imilia.interpret.cells.base import check_geometry
from napari_imilia.interpret.cells.stain import check_rgb, deconvolve_he, optical_density
from napari_imilia.interpret.cells.types import (
    CELL_CLASSES,
    CELL_TABLE_COLUMNS,
    TileCells,
    empty_table,
)

PerLabel = np.ndarray | Sequence[float] | Mapping[int, float]


#: Offset (pixels) from a pixel's index to its centre in continuous coordinates.
PIXEL_CENTRE = 0.5


def index_to_level0(index: np.ndarray, origin: float, level0_per_px: float) -> np.ndarray:
    """Level-0 coordinate of positions in pixel-index units along one axis (pixel ``j``'s
    centre is ``j``): ``origin + (index + 0.5) * level0_per_px``."""
    return origin + (np.asarray(index, dtype=np.float64) + PIXEL_CENTRE) * level0_per_px


def hematoxylin_od(tile_rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 hematoxylin optical density (Ruifrok vectors) of an RGB tile."""
    return deconvolve_he(optical_density(tile_rgb))[:, :, 0]


def build_tile_cells(
    labels: np.ndarray,
    class_ids: PerLabel,
    probabilities: PerLabel | None,
    tile_rgb: np.ndarray | None,
    *,
    mpp: float,
    level0_xy: tuple[int, int],
    level0_per_px: float,
    backend: str,
    flags: Iterable[str] = (),
    cell_ids: Mapping[int, str] | None = None,
    contours: Mapping[int, np.ndarray] | None = None,
    hematoxylin: np.ndarray | None = None,
) -> TileCells:
    """A ``TileCells`` with one row per label present in ``labels`` (sorted by label).

    ``labels``: (H, W) non-negative int instance image at ``mpp`` µm/px, 0 background.
    ``class_ids`` / ``probabilities``: per label, either an array indexed by label value
    (entry 0 unused, length > max label) or a mapping label -> value; probabilities None
    gives NaN. ``tile_rgb``: (H, W, 3) uint8 image of the same tile for the mean
    hematoxylin OD (NaN when None; ``hematoxylin`` may give the (H, W) OD map instead).
    Columns: ``cell_id`` ``f"{backend}:{x0}:{y0}:{label}"`` unless ``cell_ids`` maps labels
    to ids; centroid in level-0 px; ``area_um2`` = pixel count x mpp²; ``eccentricity`` of
    the ellipse with the same second moments. Contours: level-0 (x, y) closed rings (first
    point repeated) traced at half-pixel level around each label's largest part, unless
    ``contours`` gives them per label (converted to closed float rings).
    """
    labels = _check_labels(labels)
    check_geometry(mpp, level0_per_px)
    values = np.unique(labels)
    values = values[values > 0]
    x0, y0 = (int(v) for v in level0_xy)
    scale = float(level0_per_px)
    table, rings = empty_table(), []
    if len(values):
        class_of = _class_ids(class_ids, values)
        probability = (
            np.full(len(values), np.nan)
            if probabilities is None
            else _per_label(probabilities, values, "probabilities").astype(np.float64)
        )
        hematoxylin = _hematoxylin_map(tile_rgb, hematoxylin, labels.shape)
        moments = label_moments(labels, values, hematoxylin)
        if contours is None:
            rings = label_contours(labels, values, level0_xy=(x0, y0), level0_per_px=scale)
        else:
            rings = [_ring(contours[int(v)], int(v)) for v in values]
        ids = [
            cell_ids[int(v)] if cell_ids is not None else f"{backend}:{x0}:{y0}:{int(v)}"
            for v in values
        ]
        table = _cell_table(values, ids, class_of, probability, moments, (x0, y0), scale, mpp)
    return TileCells(
        labels=labels,
        table=table,
        contours=rings,
        mpp=float(mpp),
        level0_xy=(x0, y0),
        level0_per_px=scale,
        backend=backend,
        flags=list(flags),
    )


def _cell_table(
    values: np.ndarray,
    ids: list[str],
    class_of: np.ndarray,
    probability: np.ndarray,
    moments: dict[str, np.ndarray],
    level0_xy: tuple[int, int],
    level0_per_px: float,
    mpp: float,
) -> pd.DataFrame:
    """``TileCells.table``: one row per label in ``values`` (centroids in level-0 px)."""
    x0, y0 = level0_xy
    return pd.DataFrame(
        {
            "cell_id": pd.Series(ids, dtype="str"),
            "label": values.astype(np.int64),
            "class_id": class_of,
            "class_name": pd.Series([CELL_CLASSES[c] for c in class_of], dtype="str"),
            "probability": probability,
            "centroid_x": index_to_level0(moments["col"], x0, level0_per_px),
            "centroid_y": index_to_level0(moments["row"], y0, level0_per_px),
            "area_um2": moments["area_px"] * float(mpp) ** 2,
            "eccentricity": moments["eccentricity"],
            "mean_hematoxylin_od": moments["hematoxylin"],
        },
        columns=list(CELL_TABLE_COLUMNS),
    )


def _class_ids(class_ids: PerLabel, values: np.ndarray) -> np.ndarray:
    """Class id per label in ``values``; ``DataError`` unless each indexes ``CELL_CLASSES``."""
    class_of = _per_label(class_ids, values, "class_ids").astype(np.int64)
    bad = (class_of < 0) | (class_of >= len(CELL_CLASSES))
    if bad.any():
        raise DataError(
            f"class ids must index CELL_CLASSES (0-{len(CELL_CLASSES) - 1}); "
            f"got {sorted(set(class_of[bad].tolist()))}"
        )
    return class_of


def _hematoxylin_map(
    tile_rgb: np.ndarray | None, hematoxylin: np.ndarray | None, shape: tuple[int, ...]
) -> np.ndarray | None:
    """The (H, W) hematoxylin OD map: ``hematoxylin`` if given, else from ``tile_rgb``
    (None without either); ``DataError`` when it is not the labels' ``shape``."""
    if hematoxylin is None and tile_rgb is not None:
        rgb = check_rgb(tile_rgb)
        if rgb.shape[:2] != shape:
            raise DataError(f"tile is {rgb.shape[:2]} pixels but labels are {shape}")
        hematoxylin = hematoxylin_od(rgb)
    if hematoxylin is not None and np.shape(hematoxylin) != shape:
        raise DataError(f"hematoxylin map is {np.shape(hematoxylin)} but labels are {shape}")
    return hematoxylin


def label_moments(
    labels: np.ndarray, values: np.ndarray, intensity: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per label in ``values``: pixel count, centroid (row, col in pixels), second central
    moments, axis lengths (pixels, of the equal-moment ellipse), orientation (radians, of the
    major axis from the column axis, counter-clockwise with rows downward), eccentricity
    and mean ``intensity`` (NaN without it). Computed with bincounts, no per-label loop."""
    n = int(values.max()) + 1
    flat = labels.ravel()
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    area = np.bincount(flat, minlength=n).astype(np.float64)
    safe = np.maximum(area, 1.0)
    r_mean = np.bincount(flat, rows.ravel(), n) / safe
    c_mean = np.bincount(flat, cols.ravel(), n) / safe
    dr = rows.ravel() - r_mean[flat]
    dc = cols.ravel() - c_mean[flat]
    mu_rr = np.bincount(flat, dr * dr, n) / safe
    mu_cc = np.bincount(flat, dc * dc, n) / safe
    mu_rc = np.bincount(flat, dr * dc, n) / safe
    half_trace = (mu_rr + mu_cc) / 2
    root = np.sqrt(((mu_rr - mu_cc) / 2) ** 2 + mu_rc**2)
    major, minor = half_trace + root, np.maximum(half_trace - root, 0.0)
    eccentricity = np.where(major > 0, np.sqrt(1.0 - minor / np.maximum(major, 1e-12)), 0.0)
    if intensity is None:
        mean_intensity = np.full(n, np.nan)
    else:
        mean_intensity = np.bincount(flat, np.asarray(intensity, np.float64).ravel(), n) / safe
    index = values.astype(np.intp)
    return {
        "area_px": area[index],
        "row": r_mean[index],
        "col": c_mean[index],
        "major_px": 4.0 * np.sqrt(major[index]),
        "minor_px": 4.0 * np.sqrt(minor[index]),
        "orientation": 0.5 * np.arctan2(-2.0 * mu_rc[index], mu_cc[index] - mu_rr[index]),
        "eccentricity": eccentricity[index],
        "hematoxylin": mean_intensity[index],
    }


def label_contours(
    labels: np.ndarray,
    values: np.ndarray,
    *,
    level0_xy: tuple[int, int],
    level0_per_px: float,
) -> list[np.ndarray]:
    """Per label in ``values``: (K, 2) float64 level-0 (x, y) closed ring around its largest
    part (the longest marching-squares contour at level 0.5: points lie half-way between
    boundary pixel centres and the background, i.e. on the edges of the pixel squares;
    K >= 5 with the first point repeated). With ``level0_xy=(0, 0)`` and ``level0_per_px=1``
    the ring is in the label image's own continuous pixel coordinates."""
    x0, y0 = level0_xy
    slices = ndi.find_objects(labels)
    rings = []
    for value in values:
        rs, cs = slices[int(value) - 1]
        crop = np.pad(labels[rs, cs] == value, 1).astype(np.float32)
        traced = find_contours(crop, 0.5)
        ring = max(traced, key=len)
        points = np.empty((len(ring), 2), dtype=np.float64)
        points[:, 0] = index_to_level0(ring[:, 1] + (cs.start - 1), x0, level0_per_px)
        points[:, 1] = index_to_level0(ring[:, 0] + (rs.start - 1), y0, level0_per_px)
        rings.append(points)
    return rings


def _ring(points: np.ndarray, label: int) -> np.ndarray:
    ring = np.asarray(points, dtype=np.float64)
    if ring.ndim != 2 or ring.shape[1] != 2 or len(ring) < 3:
        raise DataError(f"contour of label {label} must be (K >= 3, 2) points; got {ring.shape}")
    if not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    return ring


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"labels must be a 2-D instance image; got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"labels must be integers; got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise DataError("labels must be non-negative (0 is background)")
    return labels.astype(np.int32, copy=False)


def _per_label(values_per_label: PerLabel, values: np.ndarray, what: str) -> np.ndarray:
    if isinstance(values_per_label, Mapping):
        missing = [int(v) for v in values if int(v) not in values_per_label]
        if missing:
            raise DataError(f"{what} has no entry for label(s) {missing[:10]}")
        return np.array([values_per_label[int(v)] for v in values])
    array = np.asarray(values_per_label)
    if array.ndim != 1 or len(array) <= int(values.max()):
        raise DataError(
            f"{what} must be indexed by label value (length > {int(values.max())}); "
            f"got shape {array.shape}"
        )
    return array[values.astype(np.intp)]
