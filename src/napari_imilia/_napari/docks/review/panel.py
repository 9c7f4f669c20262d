"""Review dock: the pathologist's verdict on the selected tile or on drawn regions.

The target is the viewer state's ``review_target``: the session's selected tile (Top tiles
list, canvas click) or the shapes selected in the "Review regions" layer, which the viewer
link draws (*Draw region* starts a polygon there). *Agree*, *Disagree* and *Uncertain*
(keys A / D / U in the panel and on the canvas: ``keys``, listed at the bottom of the dock)
record the verdict at once through ``recording.record_verdict``, the path the canvas keys
take too, with the class and note typed here (the state's ``review_draft``); changing the
class or note of a recorded entry saves it too. Each is signed with the reviewer's name,
shown and edited in the dock's header (the user's one identity, ``_napari.reviewer``:
asked once, at the first review action, when none is saved). Every change goes through the
session (``add_review`` / ``update_review`` / ``remove_review``), which autosaves atomically
into the slide's results folder; reopening the slide reloads the list and the link redraws
the regions. "k of K top tiles reviewed" counts the tile verdicts among the state's top tiles
(``ViewerState.top_tiles``, which the Top tiles dock edits: the 10 highest by default). The
list shows every entry of the slide: selecting one edits it and jumps to its tile or region.
The slide grade form sits at the bottom, except under a cohort review (the Cohort dock shows
it beside the table).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from napari_imilia._napari.docks.cohort.grade_form import SlideGradeForm
from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.review.entries import ReviewListMixin
from napari_imilia._napari.docks.review.form import ReviewerField, ReviewForm
from napari_imilia._napari.docks.review.parts import VERDICT_KEYS, EntryList, TypedDrafts
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.keys import keys_help_html
from napari_imilia._napari.layers.regions import ReviewRegions
from napari_imilia._napari.notify import notify
from napari_imilia._napari.recording import record_verdict
from napari_imilia._napari.reviewer import reviewer_for_action
from napari_imilia._napari.state import ReviewDraft
from napari_imilia.errors import ImiliaError
from napari_imilia.review.reviewer import load_reviewer

#: How often the dock takes in review edits saved by other processes, milliseconds.
SYNC_INTERVAL_MS = 3000


def _forget_draft(state: Any, *_: Any) -> None:
    """The Review dock is gone: verdicts from the keys no longer carry its class and note."""
    state.review_draft = None


class ReviewPanel(ReviewListMixin, QWidget):
    """The Review dock widget (npe2 ``napari-imilia.review_panel``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.entry_ids: list[str] = []  # entries being edited
        self.drafts = TypedDrafts()  # notes typed for tiles without a verdict yet
        self._draft_tile: str | None = None  # the tile whose new review the form shows
        self._quiet = False
        self._deferred = False
        self._session: Any = None
        self.link = dock_viewer_link(napari_viewer)
        self.state = self.link.state
        self._build_ui()
        self._bind_keys()
        self.links = DockLinks(self)
        self.links.connect(self.state.session_changed, self._on_session_changed)
        self.links.connect(self.state.verdicts_recorded, self._on_verdicts_recorded)
        self.links.connect(self.state.top_tiles_changed, self.show_progress)
        self.links.connect(self.state.cohort_changed, self._on_cohort_changed)
        self.links.connect(self.link.region_drawn, self._on_region_drawn)
        self.links.connect(self.link.regions_selected, self._on_shape_selection)
        self.form.fields_changed.connect(self._push_draft)
        self.destroyed.connect(partial(_forget_draft, self.state))
        self._push_draft()
        self._on_cohort_changed(self.state.cohort)
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
        self.target_label = plain_label("No slide open")
        self.target_label.setWordWrap(True)
        self.draw_button = QPushButton("Draw region")
        self.draw_button.setToolTip(
            "Draw a polygon in the 'Review regions' layer, then pick a verdict"
        )
        self.reviewer_field = ReviewerField()
        self.reviewer_edit = self.reviewer_field.edit
        self.form = ReviewForm()
        self.verdict_buttons = self.form.verdict_buttons
        self.class_combo = self.form.class_combo
        self.note_edit = self.form.note_edit
        self.entry_list = EntryList()
        self.delete_button = QPushButton("Delete selected review")
        self.count_label = plain_label("")
        self.grade_form = SlideGradeForm(self.viewer)  # the slide-level grade (Nancy index)
        self.progress_label = QLabel("")
        self.keys_label = QLabel(keys_help_html())
        self.keys_label.setWordWrap(True)
        self.keys_label.setTextFormat(Qt.TextFormat.RichText)

        layout = QVBoxLayout(scroll_content(self))
        layout.addWidget(self.reviewer_field)
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
        """A / D / U in the dock; on the canvas they are napari actions (``keys``)."""
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for verdict, (panel_key, _canvas_key) in VERDICT_KEYS.items():
            shortcut = QShortcut(QKeySequence(panel_key), self)
            shortcut.setContext(context)
            shortcut.activated.connect(lambda v=verdict: self.record(v))

    def _on_cohort_changed(self, cohort: Any) -> None:
        """Under a cohort review the slide is graded in the Cohort dock, beside its table:
        this dock's copy of the grade form steps aside (one grade form on the screen)."""
        self.grade_form.setVisible(cohort is None)

    def _push_draft(self) -> None:
        """What the form holds goes with the next verdict, from a button or a key."""
        self.state.review_draft = ReviewDraft(**self.form.fields())

    # ------------------------------------------------------------------ state
    @property
    def session(self) -> Any:
        return self.state.session

    @property
    def regions(self) -> ReviewRegions | None:
        """The session's "Review regions" layer (the viewer link's)."""
        return self.link.regions

    @property
    def target_kind(self) -> str:
        """What a verdict applies to: 'tile' or 'region' (the state's review target)."""
        return self.state.review_target

    @target_kind.setter
    def target_kind(self, kind: str) -> None:
        self.state.review_target = kind

    def _on_session_changed(self, session: Any) -> None:
        self.links.connect_session(
            session,
            {
                "tile_selected": self._on_tile_selected,
                "review_changed": self._on_review_changed,
                "prediction_changed": self._on_prediction_changed,
            },
        )
        self._session = session
        self.entry_ids = []
        self._draft_tile = None
        self._on_tile_selected(None if session is None else session.selected_tile_id)
        self.refresh_list()
        self.grade_form.show_session(session)

    def _on_prediction_changed(self, _result: Any) -> None:
        self.refresh_list()  # a new model reopens the review store (it is keyed by the model)

    def _on_review_changed(self) -> None:
        if self._quiet:
            self._deferred = True
            return
        self.refresh_list()

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Run several session edits, then refresh the list once."""
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
        own = session.own_tile_review(tile_id, load_reviewer())  # others' reviews stay theirs
        self._show_entry(own, draft_tile=str(tile_id))
        if self._draft_tile is not None and self.drafts.get(session.slide_id, self._draft_tile):
            self.target_label.setText(
                self.target_label.text() + " (your note is kept: choose a verdict to save it)"
            )

    def _on_shape_selection(self, indices: list[int]) -> None:
        """Shapes ``indices`` of the regions layer were selected (the link set the target)."""
        if self.regions is None or self.session is None:
            return
        ids = [self.regions.entry_ids()[i] for i in indices]
        known = [eid for eid in ids if eid]
        self.target_label.setText(
            f"{len(indices)} region(s) selected in 'Review regions' ({len(known)} reviewed)"
        )
        entry = self.session.review.get(known[0]) if known else None
        self._show_entry(entry, ids=known)

    def _on_region_drawn(self, index: int) -> None:
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
        regions = self.link.ensure_regions()
        if regions is None:
            notify("warning", "open a slide first: regions are drawn on its slide")
            return
        self.viewer.layers.selection.active = regions.layer
        regions.layer.mode = "add_polygon"

    # ------------------------------------------------------------------ recording
    def record(self, verdict: str) -> list[Any]:
        """Record ``verdict`` on the current target with the form's class and note, signed
        with the reviewer's name (``recording.record_verdict``, as the canvas keys do);
        returns the entries saved."""
        self.reviewer_field.remember()  # a name typed in the header and not yet saved
        self._push_draft()
        with self._batch():  # the list is refreshed once, with the saved entry selected
            return record_verdict(self.link, verdict)

    def _on_verdicts_recorded(self, saved: list[Any]) -> None:
        """A verdict was saved (from here or a key): edit what was saved."""
        self._show_entry(saved[0], ids=[e.entry_id for e in saved])
        if self.target_kind == "region":
            where = f" on tile {saved[0].tile_id}" if saved[0].tile_id else ""
            verdict = saved[0].verdict
            self.target_label.setText(f"{len(saved)} region(s){where}: {verdict}, saved")
        if not self._quiet:  # else the batch refreshes the list when it ends
            self.refresh_list()

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
        self.reviewer_field.remember()
        mine = [e for e in changes if e.reviewer in ("", load_reviewer())]
        for entry in (e for e in changes if e not in mine and e.tile_id is not None):
            # another reviewer's review stays theirs; what was typed waits for a verdict
            self.drafts.keep(
                self.session.slide_id, str(entry.tile_id), fields["reviewer_class"], fields["note"]
            )
        if len(mine) < len(changes):
            notify("info", "that review is another reviewer's: choose a verdict to save yours")
        if not mine:
            return
        changes = mine
        reviewer = reviewer_for_action(self.viewer)
        if reviewer:  # the note's author; never blanks a signed entry
            fields = {**fields, "reviewer": reviewer}
        try:
            with self._batch():
                for entry in changes:
                    self.session.update_review(entry.entry_id, **fields)
        except ImiliaError as error:
            notify("error", f"review not saved: {error}")
