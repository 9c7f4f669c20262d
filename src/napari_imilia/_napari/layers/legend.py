"""Legend of cell classes on the canvas while an inspection's cell masks are shown.

One :class:`CellClassLegend` per viewer (the viewer link's) watches the cells layer of the
shown inspection (role ``inspection_cells``). While that layer is in the viewer and visible,
the canvas shows, in a top corner (top left unless the colour bar is moved there: the
viewer link says which, :meth:`CellClassLegend.set_position`; napari's toasts come up
bottom right, the scale bar sits bottom left), one line per class present in the tile: a
swatch and the class name with its cell count, written in the class's colour
(``CELL_CLASS_COLORS``, the colours of the masks) on a box light or dark enough for that
colour to read; plus the epithelium's colour when its layer is shown. Each line is a napari
text overlay in ``viewer.canvas.overlays`` (keys ``imilia_legend_<i>``), stacked by napari's
overlay tiling (vertical; napari stacks bottom overlays upwards, so there overlay 0 holds
the last line).
"""

from __future__ import annotations

import weakref
from typing import Any

import pandas as pd

from napari_imilia._napari.roles import (
    CELLS_ROLE,
    CENSUS_CELLS_ROLE,
    EPITHELIUM_ROLE,
    LAYER_ROLE_KEY,
    layers_with_role,
)

LEGEND_PREFIX = "imilia_legend_"
SWATCH = "■"
#: Default corner of the legend.
POSITION = "top_left"
FONT_SIZE = 8
_LIGHT_BOX = (0.92, 0.92, 0.92, 0.9)
_DARK_BOX = (0.12, 0.12, 0.12, 0.9)


def legend_entries(cells: pd.DataFrame) -> list[tuple[str, tuple[int, int, int]]]:
    """``(text, rgb)`` per class present in a cell table, in ``CELL_CLASS_COLORS`` order:
    ``"■ Lymphocytes (12)"``. (``cells`` is imported here: it loads torch, which only an
    inspection needs.)"""
    from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS

    counts = cells["class_name"].value_counts() if len(cells) else pd.Series()
    return [
        (f"{SWATCH} {name} ({int(counts[name])})", rgb)
        for name, rgb in CELL_CLASS_COLORS.items()
        if name in counts.index and counts[name] > 0
    ]


def box_colour(rgb: tuple[int, int, int]) -> tuple[float, float, float, float]:
    """A dark box behind light colours, a light one behind dark colours (WCAG luminance)."""
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return _DARK_BOX if luminance >= 110 else _LIGHT_BOX


class CellClassLegend:
    """Keeps the canvas legend in step with the cells layer (see the module docstring)."""

    def __init__(self, viewer: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self.position = POSITION
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        self._on_layers_changed()

    def entries(self) -> list[tuple[str, tuple[int, int, int]]]:
        """What the legend shows now (empty when no cell mask is visible)."""
        viewer = self._viewer()
        if viewer is None:
            return []
        cells = [
            layer
            for role in (CELLS_ROLE, CENSUS_CELLS_ROLE)  # the inspected tile's, else the census's
            for layer in layers_with_role(viewer, role)
            if layer.visible and len(layer.features)
        ]
        if not cells:
            return []
        shown = legend_entries(cells[0].features)
        epithelium = [lay for lay in layers_with_role(viewer, EPITHELIUM_ROLE) if lay.visible]
        if epithelium:
            from napari_imilia.interpret import EPITHELIUM_COLOR

            shown.append((f"{SWATCH} epithelium (mask)", tuple(EPITHELIUM_COLOR)))
        return shown

    def overlays(self) -> list[Any]:
        """The visible legend overlays, top to bottom on the canvas."""
        viewer = self._viewer()
        if viewer is None:
            return []
        keys = sorted(
            (k for k in viewer.canvas.overlays if k.startswith(LEGEND_PREFIX)),
            key=lambda k: int(k[len(LEGEND_PREFIX) :]),
        )
        shown = [viewer.canvas.overlays[k] for k in keys if viewer.canvas.overlays[k].visible]
        return shown[::-1] if self.position.startswith("bottom") else shown

    def set_position(self, position: str) -> None:
        """Move the legend to a canvas corner (napari's ``CanvasPosition`` names)."""
        if position == self.position:
            return
        self.position = position
        viewer = self._viewer()
        if viewer is None:
            return
        for key, overlay in viewer.canvas.overlays.items():
            if key.startswith(LEGEND_PREFIX):
                overlay.visible = False  # drawn again in the new corner, in its order
        self.refresh()

    def _on_layers_changed(self, *_: Any) -> None:
        viewer = self._viewer()
        if viewer is None:
            return
        for layer in viewer.layers:
            role = layer.metadata.get(LAYER_ROLE_KEY)
            if (
                role in (CELLS_ROLE, EPITHELIUM_ROLE, CENSUS_CELLS_ROLE)
                and layer not in self._watched
            ):
                self._watched.add(layer)
                layer.events.visible.connect(self.refresh)
                layer.events.features.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Show one overlay per entry, hide the rest."""
        from napari.components.overlays import TextOverlay

        viewer = self._viewer()
        if viewer is None:
            return
        entries = self.entries()
        if self.position.startswith("bottom"):
            entries = entries[::-1]  # napari stacks bottom overlays upwards
        overlays = viewer.canvas.overlays
        if entries:
            setattr(viewer.canvas.overlay_tiling, self.position, "vertical")
        for i, (text, rgb) in enumerate(entries):
            key = f"{LEGEND_PREFIX}{i}"
            colour = (rgb[0] / 255, rgb[1] / 255, rgb[2] / 255, 1.0)
            if key not in overlays:
                overlays[key] = TextOverlay(position=self.position, font_size=FONT_SIZE, box=True)
            overlay = overlays[key]
            overlay.text, overlay.color, overlay.box_color = text, colour, box_colour(rgb)
            overlay.position = self.position
            overlay.visible = True
        i = len(entries)
        while f"{LEGEND_PREFIX}{i}" in overlays:
            overlays[f"{LEGEND_PREFIX}{i}"].visible = False
            i += 1
