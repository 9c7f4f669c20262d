"""Review dock: the pathologist's verdict on the selected tile or on drawn regions.

The target is the session's selected tile (Top tiles list, canvas click) or the shapes
selected in the "Review regions" layer (*Draw region* starts a polygon there). *Agree*,
*Disagree* and *Uncertain* (keys A / D / U in the panel and on the canvas: ``_review_keys``,
listed at the bottom of the dock) record the verdict at once with the class, note and
reviewer name; changing the class or note of a recorded entry saves it too. Every change
goes through the session (``add_review`` / ``update_review`` / ``remove_review``), which
autosaves atomically into the slide's results folder; reopening the slide reloads the list
and redraws the regions. "k of K top tiles reviewed" counts the tile verdicts among the
Top tiles dock's list (the 10 highest when it is closed). The list shows every entry of
the slide: selecting one edits it and jumps to its tile or region. The reviewer name is
remembered in ``review_settings.json`` beside the panel settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.docks.cohort.grade_form import SlideGradeForm
from napari_imilia._napari.docks.review.form import ReviewForm
from napari_imilia._napari.docks.review.parts import VERDICT_KEYS, EntryList, TypedDrafts, notify
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.keys import (
    DEFAULT_K,
    docked_widget,
    keys_help_html,
    register_review_actions,
)
from napari_imilia._napari.layers.regions import ReviewRegions
from napari_imilia._napari.layers.verdicts import session_tile_verdicts
from napari_imilia._napari.link import centre_on_tile, link_viewer
from napari_imilia.errors import ImiliaError
from napari_imilia.export.layers import level0_to_world
from napari_imilia.review.progress import reviewed_count

#: How often the dock takes in review edits saved by other processes, milliseconds.
SYNC_INTERVAL_MS = 3000


class ReviewPanel(QWidget):
    """The Review dock widget (npe2 ``napari-imilia.review_panel``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.regions: ReviewRegions | None = None
        self.target_kind = "tile"
        self.entry_ids: list[str] = []  # entries being edited
        self.drafts = TypedDrafts()  # notes typed for tiles without a verdict yet
        self._draft_tile: str | None = None  # the tile whose new review the form shows
        self._quiet = False
        self._deferred = False
        self._build_ui()
        self._bind_keys()
        self.link = link_viewer(napari_viewer)
        self._session: Any = None
        self.link.state.session_changed.connect(self._on_session_changed)
        self._on_session_changed(self.link.ensure_session())
        # edits another window or reviewer saved for this slide appear within a few seconds
        self.sync_timer = QTimer(self)
        self.sync_timer.setInterval(SYNC_INTERVAL_MS)
        self.sync_timer.timeout.connect(self.sync_from_others)
        self.sync_timer.start()

    def sync_from_others(self) -> bool:
        """Take in review edits saved by other processes (``ReviewSession.sync_review``)."""
        if self.session is None:
            return False
        try:
            return self.session.sync_review()
        except ImiliaError as error:
            self.count_label.setText(f"other reviewers' edits could not be read: {error}")
            return False

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.target_label = QLabel("No slide open")
        self.target_label.setWordWrap(True)
        self.draw_button = QPushButton("Draw region")
        self.draw_button.setToolTip(
            "Draw a polygon in the 'Review regions' layer, then pick a verdict"
        )
        self.form = ReviewForm()
        self.verdict_buttons = self.form.verdict_buttons
        self.class_combo = self.form.class_combo
        self.note_edit = self.form.note_edit
        self.reviewer_edit = self.form.reviewer_edit
        self.entry_list = EntryList()
        self.delete_button = QPushButton("Delete selected review")
        self.count_label = QLabel("")
        self.grade_form = SlideGradeForm(self.viewer)  # the slide-level grade (Nancy index)
        self.progress_label = QLabel("")
        self.keys_label = QLabel(keys_help_html())
        self.keys_label.setWordWrap(True)
        self.keys_label.setTextFormat(Qt.TextFormat.RichText)

        layout = QVBoxLayout(scroll_content(self))
        layout.addWidget(self.progress_label)
        layout.addWidget(self.target_label)
        layout.addWidget(self.draw_button)
        layout.addWidget(self.form)
        layout.addWidget(self.count_label)
        layout.addWidget(self.entry_list, 1)
        layout.addWidget(self.delete_button)
        layout.addWidget(self.grade_form)
        layout.addWidget(self.keys_label)

        self.draw_button.clicked.connect(self.start_drawing)
        self.form.verdict_chosen.connect(self.record)
        self.form.fields_edited.connect(self._on_field_edited)
        self.entry_list.entry_chosen.connect(self._on_list_item)
        self.delete_button.clicked.connect(self.delete_selected)

    def _bind_keys(self) -> None:
        """A / D / U in the dock; on the canvas they are napari actions (``_review_keys``)."""
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for verdict, (panel_key, _canvas_key) in VERDICT_KEYS.items():
            shortcut = QShortcut(QKeySequence(panel_key), self)
            shortcut.setContext(context)
            shortcut.activated.connect(lambda v=verdict: self.record(v))
        register_review_actions()

    # ------------------------------------------------------------------ session
    @property
    def session(self) -> Any:
        return self.link.state.session

    def _on_session_changed(self, session: Any) -> None:
        if self._session is not None:
            self._session.tile_selected.disconnect(self._on_tile_selected)
            self._session.review_changed.disconnect(self._on_review_changed)
            self._session.prediction_changed.disconnect(self._on_prediction_changed)
        self._drop_regions()
        self._session = session
        self.entry_ids = []
        self._draft_tile = None
        if session is not None:
            session.tile_selected.connect(self._on_tile_selected)
            session.review_changed.connect(self._on_review_changed)
            session.prediction_changed.connect(self._on_prediction_changed)
            if self._ensure_regions() is not None:
                for message in session.review.warnings:
                    notify("warning", message)
        self._on_tile_selected(None if session is None else session.selected_tile_id)
        self.refresh_list()
        self.grade_form.show_session(session)

    def _ensure_regions(self) -> ReviewRegions | None:
        """The session's regions layer, (re)made when missing (e.g. the user removed it)."""
        session = self.session
        if session is None:
            return None
        if self.regions is not None and self.regions.alive:
            return self.regions
        self._drop_regions()
        try:
            self.regions = ReviewRegions(
                self.viewer,
                session,
                notify=lambda m: notify("warning", m),
                on_drawn=self._on_region_drawn,
            )
        except ImiliaError as error:
            notify("error", f"the review of {session.slide_id} cannot be opened: {error}")
            self.regions = None
            return None
        self.regions.layer.selected_data.events.items_changed.connect(self._on_shape_selection)
        return self.regions

    def _drop_regions(self) -> None:
        if self.regions is not None:
            self.regions.layer.selected_data.events.items_changed.disconnect(
                self._on_shape_selection
            )
            self.regions.close()
            self.regions = None

    def _on_prediction_changed(self, _result: Any) -> None:
        # a new model reopens the review store (it is keyed by the model): redraw all
        if self.regions is not None:
            self.regions.sync()
        self.refresh_list()

    def _on_review_changed(self) -> None:
        if self._quiet:
            self._deferred = True
            return
        if self.regions is not None and self.regions.alive:
            self.regions.sync()
        self.refresh_list()

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Run several session edits, then redraw once (the layer is updated in between)."""
        self._quiet, self._deferred = True, False
        try:
            yield
        finally:
            self._quiet = False
            if self._deferred:
                self._on_review_changed()

    # ------------------------------------------------------------------ targets
    def _on_tile_selected(self, tile_id: Any) -> None:
        session = self.session
        self.target_kind = "tile"
        if session is None:
            self.target_label.setText("No slide open: open one in the Slide and model panel")
            self._show_entry(None)
            return
        if tile_id is None:
            self.target_label.setText(
                "Select a tile (Top tiles, or click the slide) or draw a region"
            )
            self._show_entry(None)
            return
        self.show_progress()
        row = session.tile_row(tile_id)
        shown = [f"{k} {row[k]:.4g}" for k in ("score", "rank") if k in row.index]
        self.target_label.setText(f"Tile {tile_id}: " + ", ".join(shown))
        tile_entries = [e for e in session.review.for_tile(tile_id) if e.target_kind == "tile"]
        self._show_entry(tile_entries[-1] if tile_entries else None, draft_tile=str(tile_id))
        if self._draft_tile is not None and self.drafts.get(session.slide_id, self._draft_tile):
            self.target_label.setText(
                self.target_label.text() + " (your note is kept: choose a verdict to save it)"
            )

    def _on_shape_selection(self, _event: Any = None) -> None:
        if self.regions is None or self.regions._syncing:
            return
        indices = self.regions.selected_indices()
        if not indices:
            return
        self.target_kind = "region"
        ids = [self.regions.entry_ids()[i] for i in indices]
        known = [eid for eid in ids if eid]
        self.target_label.setText(
            f"{len(indices)} region(s) selected in 'Review regions' ({len(known)} reviewed)"
        )
        entry = self.session.review.get(known[0]) if known else None
        self._show_entry(entry, ids=known)

    def _on_region_drawn(self, index: int) -> None:
        self.target_kind = "region"
        self.target_label.setText(f"New region {index + 1} drawn: choose a verdict")
        self._show_entry(None)

    def _show_entry(
        self, entry: Any, ids: list[str] | None = None, draft_tile: str | None = None
    ) -> None:
        """Fill the form from ``entry`` (None: a new review: class and note empty, or those
        typed earlier for ``draft_tile``). What was typed for the previous target is never
        dropped: edits of saved entries are saved, and class and note typed before a verdict
        are kept as that tile's draft."""
        self._keep_typed()
        self.entry_ids = ids if ids is not None else ([] if entry is None else [entry.entry_id])
        self.form.show_entry(entry)
        session = self.session
        self._draft_tile = draft_tile if entry is None and session is not None else None
        if session is not None and entry is not None and entry.tile_id is not None:
            self.drafts.drop(session.slide_id, str(entry.tile_id))  # saved now
        draft = (
            None
            if self._draft_tile is None
            else self.drafts.get(session.slide_id, self._draft_tile)
        )
        if draft is not None:
            self.form.class_combo.setEditText(draft[0])
            self.form.note_edit.setText(draft[1])

    def _keep_typed(self) -> None:
        """Save (or keep as a draft) what the form holds for the target it showed."""
        session = self.session
        if session is None or session is not self._session:
            return
        if self._current_entries():
            self._on_field_edited()
        elif self._draft_tile is not None:
            fields = self.form.fields()
            self.drafts.keep(
                session.slide_id, self._draft_tile, fields["reviewer_class"], fields["note"]
            )

    def start_drawing(self) -> None:
        """Make the regions layer active in polygon mode."""
        regions = self._ensure_regions()
        if regions is None:
            notify("warning", "open a slide first: regions are drawn on its slide")
            return
        self.viewer.layers.selection.active = regions.layer
        regions.layer.mode = "add_polygon"

    # ------------------------------------------------------------------ recording
    def record(self, verdict: str) -> list[Any]:
        """Record ``verdict`` on the current target; returns the entries saved."""
        session = self.session
        if session is None:
            notify("warning", "open a slide before recording a review")
            return []
        self.form.remember_reviewer()
        try:
            with self._batch():  # the list is refreshed once, with the saved entry selected
                if self.target_kind == "region":
                    saved = self._record_regions(verdict)
                else:
                    saved = self._record_tile(verdict)
                if saved:
                    self._show_entry(saved[0], ids=[e.entry_id for e in saved])
        except ImiliaError as error:
            notify("error", f"review not saved: {error}")
            saved = []
        if saved and self.target_kind == "region":
            where = f" on tile {saved[0].tile_id}" if saved[0].tile_id else ""
            self.target_label.setText(f"{len(saved)} region(s){where}: {verdict}, saved")
        return saved

    def _record_tile(self, verdict: str) -> list[Any]:
        session = self.session
        tile_id = session.selected_tile_id
        if tile_id is None:
            notify("warning", "select a tile (Top tiles or a click on the slide) or draw a region")
            return []
        fields = self.form.fields()
        current = [e for e in self._current_entries() if e.tile_id == tile_id]
        if current and current[0].target_kind == "tile":
            return [session.update_review(current[0].entry_id, verdict=verdict, **fields)]
        return [session.add_review(verdict=verdict, tile_id=tile_id, **fields)]

    def _record_regions(self, verdict: str) -> list[Any]:
        regions = self.regions
        if regions is None or not regions.alive:
            notify("warning", "the 'Review regions' layer was removed; press Draw region")
            return []
        indices = regions.selected_indices() or regions.pending_indices()[-1:]
        if not indices:
            notify("warning", "draw a region (Draw region) or select one in 'Review regions'")
            return []
        return [regions.record(i, verdict=verdict, **self.form.fields()) for i in indices]

    def _current_entries(self) -> list[Any]:
        review = self.session.review
        known = {e.entry_id: e for e in review.entries()}
        return [known[eid] for eid in self.entry_ids if eid in known]

    def _on_field_edited(self) -> None:
        """Save a changed class or note of the entries being edited."""
        if self.session is None:
            return
        fields = self.form.fields()
        changes = [
            e
            for e in self._current_entries()
            if (e.reviewer_class, e.note) != (fields["reviewer_class"], fields["note"])
        ]
        if not changes:
            return
        try:
            with self._batch():
                for entry in changes:
                    self.session.update_review(entry.entry_id, **fields)
        except ImiliaError as error:
            notify("error", f"review not saved: {error}")

    # ------------------------------------------------------------------ list
    def refresh_list(self) -> None:
        """Show every entry of the slide, keeping the current one selected."""
        entries = [] if self.session is None else self.session.review.entries()
        self.entry_list.show_entries(entries, self.entry_ids[0] if self.entry_ids else None)
        self.count_label.setText(f"{len(entries)} review(s) of this slide, saved")
        self.show_progress()

    def top_tile_ids(self) -> list[str]:
        """The top tiles whose review is counted: the Top tiles dock's list when it is open,
        else the ``DEFAULT_K`` highest-scoring tiles."""
        session = self.session
        if session is None or session.prediction is None:
            return []
        top = docked_widget(self.viewer, "TopTilesWidget")
        if top is not None and top.tile_ids():
            return top.tile_ids()
        return [str(t) for t in session.ranked_tiles(DEFAULT_K)["tile_id"]]

    def show_progress(self) -> None:
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
