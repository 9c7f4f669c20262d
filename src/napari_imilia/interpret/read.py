"""Reading a tile's level-0 box at a cell backend's analysis resolution."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from napari_imilia.errors import DataError
from napari_imilia.interpret.cells.base import RESAMPLE_TOLERANCE, CellBackend
from napari_imilia.slide import Slide
from napari_imilia.tiling.grid import level_array, read_level_region, round_half_up

#: µm/px tiles are analysed at when the backend has no fixed resolution (HistoPLUS JSON
#: of unknown MPP, classical with ``analysis_mpp=None``): IMILIA's tiling resolution.
DEFAULT_ANALYSIS_MPP = 0.5


@dataclass(frozen=True)
class TileBox:
    """A tile's level-0 box: top-left (x, y) and (width, height) in level-0 pixels."""

    tile_id: str
    x: int
    y: int
    width: int
    height: int
    score: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> TileBox:
        """From a tile-table row (pandas Series or mapping with tile_id, x, y, width, height;
        score optional)."""
        get = row.get if isinstance(row, Mapping) or hasattr(row, "get") else None
        if get is None:
            raise DataError(f"a tile row must be a mapping or a table row; got {type(row)}")
        missing = [k for k in ("x", "y", "width", "height") if get(k) is None]
        if missing:
            raise DataError(f"tile row lacks {', '.join(missing)} (level-0 px)")
        x, y, width, height = (int(get(k)) for k in ("x", "y", "width", "height"))
        if width <= 0 or height <= 0:
            raise DataError(f"tile {get('tile_id')} has size {width} x {height} px")
        score = get("score")
        score = None if score is None or not math.isfinite(float(score)) else float(score)
        tile_id = get("tile_id")
        return cls(str(tile_id) if tile_id is not None else f"{x}_{y}", x, y, width, height, score)


@dataclass(frozen=True)
class ReadPlan:
    """How ``read_tile_at_mpp`` reads a box: pyramid ``level`` (``downsample`` level-0 px
    per pixel), ``read_wh`` pixels read there, resized to ``out_wh`` (equal: no resize)."""

    level: int
    downsample: float
    read_wh: tuple[int, int]
    out_wh: tuple[int, int]

    def level0_per_px(self, box: TileBox) -> float:
        """Level-0 pixels per pixel of the image read for ``box``."""
        return box.width / self.out_wh[0]


def read_plan(slide: Slide, box: TileBox, analysis_mpp: float) -> ReadPlan:
    """The ``ReadPlan`` of ``box`` at about ``analysis_mpp`` µm/px (see ``read_tile_at_mpp``)."""
    slide_mpp = slide.require_mpp()
    if not (math.isfinite(analysis_mpp) and analysis_mpp > 0):
        raise DataError(f"analysis µm/px must be positive; got {analysis_mpp}")
    out_w = max(1, round_half_up(box.width * slide_mpp / analysis_mpp))
    out_h = max(1, round_half_up(box.height * slide_mpp / analysis_mpp))
    level = slide.best_level_for_downsample(analysis_mpp / slide_mpp)
    downsample = slide.level_info[level].downsample
    read_w = max(1, round_half_up(box.width / downsample))
    read_h = max(1, round_half_up(box.height / downsample))
    as_read = abs(read_w / out_w - 1) <= RESAMPLE_TOLERANCE
    as_read &= abs(read_h / out_h - 1) <= RESAMPLE_TOLERANCE
    out = (read_w, read_h) if as_read else (out_w, out_h)
    return ReadPlan(level, float(downsample), (read_w, read_h), out)


def read_tile_at_mpp(
    slide: Slide, box: TileBox, analysis_mpp: float
) -> tuple[np.ndarray, float, float]:
    """The level-0 box read at about ``analysis_mpp`` µm/px: ``(rgb, mpp, level0_per_px)``.

    Pixels come from the coarsest native level at least as fine as ``analysis_mpp``; when
    that level's pixels are within ``RESAMPLE_TOLERANCE`` of the target they are used as
    they are, else resized (PIL bilinear, antialiased). ``level0_per_px`` = box width /
    image width; areas outside the slide are white.
    """
    plan = read_plan(slide, box, analysis_mpp)
    region = read_level_region(
        level_array(slide, plan.level), plan.downsample, (box.x, box.y), plan.read_wh
    )
    if plan.out_wh == plan.read_wh:
        rgb = np.ascontiguousarray(region)
    else:
        image = Image.fromarray(region).resize(plan.out_wh, Image.Resampling.BILINEAR)
        rgb = np.asarray(image)
    level0_per_px = plan.level0_per_px(box)
    return rgb, slide.require_mpp() * level0_per_px, level0_per_px


def backend_analysis_mpp(backend: CellBackend, slide_mpp: float) -> float:
    """µm/px to read tiles at for ``backend``: its ``analysis_mpp`` when finite, else
    ``DEFAULT_ANALYSIS_MPP``; never finer than the slide (no upsampling beyond level 0)."""
    wanted = float(getattr(backend, "analysis_mpp", math.nan))
    if not (math.isfinite(wanted) and wanted > 0):
        wanted = DEFAULT_ANALYSIS_MPP
    return wanted if wanted >= slide_mpp * (1 - RESAMPLE_TOLERANCE) else slide_mpp
