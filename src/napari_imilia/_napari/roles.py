"""The roles of the layers napari-imilia adds, and finding a viewer's layers by role.

Each layer napari-imilia makes for a session carries ``metadata[LAYER_ROLE_KEY] = <role>``,
so the viewer link, the docks and the cohort (which clears a slide's layers) find them
whatever the user renamed. Every role is defined here, once; the module imports nothing.
"""

from __future__ import annotations

from typing import Any

#: Metadata key marking layers that napari-imilia added for a session (heatmap, masks...).
LAYER_ROLE_KEY = "imilia_role"

HEATMAP_ROLE = "heatmap"
TILE_TABLE_ROLE = "tile_table"
SELECTION_ROLE = "selected_tile"
VERDICTS_ROLE = "reviewed_tiles"
REGIONS_ROLE = "review_regions"
CELLS_ROLE = "inspection_cells"
EPITHELIUM_ROLE = "inspection_epithelium"
INSPECTION_ROLES: tuple[str, ...] = (CELLS_ROLE, EPITHELIUM_ROLE)
#: The whole-slide census: its density map and the cells in view (``layers.density``).
CENSUS_DENSITY_ROLE = "census_density"
CENSUS_CELLS_ROLE = "census_cells"
#: Imported QuPath annotations (``geojson_reader``).
IMPORT_ROLE = "geojson_import"


def layers_with_role(viewer: Any, role: str) -> list[Any]:
    """Layers of ``viewer`` tagged ``metadata[LAYER_ROLE_KEY] == role``."""
    return [layer for layer in viewer.layers if layer.metadata.get(LAYER_ROLE_KEY) == role]


def remove_role_layers(viewer: Any, role: str) -> None:
    """Remove every layer of ``viewer`` tagged with ``role``."""
    for layer in layers_with_role(viewer, role):
        viewer.layers.remove(layer)
