"""Import and export of HistoPLUS's cell JSON (owkin/histoplus ``SlideSegmentationData``).

Format: ``{"model_name": str, "inference_mpp": float, "cell_masks": [tile, ...]}``; each tile
``{"x", "y", "level", "width", "height", "masks": [cell, ...]}`` and each cell
``{"cell_id", "cell_type", "confidence", "coordinates": [[x, y], ...], "centroid": [x, y]}``.

Coordinate space, from HistoPLUS's source (``extract``, ``border_effects``, ``tiling``):

- ``level`` is an OpenSlide *DeepZoom* level of a ``DeepZoomGenerator(limit_bounds=False)``
  (origin = level-0 origin). DeepZoom levels halve (rounding up) from level 0 until 1 x 1
  pixel, so ``level_count = 1 + ceil(log2(max(width0, height0)))`` and DeepZoom ``level``
  is level 0 downsampled by ``2 ** (level_count - 1 - level)``. It is the level of the
  tissue tiling (``detect_tissue_on_wsi``: the one nearest 0.5 µm/px), not necessarily the
  level the model ran at (``inference_mpp``); cells found at 0.25 µm/px are rescaled to it.
- ``x``, ``y`` are tile *indices* (column, row) on that level's grid of ``width`` x
  ``height`` pixel tiles (224), so the tile's top-left is ``(x * width, y * height)``.
- ``coordinates`` (OpenCV contour points: indices of the boundary pixels) and ``centroid``
  (``cv2.moments`` of the mask: the mean pixel index) are in pixel-index units of that level
  (pixel ``u``'s centre is ``u``) relative to the tile's top-left; a cell belongs to the tile
  holding its centroid and its polygon may stick out of the tile.

``write_histoplus_json`` (in ``histoplus_json_write``) writes the same format.

Hence, in QuPath's continuous level-0 coordinates (pixel ``i`` spans [i, i + 1)), a point
(u, v) is ``(X, Y) = ((x * width + u + 0.5) * d, (y * height + v + 0.5) * d)``, with
``d = 2 ** (level_count - 1 - level)``; this needs the slide's level-0 dimensions.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from skimage.draw import polygon as fill_polygon

from napari_imilia.errors import DataError
from napari_imilia.interpret.cells.base import check_geometry, segment_each
from napari_imilia.interpret.cells.histoplus_json_parse import (
    CELL_KEYS,
    TILE_KEYS,
    check_tile_geometry,
    load_histoplus_data,
    points_array,
    require_keys,
)
from napari_imilia.interpret.cells.measure import PIXEL_CENTRE, build_tile_cells
from napari_imilia.interpret.cells.types import CELL_CLASSES, CellTile, TileCells
from napari_imilia.trust.json_limits import ImportLimits, ImportProgress

_ALIASES = {
    "plasma cell": "Plasmocytes",
    "tumor cell": "Cancer cell",
    "tumour cell": "Cancer cell",
    "epithelial cell": "Epithelial",
    "erythrocyte": "Red blood cell",
    "rbc": "Red blood cell",
    "mitosis": "Mitotic Figures",
    "endothelial": "Endothelial Cell",
    "muscle": "Muscle Cell",
    "stromal cell": "Minor Stromal Cell",
}


def _key(name: str) -> str:
    key = re.sub(r"[\s_\-]+", " ", name.strip().lower())
    return key[:-1] if key.endswith("s") else key


_CLASS_KEYS = {_key(name): name for name in CELL_CLASSES}
_CLASS_KEYS.update({_key(alias): name for alias, name in _ALIASES.items()})


def canonical_class_name(cell_type: str) -> str | None:
    """The ``CELL_CLASSES`` name for a HistoPLUS cell type, ignoring case, spaces, ``_``/``-``
    and a plural ``s`` ("Plasmocyte", "plasmocytes", "red_blood_cells"), plus a few aliases
    ("plasma cell", "tumor cell", "erythrocyte"); None when unknown."""
    return _CLASS_KEYS.get(_key(cell_type))


def deepzoom_level_count(level0_dimensions: tuple[int, int]) -> int:
    """Number of OpenSlide DeepZoom levels of a slide of level-0 (width, height) pixels."""
    width, height = (int(v) for v in level0_dimensions)
    if width < 1 or height < 1:
        raise DataError(f"slide dimensions must be positive; got {level0_dimensions}")
    count = 1
    while width > 1 or height > 1:
        width, height = max(1, math.ceil(width / 2)), max(1, math.ceil(height / 2))
        count += 1
    return count


def deepzoom_downsample(level: int, level0_dimensions: tuple[int, int]) -> float:
    """Level-0 pixels per pixel of DeepZoom ``level``."""
    count = deepzoom_level_count(level0_dimensions)
    if not 0 <= level < count:
        raise DataError(
            f"DeepZoom level {level} does not exist for a {level0_dimensions[0]} x "
            f"{level0_dimensions[1]} px slide (levels 0-{count - 1}); is it this slide's JSON?"
        )
    return float(2 ** (count - 1 - level))


@dataclass
class HistoPlusCells:
    """All cells of one HistoPLUS JSON in level-0 pixels; ``source_px`` is the level-0 size
    of a pixel of each cell's DeepZoom level; ``cell_ids`` are
    ``"histoplus:{level}:{x}:{y}:{cell_id}"`` (tile level, column, row and HistoPLUS id)."""

    path: Path
    model_name: str
    inference_mpp: float
    level0_dimensions: tuple[int, int]
    deepzoom_levels: tuple[int, ...]
    centroids_xy: np.ndarray
    polygons: list[np.ndarray]
    source_px: np.ndarray
    class_ids: np.ndarray
    confidences: np.ndarray
    cell_ids: list[str]

    def __len__(self) -> int:
        return len(self.cell_ids)

    def region_cells(
        self,
        level0_xy: tuple[int, int],
        shape_hw: tuple[int, int],
        *,
        mpp: float,
        level0_per_px: float,
        tile_rgb: np.ndarray | None = None,
    ) -> TileCells:
        """The cells whose centroid lies in a region, rasterised into a label image.

        The region starts at ``level0_xy`` (level-0 px) and is ``shape_hw`` pixels of
        ``level0_per_px`` level-0 px each (``mpp`` µm/px). Polygons are drawn in order,
        covering the pixel centres inside or within half a JSON pixel of the outline (OpenCV
        contours run through boundary pixel centres), clipped to the region; a cell left with
        no pixel gets the one under its centroid.
        A cell on a tile border therefore belongs to exactly one of two adjacent regions.
        """
        check_geometry(mpp, level0_per_px)
        height, width = (int(v) for v in shape_hw)
        x0, y0 = (float(v) for v in level0_xy)
        s = float(level0_per_px)
        cx, cy = self.centroids_xy[:, 0], self.centroids_xy[:, 1]
        inside = (cx >= x0) & (cx < x0 + width * s) & (cy >= y0) & (cy < y0 + height * s)
        chosen = np.flatnonzero(inside)
        labels = np.zeros((height, width), dtype=np.int32)
        origin = np.array([x0, y0])
        closed = [np.vstack([p, p[:1]]) for p in (self.polygons[i] for i in chosen)]
        lengths = [len(points) for points in closed]
        # region pixel-index units (pixel (r, c) centred at (c, r)), as skimage draws
        coords = np.zeros((0, 2))
        if closed:
            coords = (np.concatenate(closed) - origin) / s - PIXEL_CENTRE
        lines = shapely.linestrings(coords, indices=np.repeat(np.arange(len(closed)), lengths))
        # interior + boundary pixel centres: grow the outline by half a JSON pixel
        grown = shapely.buffer(lines, 0.51 * self.source_px[chosen] / s, quad_segs=1)
        for label, shape in enumerate(grown, start=1):
            if shape.is_empty:
                continue
            outline = shapely.get_coordinates(shapely.get_exterior_ring(shape))
            rr, cc = fill_polygon(outline[:, 1], outline[:, 0], (height, width))
            labels[rr, cc] = label
        present = np.zeros(len(chosen) + 1, dtype=bool)
        present[np.unique(labels)] = True
        for label in np.flatnonzero(~present[1:]) + 1:
            index = chosen[label - 1]
            row = min(math.floor((cy[index] - y0) / s), height - 1)
            col = min(math.floor((cx[index] - x0) / s), width - 1)
            labels[row, col] = label
        lut = np.concatenate([[0], self.class_ids[chosen]])
        return build_tile_cells(
            labels,
            lut,
            np.concatenate([[np.nan], self.confidences[chosen]]),
            tile_rgb,
            mpp=mpp,
            level0_xy=(round(x0), round(y0)),
            level0_per_px=s,
            backend=HistoPlusJsonBackend.name,
            cell_ids={k: self.cell_ids[i] for k, i in enumerate(chosen, start=1)},
        )


def read_histoplus_json(
    path: str | os.PathLike[str],
    *,
    level0_dimensions: tuple[int, int],
    unknown_as: str | None = None,
    limits: ImportLimits | None = None,
    progress: ImportProgress | None = None,
) -> HistoPlusCells:
    """Read a HistoPLUS cell JSON and convert it to level-0 pixels of a slide of
    ``level0_dimensions`` (width, height).

    The file is untrusted: it is read within ``limits`` (default ``ImportLimits.from_env()``:
    decompressed size, nesting, integer digits, number of cells, coordinates relative to the
    slide); confidences must be 0-1 or null. ``progress(done, total)`` follows the tiles read.

    Unknown cell types raise ``DataError`` listing them, unless ``unknown_as`` names the
    ``CELL_CLASSES`` class to use for them. ``confidence`` null reads as NaN. Malformed files
    (not JSON, missing keys, wrong types, cells outside the slide) raise ``DataError``.
    """
    path = Path(path)
    limits = limits or ImportLimits.from_env()
    data = load_histoplus_data(path, limits)
    tiles = data["cell_masks"]
    n_cells = sum(
        len(t["masks"]) for t in tiles if isinstance(t, dict) and isinstance(t.get("masks"), list)
    )
    limits.check_count(n_cells, "cells", str(path))
    bound = limits.coordinate_bound_px(level0_dimensions)
    fallback = None if unknown_as is None else canonical_class_name(unknown_as)
    if unknown_as is not None and fallback is None:
        raise DataError(f"unknown_as={unknown_as!r} is not one of {', '.join(CELL_CLASSES)}")
    cells = _CellLists()
    for t, tile in enumerate(tiles):
        where = f"cell_masks[{t}]"
        require_keys(path, tile, where, TILE_KEYS)
        check_tile_geometry(path, tile, where, bound)
        if progress is not None:
            progress(t, len(tiles))
        _read_tile(path, tile, where, level0_dimensions, bound, limits, cells)
    if progress is not None:
        progress(len(tiles), len(tiles))
    class_ids = _class_ids(path, cells.types, fallback)
    centroids_xy = np.array(cells.centroids, dtype=np.float64).reshape(-1, 2)
    _check_inside(path, centroids_xy, level0_dimensions)
    width, height = level0_dimensions
    return HistoPlusCells(
        path=path,
        model_name=data["model_name"],
        inference_mpp=float(data["inference_mpp"]),
        level0_dimensions=(int(width), int(height)),
        deepzoom_levels=tuple(sorted(cells.levels)),
        centroids_xy=centroids_xy,
        polygons=cells.polygons,
        source_px=np.array(cells.source_px, dtype=np.float64),
        class_ids=class_ids,
        confidences=np.array(cells.confidences, dtype=np.float64),
        cell_ids=cells.ids,
    )


@dataclass
class _CellLists:
    """The cells read so far, in level-0 pixels (see ``HistoPlusCells``)."""

    centroids: list[np.ndarray] = field(default_factory=list)
    polygons: list[np.ndarray] = field(default_factory=list)
    source_px: list[float] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    levels: set[int] = field(default_factory=set)


def _read_tile(
    path: Path,
    tile: dict[str, Any],
    where: str,
    level0_dimensions: tuple[int, int],
    bound: float,
    limits: ImportLimits,
    cells: _CellLists,
) -> None:
    """Append the cells of one checked ``cell_masks`` tile to ``cells``, in level-0 px."""
    level = int(tile["level"])
    cells.levels.add(level)
    try:
        d = deepzoom_downsample(level, level0_dimensions)
    except DataError as error:
        raise DataError(f"{path}: {where}: {error}") from None
    ox, oy = float(tile["x"]) * float(tile["width"]), float(tile["y"]) * float(tile["height"])
    offset = np.array([ox, oy]) + PIXEL_CENTRE  # pixel index -> continuous
    for m, cell in enumerate(tile["masks"]):
        cell_where = f"{where}.masks[{m}]"
        require_keys(path, cell, cell_where, CELL_KEYS)
        points = points_array(path, cell["coordinates"], f"{cell_where}.coordinates", 3)
        centroid = points_array(path, [cell["centroid"]], f"{cell_where}.centroid", 1)[0]
        polygon = (points + offset) * d
        limits.check_coordinates(polygon, bound, f"{path}: {cell_where}.coordinates")
        cells.polygons.append(polygon)
        cells.source_px.append(d)
        cells.centroids.append((centroid + offset) * d)
        cells.types.append(cell["cell_type"])
        confidence = cell["confidence"]
        if confidence is not None and not (0.0 <= confidence <= 1.0 or math.isnan(confidence)):
            raise DataError(f"{path}: {cell_where}.confidence is {confidence}, not 0-1")
        cells.confidences.append(np.nan if confidence is None else float(confidence))
        cells.ids.append(
            f"histoplus:{level}:{int(tile['x'])}:{int(tile['y'])}:{int(cell['cell_id'])}"
        )


def _check_inside(path: Path, centroids_xy: np.ndarray, level0_dimensions: tuple[int, int]) -> None:
    """``DataError`` when a centroid lies more than 1 px outside the slide."""
    width, height = level0_dimensions
    outside = (
        (centroids_xy < -1).any(axis=1)
        | (centroids_xy[:, 0] > width + 1)
        | (centroids_xy[:, 1] > height + 1)
    )
    if outside.any():
        raise DataError(
            f"{path}: {int(outside.sum())} cell centroid(s) fall outside the {width} x {height} "
            f"px slide (first at level-0 {centroids_xy[outside][0].round(1).tolist()}); "
            "is this the JSON of this slide?"
        )


def _class_ids(path: Path, types: list[str], fallback: str | None) -> np.ndarray:
    names = {name: canonical_class_name(name) for name in set(types)}
    unknown = sorted(name for name, canonical in names.items() if canonical is None)
    if unknown and fallback is None:
        raise DataError(
            f"{path}: unknown cell type(s) {unknown}; known: {', '.join(CELL_CLASSES[1:])} "
            "(pass unknown_as='Minor Stromal Cell' or another class to map them)"
        )
    index = {name: CELL_CLASSES.index(canonical or fallback) for name, canonical in names.items()}
    return np.array([index[name] for name in types], dtype=np.int64)


class HistoPlusJsonBackend:
    """Cells from a HistoPLUS JSON, served per tile like a segmentation backend.

    The slide is given as ``slide`` (a path or an open ``napari_imilia.slide.Slide``) or by
    ``level0_dimensions`` (and optionally ``level0_mpp``). ``segment`` ignores the image
    except for the hematoxylin measurement and rasterises at the tile's own resolution;
    ``analysis_mpp`` is the µm/px of the JSON's DeepZoom level (NaN if the MPP is unknown).
    """

    name = "histoplus-json"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        slide: Any = None,
        level0_dimensions: tuple[int, int] | None = None,
        level0_mpp: float | None = None,
        unknown_as: str | None = None,
    ) -> None:
        if slide is not None:
            from napari_imilia.slide import Slide, open_slide

            opened = slide if isinstance(slide, Slide) else open_slide(slide)
            level0_dimensions = opened.dimensions
            level0_mpp = opened.mpp if level0_mpp is None else level0_mpp
        if level0_dimensions is None:
            raise DataError("histoplus-json needs the slide (slide=PATH) or level0_dimensions")
        self.cells = read_histoplus_json(
            path, level0_dimensions=level0_dimensions, unknown_as=unknown_as
        )
        levels = self.cells.deepzoom_levels
        self.analysis_mpp = (
            float(level0_mpp) * deepzoom_downsample(levels[-1], level0_dimensions)
            if level0_mpp and levels
            else float("nan")
        )

    def segment(
        self,
        tile_rgb: np.ndarray,
        *,
        mpp: float,
        level0_xy: tuple[int, int],
        level0_per_px: float,
        tissue_mask: np.ndarray | None = None,
    ) -> TileCells:
        """The imported cells whose centroid lies in the tile's level-0 region."""
        rgb = np.asarray(tile_rgb)
        if rgb.ndim != 3:
            raise DataError(f"tile must be an (H, W, 3) RGB image; got shape {rgb.shape}")
        return self.cells.region_cells(
            level0_xy, rgb.shape[:2], mpp=mpp, level0_per_px=level0_per_px, tile_rgb=rgb
        )

    def segment_many(self, tiles: Sequence[CellTile]) -> list[TileCells]:
        return segment_each(self, tiles)
