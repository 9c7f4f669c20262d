"""The "Review regions" Shapes layer: drawn regions and the review entries they belong to.

One layer per session (role ``review_regions``), made by the viewer link whatever docks are
open. Its vertices are world µm with the slide
layer's convention (:mod:`napari_imilia.export.layers`); ``layer.features['entry_id']``
ties each shape to its review entry ('' for a shape drawn but not reviewed yet). The review
store is the truth: :meth:`ReviewRegions.sync` redraws entries' regions (e.g. when a slide
is reopened) and colours shapes by verdict. Moving or editing a reviewed shape updates its
entry's region; deleting a reviewed shape in the layer does not delete the review (it is
drawn back with a warning; delete reviews from the Review panel's list).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia._napari.geojson_reader import edge_width_um
from napari_imilia._napari.layers.placement import add_layer_keeping_selection, set_if_changed
from napari_imilia._napari.notify import notify
from napari_imilia._napari.roles import LAYER_ROLE_KEY, REGIONS_ROLE, layers_with_role
from napari_imilia.errors import ImiliaError
from napari_imilia.export.geojson_objects import COORD_DECIMALS
from napari_imilia.export.layer_geojson import MPP_KEY
from napari_imilia.export.layers import (
    level0_to_world,
    region_vertices,
    shape_geometry,
    world_um_to_level0_xy,
)

REGIONS_LAYER_NAME = "Review regions"
#: Feature columns of the regions layer (all text).
REGION_COLUMNS: tuple[str, ...] = ("entry_id", "verdict", "reviewer_class", "note", "reviewer")
#: Outline colours (RGB 0-255) by verdict; '' is a region not reviewed yet.
VERDICT_COLORS: dict[str, tuple[int, int, int]] = {
    "agree": (40, 170, 80),
    "disagree": (220, 40, 40),
    "uncertain": (240, 150, 30),
    "": (255, 255, 255),
}
FACE_ALPHA = 0.12


def _rgba(verdict: str, alpha: float = 1.0) -> np.ndarray:
    rgb = VERDICT_COLORS.get(verdict, VERDICT_COLORS[""])
    return np.array([*(c / 255.0 for c in rgb), alpha])


class ReviewRegions:
    """Keeps one session's "Review regions" layer and its review entries in step."""

    def __init__(
        self, viewer: Any, session: Any, *, on_drawn: Callable[[int], None] | None = None
    ) -> None:
        """``on_drawn(index)`` is told of new shapes. Holds ``viewer`` weakly."""
        self._viewer = weakref.ref(viewer)
        self.session = session
        self._on_drawn = on_drawn
        self._syncing = False
        self._recording = False
        self._removing: list[str] = []
        self.mpp = float(session.slide.mpp or 1.0)
        self.layer = self._make_layer()
        self.sync()

    @property
    def viewer(self) -> Any:
        return self._viewer()

    @property
    def syncing(self) -> bool:
        """True while the layer is being matched to the store (its events are not edits)."""
        return self._syncing

    # ------------------------------------------------------------------ layer
    def _make_layer(self) -> Any:
        """The regions layer: a layer left by the previous slide's session is emptied and
        reused (removing it would cost napari a full garbage collection), else a new one."""
        from napari.layers import Shapes

        slide = self.session.slide
        metadata = {
            LAYER_ROLE_KEY: REGIONS_ROLE,
            MPP_KEY: self.mpp,
            "imilia_slide": slide.summary(),
        }
        units = ("µm", "µm") if slide.mpp else ("pixel", "pixel")
        old = layers_with_role(self.viewer, REGIONS_ROLE)
        for extra in old[1:]:
            self.viewer.layers.remove(extra)
        if old:
            layer = old[0]
            layer.selected_data = set(range(layer.nshapes))
            layer.remove_selected()
            layer.features = pd.DataFrame({c: pd.Series(dtype=object) for c in REGION_COLUMNS})
            layer.metadata = metadata
            set_if_changed(layer, "units", units)
            set_if_changed(layer, "current_edge_width", edge_width_um(self.mpp, slide.dimensions))
        else:
            layer = Shapes(
                [],
                name=REGIONS_LAYER_NAME,
                features=pd.DataFrame({c: pd.Series(dtype=object) for c in REGION_COLUMNS}),
                feature_defaults=dict.fromkeys(REGION_COLUMNS, ""),
                edge_width=edge_width_um(self.mpp, slide.dimensions),
                edge_color=_rgba(""),
                face_color=_rgba("", FACE_ALPHA),
                units=units,
                metadata=metadata,
            )
            add_layer_keeping_selection(self.viewer, layer)
        layer.events.data.connect(self._on_data)
        return layer

    def close(self, *, keep_layer: bool = False) -> None:
        """Disconnect and remove the layer (``keep_layer``: leave it for the next session's
        regions); the entries stay in the store."""
        self.layer.events.data.disconnect(self._on_data)
        viewer = self.viewer
        if not keep_layer and viewer is not None and self.layer in viewer.layers:
            viewer.layers.remove(self.layer)

    @property
    def alive(self) -> bool:
        viewer = self.viewer
        return viewer is not None and self.layer in viewer.layers

    # ------------------------------------------------------------------ shapes <-> entries
    def entry_ids(self) -> list[str]:
        """Entry id per shape ('' for a shape not reviewed yet)."""
        if "entry_id" not in self.layer.features:
            return [""] * self.layer.nshapes
        return ["" if not isinstance(v, str) else v for v in self.layer.features["entry_id"]]

    def index_of(self, entry_id: str) -> int | None:
        ids = self.entry_ids()
        return ids.index(entry_id) if entry_id in ids else None

    def selected_indices(self) -> list[int]:
        return sorted(int(i) for i in self.layer.selected_data)

    def pending_indices(self) -> list[int]:
        """Shapes drawn but not reviewed yet, oldest first."""
        return [i for i, eid in enumerate(self.entry_ids()) if not eid]

    def level0_region(self, index: int) -> list[tuple[float, float]]:
        """Level-0 (x, y) vertices of shape ``index`` (``DataError`` for lines)."""
        kind = self.layer.shape_type[index]
        vertices = np.asarray(self.layer.data[index], dtype=np.float64)
        rc = (
            vertices[:, -2:] * np.asarray(self.layer.scale)[-2:]
            + np.asarray(self.layer.translate)[-2:]
        )
        xy = np.round(world_um_to_level0_xy(rc, self.mpp), COORD_DECIMALS)  # float32 vertices
        geometry = shape_geometry(xy, kind, f"shape {index}")
        return region_vertices(geometry, f"shape {index} of {REGIONS_LAYER_NAME!r}")

    def record(self, index: int, **fields: Any) -> Any:
        """Save shape ``index`` as a review (a new entry, or its entry updated with
        ``fields`` and its current outline); returns the entry. A new entry names the
        tile under the region's centre. The layer is matched to the store once the shape is
        tied to its entry (not in between, which would draw the new entry twice)."""
        vertices = self.level0_region(index)
        entry_id = self.entry_ids()[index]
        self._recording = True
        try:
            if entry_id:
                entry = self.session.update_review(entry_id, region=vertices, **fields)
            else:
                centre = np.mean(np.asarray(vertices), axis=0)
                tile_id = self.session.tile_at(*centre)
                entry = self.session.add_review(region=vertices, tile_id=tile_id, **fields)
            self.set_entry(index, entry)
        finally:
            self._recording = False
        self.sync()
        return entry

    def set_entry(self, index: int, entry: Any) -> None:
        """Tie shape ``index`` to ``entry`` and colour it by its verdict."""
        features = self.layer.features
        for column in REGION_COLUMNS:
            features.loc[index, column] = str(getattr(entry, column) or "")
        self._colour()

    def _colour(self) -> None:
        """Outline and fill every shape with its verdict's colour (one update of the layer)."""
        verdicts = [v if isinstance(v, str) else "" for v in self.layer.features["verdict"]]
        edges = np.array([_rgba(v) for v in verdicts]).reshape(-1, 4)
        faces = np.array([_rgba(v, FACE_ALPHA) for v in verdicts]).reshape(-1, 4)
        with self.layer.block_update_properties():
            self.layer.edge_color = edges
            self.layer.face_color = faces

    def sync(self) -> None:
        """Match the layer to the store: drop shapes of removed entries, draw entries'
        regions that are missing, refresh text and colours of the others (not while a shape
        is being recorded: :meth:`record` syncs when done)."""
        if self._recording:
            return
        entries = {e.entry_id: e for e in self.session.review.entries() if e.region is not None}
        self._syncing = True
        try:
            ids = self.entry_ids()
            stale = [i for i, eid in enumerate(ids) if eid and eid not in entries]
            if stale:
                self.layer.selected_data = set(stale)
                self.layer.remove_selected()
            present = set(self.entry_ids())
            missing = [e for eid, e in entries.items() if eid not in present]
            ids = self.entry_ids()
            if missing:
                data = [level0_to_world(np.asarray(e.region), self.mpp) for e in missing]
                self.layer.add(data, shape_type=["polygon"] * len(data))
                ids += [e.entry_id for e in missing]
            features = self.layer.features
            for column in REGION_COLUMNS:
                features[column] = [
                    str(getattr(entries[eid], column) or "") if eid else "" for eid in ids
                ]
            self._colour()
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ user edits
    def _on_data(self, event: Any) -> None:
        if self._syncing:
            return
        action = str(getattr(event, "action", ""))
        indices = [int(i) for i in getattr(event, "data_indices", ()) if int(i) >= 0]
        if action.endswith("removing"):
            ids = self.entry_ids()
            self._removing = [ids[i] for i in indices if i < len(ids) and ids[i]]
        elif action.endswith("removed"):
            lost, self._removing = self._removing, []
            if lost:
                notify(
                    "warning",
                    f"{len(lost)} reviewed region(s) kept: delete reviews from the list in "
                    "the Review panel",
                )
                self.sync()
        elif action.endswith("added"):
            self._clear_new_shape()
            if self._on_drawn is not None and self.layer.nshapes:
                self._on_drawn(self.layer.nshapes - 1)
        elif action.endswith("changed"):
            self._update_moved(indices)

    def _clear_new_shape(self) -> None:
        """A new shape may inherit the feature values of the last selected one: reset it."""
        index = self.layer.nshapes - 1
        ids = self.entry_ids()
        if index >= 0 and ids[index] and ids.count(ids[index]) > 1:
            self._syncing = True
            try:
                for column in REGION_COLUMNS:
                    self.layer.features.loc[index, column] = ""
                self._colour()
            finally:
                self._syncing = False

    def _update_moved(self, indices: list[int]) -> None:
        ids = self.entry_ids()
        for i in indices:
            if i >= len(ids) or not ids[i]:
                continue
            try:
                self.session.update_review(ids[i], region=self.level0_region(i))
            except ImiliaError as error:
                notify("warning", f"region not saved: {error}")
                self._redraw(i)

    def _redraw(self, index: int) -> None:
        """Put shape ``index`` back to its entry's saved region."""
        entry = self.session.review.get(self.entry_ids()[index])
        self._syncing = True
        try:
            data = list(self.layer.data)
            data[index] = level0_to_world(np.asarray(entry.region), self.mpp)
            types = list(self.layer.shape_type)
            types[index] = "polygon"
            features = self.layer.features.copy()
            self.layer.data = data
            self.layer.shape_type = types
            self.layer.features = features
            self._colour()
        finally:
            self._syncing = False
