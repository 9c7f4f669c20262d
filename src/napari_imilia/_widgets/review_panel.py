"""Review dock: the pathologist's verdict on the selected tile or on drawn regions.

The target is the session's selected tile (Top tiles list, canvas click) or the shapes
selected in the "Review regions" layer (*Draw region* starts a polygon there). *Agree*,
*Disagree* and *Uncertain* (keys A / D / U in the panel, Alt+A / Alt+D / Alt+U on the
canvas) record the verdict at once with the class, note and reviewer name; changing the
class or note of a recorded entry saves it too. Every change goes through the session
(``add_review`` / ``update_review`` / ``remove_review``), which autosaves atomically into
the slide's results folder; reopening the slide reloads the list and redraws the regions.
The list shows every entry of the slide: selecting one edits it and jumps to its tile or
region. The reviewer name is remembered in ``review_settings.json`` beside the panel
settings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._utils import write_text_atomic
from napari_imilia._widgets._settings import settings_dir
from napari_imilia._widgets._viewer_link import centre_on_tile, link_viewer
from napari_imilia._widgets.review_regions import ReviewRegions
from napari_imilia.errors import ImiliaError
from napari_imilia.export.layers import level0_to_world
from napari_imilia.review import SUGGESTED_CLASSES, VERDICTS

ENTRY_ROLE = Qt.ItemDataRole.UserRole
REVIEW_SETTINGS_NAME = "review_settings.json"
#: Panel key, canvas key per verdict.
VERDICT_KEYS: dict[str, tuple[str, str]] = {
    "agree": ("A", "Alt-A"),
    "disagree": ("D", "Alt-D"),
    "uncertain": ("U", "Alt-U"),
}
VERDICT_MARKS = {"agree": "✔", "disagree": "✘", "uncertain": "?"}


def load_reviewer() -> str:
    """The reviewer name saved last time ('' if none)."""
    try:
        data = json.loads((settings_dir() / REVIEW_SETTINGS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("reviewer", "")) if isinstance(data, dict) else ""


def save_reviewer(name: str) -> None:
    """Remember the reviewer name (atomic JSON write)."""
    text = json.dumps({"reviewer": name}, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(settings_dir() / REVIEW_SETTINGS_NAME, text)


def describe_entry(entry: Any) -> str:
    """One list line: verdict, target, class and the start of the note."""
    if entry.target_kind == "tile":
        target = f"tile {entry.tile_id}"
    else:
        target = "region" + (f" on tile {entry.tile_id}" if entry.tile_id else "")
    parts = [f"{VERDICT_MARKS[entry.verdict]} {entry.verdict}", target]
    if entry.reviewer_class:
        parts.append(entry.reviewer_class)
    if entry.note:
        parts.append(entry.note if len(entry.note) <= 40 else entry.note[:39] + "…")
    return " · ".join(parts)


def _notify(level: str, message: str) -> None:
    from napari.utils.notifications import show_error, show_info, show_warning

    {"error": show_error, "warning": show_warning}.get(level, show_info)(message)


class ReviewPanel(QWidget):
    """The Review dock widget (npe2 ``napari-imilia.review_panel``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.regions: ReviewRegions | None = None
        self.target_kind = "tile"
        self.entry_ids: list[str] = []  # entries being edited
        self._quiet = False
        self._deferred = False
        self._build_ui()
        self._bind_keys()
        self.link = link_viewer(napari_viewer)
        self._session: Any = None
        self.link.state.session_changed.connect(self._on_session_changed)
        self._on_session_changed(self.link.ensure_session())

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.target_label = QLabel("No slide open")
        self.target_label.setWordWrap(True)
        self.draw_button = QPushButton("Draw region")
        self.draw_button.setToolTip(
            "Draw a polygon in the 'Review regions' layer, then pick a verdict"
        )
        self.verdict_buttons: dict[str, QPushButton] = {}
        verdicts = QHBoxLayout()
        for verdict in VERDICTS:
            panel_key, canvas_key = VERDICT_KEYS[verdict]
            button = QPushButton(f"{verdict.capitalize()} ({panel_key})")
            button.setCheckable(True)
            button.setToolTip(f"Record '{verdict}' ({panel_key} here, {canvas_key} on the canvas)")
            button.clicked.connect(lambda _=False, v=verdict: self.record(v))
            self.verdict_buttons[verdict] = button
            verdicts.addWidget(button)
        self.class_combo = QComboBox()
        self.class_combo.setEditable(True)
        self.class_combo.addItems(["", *SUGGESTED_CLASSES])
        self.class_combo.lineEdit().setPlaceholderText("your class (optional)")
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("note (optional)")
        self.reviewer_edit = QLineEdit(load_reviewer())
        self.reviewer_edit.setPlaceholderText("your name")
        form = QFormLayout()
        form.addRow("Class", self.class_combo)
        form.addRow("Note", self.note_edit)
        form.addRow("Reviewer", self.reviewer_edit)
        self.entry_list = QListWidget()
        self.delete_button = QPushButton("Delete selected review")
        self.count_label = QLabel("")

        layout = QVBoxLayout(self)
        layout.addWidget(self.target_label)
        layout.addWidget(self.draw_button)
        layout.addLayout(verdicts)
        layout.addLayout(form)
        layout.addWidget(self.count_label)
        layout.addWidget(self.entry_list, 1)
        layout.addWidget(self.delete_button)

        self.draw_button.clicked.connect(self.start_drawing)
        self.class_combo.activated.connect(lambda _=0: self._on_field_edited())
        self.class_combo.lineEdit().editingFinished.connect(self._on_field_edited)
        self.note_edit.editingFinished.connect(self._on_field_edited)
        self.reviewer_edit.editingFinished.connect(self._remember_reviewer)
        self.entry_list.currentItemChanged.connect(self._on_list_item)
        self.delete_button.clicked.connect(self.delete_selected)

    def _bind_keys(self) -> None:
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        self._canvas_keys: list[str] = []
        for verdict, (panel_key, canvas_key) in VERDICT_KEYS.items():
            shortcut = QShortcut(QKeySequence(panel_key), self)
            shortcut.setContext(context)
            shortcut.activated.connect(lambda v=verdict: self.record(v))

            def on_key(_viewer: Any, v: str = verdict) -> None:
                self.record(v)

            self.viewer.bind_key(canvas_key, on_key, overwrite=True)
            self._canvas_keys.append(canvas_key)

    def closeEvent(self, event: Any) -> None:
        for key in self._canvas_keys:
            self.viewer.bind_key(key, None, overwrite=True)
        super().closeEvent(event)

    # ------------------------------------------------------------------ session
    @property
    def session(self) -> Any:
        return self.link.state.session

    def _on_session_changed(self, session: Any) -> None:
        if self._session is not None:
            self._session.tile_selected.disconnect(self._on_tile_selected)
            self._session.review_changed.disconnect(self._on_review_changed)
            self._session.prediction_changed.disconnect(self._on_prediction_changed)
        if self.regions is not None:
            self.regions.layer.selected_data.events.items_changed.disconnect(
                self._on_shape_selection
            )
            self.regions.close()
            self.regions = None
        self._session = session
        self.entry_ids = []
        if session is not None:
            session.tile_selected.connect(self._on_tile_selected)
            session.review_changed.connect(self._on_review_changed)
            session.prediction_changed.connect(self._on_prediction_changed)
            try:
                self.regions = ReviewRegions(
                    self.viewer,
                    session,
                    notify=lambda m: _notify("warning", m),
                    on_drawn=self._on_region_drawn,
                )
            except ImiliaError as error:
                _notify("error", f"the review of {session.slide_id} cannot be opened: {error}")
            else:
                self.regions.layer.selected_data.events.items_changed.connect(
                    self._on_shape_selection
                )
                for message in session.review.warnings:
                    _notify("warning", message)
        self._on_tile_selected(None if session is None else session.selected_tile_id)
        self.refresh_list()

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
            self.target_label.setText("No slide open: open one in the Slide & model panel")
            self._show_entry(None)
            return
        if tile_id is None:
            self.target_label.setText(
                "Select a tile (Top tiles, or click the slide) or draw a region"
            )
            self._show_entry(None)
            return
        row = session.tile_row(tile_id)
        self.target_label.setText(
            f"Tile {tile_id}: score {float(row['score']):.3f}, rank {int(row['rank'])}"
        )
        tile_entries = [e for e in session.review.for_tile(tile_id) if e.target_kind == "tile"]
        self._show_entry(tile_entries[-1] if tile_entries else None)

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

    def _show_entry(self, entry: Any, ids: list[str] | None = None) -> None:
        """Fill the form from ``entry`` (None: a new review; class and note cleared)."""
        self.entry_ids = ids if ids is not None else ([] if entry is None else [entry.entry_id])
        for verdict, button in self.verdict_buttons.items():
            button.setChecked(entry is not None and entry.verdict == verdict)
        self.class_combo.setEditText("" if entry is None else entry.reviewer_class)
        self.note_edit.setText("" if entry is None else entry.note)

    def start_drawing(self) -> None:
        """Make the regions layer active in polygon mode."""
        if self.regions is None:
            _notify("warning", "open a slide first: regions are drawn on its slide")
            return
        self.viewer.layers.selection.active = self.regions.layer
        self.regions.layer.mode = "add_polygon"

    # ------------------------------------------------------------------ recording
    def _fields(self) -> dict[str, str]:
        return {
            "reviewer_class": self.class_combo.currentText().strip(),
            "note": self.note_edit.text(),
            "reviewer": self.reviewer_edit.text().strip(),
        }

    def record(self, verdict: str) -> list[Any]:
        """Record ``verdict`` on the current target; returns the entries saved."""
        session = self.session
        if session is None:
            _notify("warning", "open a slide before recording a review")
            return []
        self._remember_reviewer()
        try:
            with self._batch():
                if self.target_kind == "region":
                    saved = self._record_regions(verdict)
                else:
                    saved = self._record_tile(verdict)
        except ImiliaError as error:
            _notify("error", f"review not saved: {error}")
            saved = []
        if saved:
            self._show_entry(saved[0], ids=[e.entry_id for e in saved])
        return saved

    def _record_tile(self, verdict: str) -> list[Any]:
        session = self.session
        tile_id = session.selected_tile_id
        if tile_id is None:
            _notify("warning", "select a tile (Top tiles or a click on the slide) or draw a region")
            return []
        current = [e for e in self._current_entries() if e.tile_id == tile_id]
        if current and current[0].target_kind == "tile":
            return [session.update_review(current[0].entry_id, verdict=verdict, **self._fields())]
        return [session.add_review(verdict=verdict, tile_id=tile_id, **self._fields())]

    def _record_regions(self, verdict: str) -> list[Any]:
        regions, session = self.regions, self.session
        if regions is None or not regions.alive:
            _notify("warning", "the 'Review regions' layer is gone; reopen the Review panel")
            return []
        indices = regions.selected_indices() or regions.pending_indices()[-1:]
        if not indices:
            _notify("warning", "draw a region (Draw region) or select one in 'Review regions'")
            return []
        saved = []
        for index in indices:
            vertices = regions.level0_region(index)
            entry_id = regions.entry_ids()[index]
            if entry_id:
                entry = session.update_review(
                    entry_id, region=vertices, verdict=verdict, **self._fields()
                )
            else:
                centre = np.mean(np.asarray(vertices), axis=0)
                entry = session.add_review(
                    verdict=verdict,
                    region=vertices,
                    tile_id=session.tile_at(*centre),
                    **self._fields(),
                )
            regions.set_entry(index, entry)
            saved.append(entry)
        return saved

    def _current_entries(self) -> list[Any]:
        review = self.session.review
        known = {e.entry_id: e for e in review.entries()}
        return [known[eid] for eid in self.entry_ids if eid in known]

    def _on_field_edited(self) -> None:
        """Save a changed class or note of the entries being edited."""
        if self.session is None:
            return
        fields = self._fields()
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
            _notify("error", f"review not saved: {error}")

    def _remember_reviewer(self) -> None:
        name = self.reviewer_edit.text().strip()
        if name and name != load_reviewer():
            try:
                save_reviewer(name)
            except OSError as error:
                _notify("warning", f"reviewer name not remembered: {error}")

    # ------------------------------------------------------------------ list
    def refresh_list(self) -> None:
        """Show every entry of the slide, keeping the current one selected."""
        self.entry_list.blockSignals(True)
        try:
            self.entry_list.clear()
            entries = [] if self.session is None else self.session.review.entries()
            for entry in entries:
                item = QListWidgetItem(describe_entry(entry))
                item.setData(ENTRY_ROLE, entry.entry_id)
                item.setToolTip(
                    f"by {entry.reviewer or 'unnamed'}; created {entry.created_utc}, "
                    f"updated {entry.updated_utc}"
                )
                self.entry_list.addItem(item)
                if entry.entry_id in self.entry_ids[:1]:
                    self.entry_list.setCurrentItem(item)
            self.count_label.setText(f"{len(entries)} review(s) of this slide, saved")
        finally:
            self.entry_list.blockSignals(False)

    def listed_entry_ids(self) -> list[str]:
        return [self.entry_list.item(i).data(ENTRY_ROLE) for i in range(self.entry_list.count())]

    def _on_list_item(self, item: QListWidgetItem | None, _previous: Any = None) -> None:
        if item is None or self.session is None:
            return
        self.select_entry(item.data(ENTRY_ROLE))

    def select_entry(self, entry_id: str) -> None:
        """Edit ``entry_id`` and jump to its tile or region."""
        session = self.session
        try:
            entry = session.review.get(entry_id)
        except ImiliaError as error:
            _notify("error", str(error))
            return
        if entry.target_kind == "region" and self.regions is not None:
            index = self.regions.index_of(entry_id)
            if index is not None:
                self.regions.layer.selected_data = {index}
            centre = np.mean(np.asarray(entry.region), axis=0)
            camera = getattr(getattr(self.viewer, "scene", None), "camera", None)
            camera = camera if camera is not None else self.viewer.camera
            camera.center = tuple(level0_to_world(centre, self.regions.mpp)[0])
            self.target_kind = "region"
            self._show_entry(entry)
            return
        if entry.tile_id is not None and session.prediction is not None:
            try:
                session.select_tile(entry.tile_id)
                centre_on_tile(self.viewer, session, entry.tile_id)
            except ImiliaError as error:
                _notify("warning", f"tile {entry.tile_id} is not in the current tiles: {error}")
        self.target_kind = "tile"
        self._show_entry(entry)

    def delete_selected(self) -> None:
        """Delete the entry selected in the list (saved at once)."""
        item = self.entry_list.currentItem()
        if item is None or self.session is None:
            _notify("info", "select a review in the list to delete it")
            return
        try:
            self.session.remove_review(item.data(ENTRY_ROLE))
        except ImiliaError as error:
            _notify("error", str(error))
            return
        self._show_entry(None)
        self.refresh_list()
