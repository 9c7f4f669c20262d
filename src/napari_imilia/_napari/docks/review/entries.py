"""The Review dock's list of the slide's reviews and its progress line: every entry, one line
each; selecting one edits it and jumps to its tile or region; *Delete selected review*; "k of
K top tiles reviewed" over the viewer state's top tiles.

Mixed into :class:`~napari_imilia._napari.docks.review.panel.ReviewPanel`, which provides
``state``, ``session``, ``regions``, ``viewer``, the list and labels, ``entry_ids``,
``target_kind`` and ``_show_entry``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.layers.placement import centre_on_tile
from napari_imilia._napari.layers.verdicts import session_tile_verdicts
from napari_imilia._napari.notify import notify
from napari_imilia.errors import ImiliaError
from napari_imilia.export.layers import level0_to_world
from napari_imilia.review.progress import reviewed_count


class ReviewListMixin:
    """The list half of the Review dock (see the module docstring)."""

    state: Any
    viewer: Any
    entry_ids: list[str]
    entry_list: Any
    count_label: Any
    progress_label: Any
    target_kind: str
    session: Any
    regions: Any
    _show_entry: Any

    # ------------------------------------------------------------------ list
    def refresh_list(self) -> None:
        """Show every entry of the slide, keeping the current one selected."""
        entries = [] if self.session is None else self.session.review.entries()
        self.entry_list.show_entries(entries, self.entry_ids[0] if self.entry_ids else None)
        self.count_label.setText(f"{len(entries)} review(s) of this slide, saved")
        self.show_progress()

    def top_tile_ids(self) -> list[str]:
        """The top tiles whose review is counted: the state's (``ViewerState.top_tiles``)."""
        return self.state.top_tile_ids()

    def show_progress(self, *_: Any) -> None:
        """ "k of K top tiles reviewed" (K: ``top_tile_ids``)."""
        ids = self.top_tile_ids()
        if not ids:
            self.progress_label.setText("")
            return
        verdicts = session_tile_verdicts(self.session)
        done = reviewed_count(ids, verdicts)
        self.progress_label.setText(f"<b>{done} of {len(ids)} top tiles reviewed</b>")

    def listed_entry_ids(self) -> list[str]:
        return self.entry_list.entry_ids()

    def _on_list_item(self, entry_id: str) -> None:
        if self.session is not None:
            self.select_entry(entry_id)

    def select_entry(self, entry_id: str) -> None:
        """Edit ``entry_id`` and jump to its tile or region."""
        session = self.session
        try:
            entry = session.review.get(entry_id)
        except ImiliaError as error:
            notify("error", str(error))
            return
        if entry.target_kind == "region" and self.regions is not None:
            index = self.regions.index_of(entry_id)
            if index is not None:
                self.regions.layer.selected_data = {index}
            centre = np.mean(np.asarray(entry.region), axis=0)
            viewer_camera(self.viewer).center = tuple(level0_to_world(centre, self.regions.mpp)[0])
            self.target_kind = "region"
            self._show_entry(entry)
            return
        if entry.tile_id is not None and session.prediction is not None:
            try:
                session.select_tile(entry.tile_id)
                centre_on_tile(self.viewer, session, entry.tile_id)
            except ImiliaError as error:
                notify("warning", f"tile {entry.tile_id} is not in the current tiles: {error}")
        self.target_kind = "tile"
        self._show_entry(entry)

    def delete_selected(self) -> None:
        """Delete the entry selected in the list (saved at once)."""
        entry_id = self.entry_list.current_entry_id()
        if entry_id is None or self.session is None:
            notify("info", "select a review in the list to delete it")
            return
        try:
            self.session.remove_review(entry_id)
        except ImiliaError as error:
            notify("error", str(error))
            return
        self._show_entry(None)
        self.refresh_list()
