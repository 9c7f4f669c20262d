"""Reviewed tiles outlined on the canvas in their verdict's colour.

One Shapes layer per viewer (role ``reviewed_tiles``, named "Reviewed tiles") holds one
rectangle per tile with a tile verdict (``review.progress.tile_verdicts``), edged in the
verdict's colour (``VERDICT_COLORS``, as the drawn regions); its ``features`` table holds
``tile_id`` and ``verdict``. The viewer link rebuilds it from the session's review store
when the session, its prediction or its review changes, whatever docks are open; it is
removed when no tile is reviewed. Rectangles are in level-0 pixels on the slide layer's
scale (µm per px).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from napari_imilia._napari.layers.placement import (
    add_layer_keeping_selection,
    set_if_changed,
    tile_outline_px,
    world_layer_kwargs,
)
from napari_imilia._napari.layers.regions import VERDICT_COLORS
from napari_imilia._napari.roles import (
    LAYER_ROLE_KEY,
    VERDICTS_ROLE,
    layers_with_role,
    remove_role_layers,
)
from napari_imilia.errors import ImiliaError
from napari_imilia.review.progress import tile_verdicts

VERDICTS_LAYER_NAME = "Reviewed tiles"
#: Outline width as a share of the tile width (the selected-tile outline uses 0.03).
EDGE_WIDTH_SHARE = 0.05


def verdict_rgba(verdict: str) -> np.ndarray:
    """RGBA (0-1) of a verdict's outline."""
    return np.array([*(c / 255.0 for c in VERDICT_COLORS[verdict]), 1.0])


def session_tile_verdicts(session: Any) -> dict[str, str]:
    """Tile id -> verdict of the session's scored tiles ({} without a prediction or when the
    review store cannot be read: the Review dock reports that error)."""
    if session is None or session.prediction is None:
        return {}
    try:
        entries = session.review.entries()
    except ImiliaError:
        return {}
    known = set(session.tiles["tile_id"].astype(str))
    return {t: v for t, v in tile_verdicts(entries).items() if t in known}


def sync_verdict_layer(viewer: Any, session: Any, *, keep_empty: bool = False) -> Any | None:
    """Make the "Reviewed tiles" layer show ``session``'s tile verdicts; returns the layer
    (None, and the layer removed, when no tile is reviewed; with ``keep_empty`` an existing
    layer is emptied and kept instead: stepping to the next slide removes no layer, which
    would cost napari a full garbage collection)."""
    verdicts = session_tile_verdicts(session)
    if not verdicts:
        layers = layers_with_role(viewer, VERDICTS_ROLE)
        if keep_empty and layers:
            layers[0].selected_data = set(range(layers[0].nshapes))
            layers[0].remove_selected()
            return layers[0]
        remove_role_layers(viewer, VERDICTS_ROLE)
        return None
    tiles = session.tiles.set_index(session.tiles["tile_id"].astype(str))
    ids = sorted(verdicts)
    rects = [tile_outline_px(tiles.loc[t]) for t in ids]
    colours = np.array([verdict_rgba(verdicts[t]) for t in ids])
    width = max(float(tiles.loc[ids[0], "width"]) * EDGE_WIDTH_SHARE, 1.0)
    features = pd.DataFrame({"tile_id": ids, "verdict": [verdicts[t] for t in ids]})
    placement = world_layer_kwargs(viewer, session)
    layers = layers_with_role(viewer, VERDICTS_ROLE)
    if layers:
        layer = layers[0]
        set_if_changed(layer, "scale", placement["scale"])
        layer.selected_data = set(range(layer.nshapes))
        layer.remove_selected()
        layer.add_rectangles(rects, edge_width=width, edge_color=colours, face_color="transparent")
        layer.features = features
        return layer
    from napari.layers import Shapes

    layer = Shapes(
        rects,
        shape_type="rectangle",
        name=VERDICTS_LAYER_NAME,
        edge_color=colours,
        face_color="transparent",
        edge_width=width,
        features=features,
        metadata={LAYER_ROLE_KEY: VERDICTS_ROLE},
        **placement,
    )
    return add_layer_keeping_selection(viewer, layer)
