"""Epithelium regions as QuPath annotations: GeoJSON Features in level-0 pixels.

``imilia inspect`` (``epithelium.geojson``) and the review bundle (``cells.geojson``) both
write a tile's epithelium through :func:`epithelium_to_features`, so the two files agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shapely.geometry import MultiPolygon, Polygon

from napari_imilia.export.geojson_objects import polygons_to_features

#: QuPath class and colour (RGB 0-255) of epithelium regions.
EPITHELIUM_CLASS = "Epithelium"
EPITHELIUM_COLOR: tuple[int, int, int] = (0, 255, 127)


def epithelium_to_features(
    polygons: Sequence[Polygon | MultiPolygon], *, slide_id: str, tile_id: str, mpp: float
) -> list[dict[str, Any]]:
    """One annotation classed ``EPITHELIUM_CLASS`` per level-0 polygon of tile ``tile_id``,
    named ``Epithelium <tile_id>``, with its area in µm² (``mpp``: µm per level-0 px) and
    ``metadata.tile_id``; ids are stable per slide, tile and polygon."""
    um2_per_px2 = mpp * mpp
    properties = [
        {
            "name": f"{EPITHELIUM_CLASS} {tile_id}",
            "measurements": {"Area µm^2": float(p.area * um2_per_px2)},
            "metadata": {"tile_id": str(tile_id)},
        }
        for p in polygons
    ]
    return polygons_to_features(
        polygons,
        object_type="annotation",
        class_name=EPITHELIUM_CLASS,
        color=EPITHELIUM_COLOR,
        properties=properties,
        id_seed=f"{slide_id}:{tile_id}",
    )
