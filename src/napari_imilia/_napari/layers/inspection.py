"""napari Labels layers of one tile inspection, aligned on the slide layer.

The viewer link shows the inspection its state's ``inspections`` shows, whatever docks are
open. Two layers at most exist per viewer, tagged by role and reused tile after tile (only
the current tile's arrays are held by layers):

- ``inspection_cells``: the instance labels (one value per cell), each cell coloured by its
  class (``CELL_CLASS_COLORS``, a ``DirectLabelColormap``); ``layer.features`` is the cell
  table with an ``index`` column = label value, so napari shows a cell's class, area and
  centroid under the cursor;
- ``inspection_epithelium``: the epithelium mask (value 1), translucent.

Placement follows ``TileInspection.world_placement``: scale = level0_per_px x µm per level-0
px, translate so that every label pixel's centre sits on the level-0 pixels it covers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_imilia._napari.layers.placement import (
    add_layer_keeping_selection,
    slide_layer,
    world_um_per_px,
)
from napari_imilia._napari.roles import (
    CELLS_ROLE,
    EPITHELIUM_ROLE,
    INSPECTION_ROLES,
    LAYER_ROLE_KEY,
    layers_with_role,
    remove_role_layers,
)

if TYPE_CHECKING:
    from napari_imilia.interpret import TileInspection

CELLS_OPACITY = 0.7
EPITHELIUM_OPACITY = 0.35
_TRANSPARENT = np.zeros(4, dtype=np.float32)


def rgba(rgb: tuple[int, int, int], alpha: float = 1.0) -> np.ndarray:
    """0-255 RGB as a float RGBA array in [0, 1]."""
    return np.array([*(v / 255.0 for v in rgb), alpha], dtype=np.float32)


def cell_colormap(table: pd.DataFrame) -> Any:
    """``DirectLabelColormap``: each cell's label value -> its class colour; 0 transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS

    colors: dict[int | None, np.ndarray] = {None: _TRANSPARENT, 0: _TRANSPARENT}
    for label, name in zip(table["label"].tolist(), table["class_name"].tolist(), strict=True):
        colors[int(label)] = rgba(CELL_CLASS_COLORS.get(str(name), (128, 128, 128)))
    return DirectLabelColormap(color_dict=colors)


def epithelium_colormap() -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    from napari_imilia.interpret import EPITHELIUM_COLOR

    return DirectLabelColormap(
        color_dict={None: _TRANSPARENT, 0: _TRANSPARENT, 1: rgba(EPITHELIUM_COLOR)}
    )


def cell_features(table: pd.DataFrame) -> pd.DataFrame:
    """The cell table as ``layer.features``: an ``index`` column holds each label value."""
    features = table.reset_index(drop=True).copy()
    features.insert(0, "index", features["label"].astype(np.int64))
    return features


def placement(viewer: Any, session: Any, inspection: TileInspection) -> dict[str, Any]:
    """``scale``, ``translate`` (µm, row/col) and the slide layer's ``units``."""
    scale, translate = inspection.world_placement(world_um_per_px(viewer, session))
    kwargs: dict[str, Any] = {"scale": scale, "translate": translate}
    layer = slide_layer(viewer, session)
    if layer is not None:
        kwargs["units"] = tuple(str(unit) for unit in layer.units)
    return kwargs


def _update_or_add(viewer: Any, role: str, data: np.ndarray, **kwargs: Any) -> Any:
    from napari.layers import Labels

    metadata = kwargs.pop("metadata")
    existing = layers_with_role(viewer, role)
    for extra in existing[1:]:
        viewer.layers.remove(extra)
    if existing:  # each setter redraws: set only what changed (scale rarely does)
        layer = existing[0]
        if not np.allclose(layer.scale[-2:], kwargs["scale"]):
            layer.scale = kwargs["scale"]
        layer.translate = kwargs["translate"]
        layer.data = data
        if role == CELLS_ROLE:  # the epithelium's colours never change
            layer.colormap = kwargs["colormap"]
        if "features" in kwargs:
            layer.features = kwargs["features"]
        layer.name = kwargs["name"]
        layer.metadata = {**layer.metadata, **metadata}
        return layer
    layer = Labels(data, metadata={LAYER_ROLE_KEY: role, **metadata}, **kwargs)
    return add_layer_keeping_selection(viewer, layer)


def show_inspection(viewer: Any, session: Any, inspection: TileInspection) -> tuple[Any, Any]:
    """Show (or replace) the cells and epithelium layers of ``inspection``."""
    where = placement(viewer, session, inspection)
    table = inspection.cells.table
    metadata = {"tile_id": inspection.tile_id}
    epithelium = _update_or_add(
        viewer,
        EPITHELIUM_ROLE,
        inspection.epithelium_mask.astype(np.uint8),
        name=f"epithelium {inspection.tile_id}",
        colormap=epithelium_colormap(),
        opacity=EPITHELIUM_OPACITY,
        metadata=metadata,
        **where,
    )
    cells = _update_or_add(
        viewer,
        CELLS_ROLE,
        inspection.cells.labels,
        name=f"cells {inspection.tile_id}",
        colormap=cell_colormap(table),
        features=cell_features(table),
        opacity=CELLS_OPACITY,
        metadata=metadata,
        **where,
    )
    return cells, epithelium


def remove_inspection_layers(viewer: Any) -> None:
    """Remove the cells and epithelium layers (no inspection shown)."""
    for role in INSPECTION_ROLES:
        remove_role_layers(viewer, role)
