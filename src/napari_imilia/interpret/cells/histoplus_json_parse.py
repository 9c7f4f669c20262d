"""Checks of a HistoPLUS cell JSON's structure, numbers and extent (an untrusted file).

Used by :func:`napari_imilia.interpret.cells.histoplus_json.read_histoplus_json`; every problem is a
``DataError`` naming the file and the place in it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import DataError
from napari_imilia.trust.json_limits import ImportLimits, read_json_entries

_NUMBER = (int, float)
TOP_KEYS = {"model_name": str, "inference_mpp": _NUMBER, "cell_masks": list}
TILE_KEYS = dict.fromkeys(("x", "y", "level", "width", "height"), _NUMBER) | {"masks": list}
CELL_KEYS = {"cell_id": _NUMBER, "cell_type": str, "confidence": (*_NUMBER, type(None))}
CELL_KEYS |= {"coordinates": list, "centroid": list}


def load_histoplus_data(path: Path, limits: ImportLimits) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"HistoPLUS JSON not found: {path}")
    entries = read_json_entries(path, limits)
    if len(entries) != 1:
        raise DataError(f"{path}: a zip of {len(entries)} JSON files; give one cell_masks.json")
    data = entries[0][1]
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON object with model_name, inference_mpp, "
            f"cell_masks; got {type(data).__name__}"
        )
    require_keys(path, data, "top level", TOP_KEYS)
    return data


def check_tile_geometry(path: Path, tile: dict[str, Any], where: str, bound: float) -> None:
    """Tile indices 0 or more, sizes 1 px or more, the tile's origin within ``bound``."""
    if not (tile["x"] >= 0 and tile["y"] >= 0 and tile["width"] >= 1 and tile["height"] >= 1):
        raise DataError(
            f"{path}: {where} has a negative index or an empty size (x {tile['x']}, "
            f"y {tile['y']}, width {tile['width']}, height {tile['height']})"
        )
    origin = max(tile["x"] * tile["width"], tile["y"] * tile["height"])
    if not origin <= bound:
        raise DataError(
            f"{path}: {where} starts at {origin:.6g} px, beyond the import limit of {bound:.6g} "
            "px (relative to the slide; see docs/security.md)"
        )


def require_keys(path: Path, item: Any, where: str, spec: dict[str, Any]) -> None:
    if not isinstance(item, dict):
        raise DataError(f"{path}: {where} must be a JSON object; got {type(item).__name__}")
    missing = [key for key in spec if key not in item]
    if missing:
        raise DataError(f"{path}: {where} lacks {', '.join(missing)}; not a HistoPLUS JSON?")
    for key, kinds in spec.items():
        value = item[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise DataError(f"{path}: {where}.{key} has the wrong type {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value) and key != "confidence":
            raise DataError(f"{path}: {where}.{key} is {value}")


def points_array(path: Path, value: list, where: str, minimum: int) -> np.ndarray:
    try:
        points = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.empty(0)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < minimum:
        raise DataError(f"{path}: {where} must be at least {minimum} [x, y] number pair(s)")
    if not np.isfinite(points).all():
        raise DataError(f"{path}: {where} has NaN or infinite coordinates")
    return points
