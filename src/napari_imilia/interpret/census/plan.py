"""What a census is made with, and which tiles it covers.

:class:`CensusSettings` is every choice that decides a census (the cell backend and
epithelium method with their files, the tile grid, the level-0 µm/px override); it is
recorded in ``census.json`` and a finished census is reused only when the settings match and
the slide file is unchanged (:func:`reusable_census`), as ``predict.results.reusable_result``
does for predictions.

The tiles: the square grid ``tiling.grid.make_tile_grid`` lays over the slide's tissue
(``tiling.tissue.detect_tissue``), ``tile_px`` px at ``target_mpp`` µm/px from the level-0
origin, every tile with at least ``min_tissue_fraction`` tissue. With the defaults (224 px
at 0.5 µm/px, as ``imilia predict``'s demo model) the tile ids (``x_y``) are those of the
slide's prediction, so a census tile opens in the Tile inspector. Each tile belongs to the
tissue piece (connected part of the tissue mask) covering most of it: the census's regions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.tools import InspectConfig

#: Bump when the census files or their meaning change: older censuses are made again.
CENSUS_VERSION = 1
DEFAULT_TARGET_MPP = 0.5
DEFAULT_TILE_PX = 224
#: A census covers tiles with at least this much tissue (the inspection's own floor).
DEFAULT_MIN_TISSUE = 0.05


@dataclass(frozen=True)
class CensusSettings:
    """What decides a census: ``inspect`` (backends and files), the grid (``tile_px`` px at
    ``target_mpp`` µm/px, tiles with at least ``min_tissue_fraction`` tissue) and ``mpp``
    (level-0 µm/px override, None: the slide's)."""

    inspect: InspectConfig = field(default_factory=InspectConfig)
    target_mpp: float = DEFAULT_TARGET_MPP
    tile_px: int = DEFAULT_TILE_PX
    min_tissue_fraction: float = DEFAULT_MIN_TISSUE
    mpp: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_mpp) and self.target_mpp > 0):
            raise ImiliaError(f"--target-mpp must be a positive µm/px; got {self.target_mpp}")
        if int(self.tile_px) < 16:
            raise ImiliaError(f"--tile-px must be at least 16; got {self.tile_px}")
        if not 0.0 < self.min_tissue_fraction <= 1.0:
            raise ImiliaError(f"--min-tissue must be in (0, 1]; got {self.min_tissue_fraction}")

    def record(self) -> dict[str, Any]:
        """JSON-ready settings (what ``census.json`` stores and reuse compares)."""
        record = {k: v for k, v in asdict(self).items() if k != "inspect"}
        record["inspect"] = self.inspect.describe()
        record["census_version"] = CENSUS_VERSION
        return record


def slide_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Name, size and modification time of the slide file (a changed file is a new slide)."""
    stat = Path(path).stat()
    return {"slide": str(Path(path).resolve()), "bytes": stat.st_size, "mtime": stat.st_mtime}


def plan_key(settings: CensusSettings, identity: dict[str, Any], tile_ids: list[str]) -> str:
    """SHA-256 naming one census plan: settings, slide and tiles (parts of another plan are
    never mixed in)."""
    text = json.dumps([settings.record(), identity, tile_ids], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def reusable_census(folder: Path, settings: CensusSettings, identity: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished census made with ``settings`` of this slide."""
    from napari_imilia.interpret.census.finish import CENSUS_FILES

    try:
        if not all((folder / name).is_file() for name in CENSUS_FILES):
            return False
        info = json.loads((folder / "census.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("settings") == settings.record() and info.get("slide_identity") == identity


def census_tiles(slide: Any, settings: CensusSettings) -> pd.DataFrame:
    """The census's tiles: ``tile_id, x, y, width, height, tissue_fraction, region``
    (level-0 px; ``region``: "piece k", the tissue piece holding most of the tile)."""
    from napari_imilia.tiling.grid import make_tile_grid, require_tiles
    from napari_imilia.tiling.tissue import detect_tissue

    tissue = detect_tissue(slide)
    grid_settings = {
        "target_mpp": settings.target_mpp,
        "tile_px": settings.tile_px,
        "min_tissue_fraction": settings.min_tissue_fraction,
    }
    grid = require_tiles(make_tile_grid(slide, tissue, **grid_settings), slide, **grid_settings)
    tiles = grid.to_frame()
    tiles["region"] = _tile_pieces(tissue, tiles)
    return tiles


def _tile_pieces(tissue: Any, tiles: pd.DataFrame) -> list[str]:
    """Per tile, "piece k" (k from 1, pieces numbered left to right by their first pixel)."""
    from scipy import ndimage

    labels, n = ndimage.label(tissue.mask)
    if n:  # renumber by leftmost column, so "piece 1" is the leftmost piece
        first_col = ndimage.minimum(np.indices(labels.shape)[1], labels, range(1, n + 1))
        order = np.argsort(np.asarray(first_col), kind="stable")
        lut = np.zeros(n + 1, dtype=np.int32)
        lut[order + 1] = np.arange(1, n + 1)
        labels = lut[labels]
    scale = float(tissue.level0_per_px)
    names = []
    for x, y, w, h in tiles[["x", "y", "width", "height"]].itertuples(index=False):
        c0, r0 = int(x // scale), int(y // scale)
        c1, r1 = max(c0 + 1, math.ceil((x + w) / scale)), max(r0 + 1, math.ceil((y + h) / scale))
        window = labels[max(r0, 0) : r1, max(c0, 0) : c1]
        found = np.bincount(window.ravel(), minlength=n + 1)[1:] if window.size else []
        best = int(np.argmax(found)) + 1 if len(found) and np.max(found) > 0 else 0
        names.append(f"piece {best}" if best else "off tissue")
    return names
