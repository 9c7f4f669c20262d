"""Pieces of the Review dock: the verdict keys, the entry list, the typed drafts."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QListWidget, QListWidgetItem

from napari_imilia._napari.docks.text import plain_tooltip

ENTRY_ROLE = Qt.ItemDataRole.UserRole
#: Panel key, canvas key per verdict.
VERDICT_KEYS: dict[str, tuple[str, str]] = {
    "agree": ("A", "A"),
    "disagree": ("D", "D"),
    "uncertain": ("U", "U"),
}
VERDICT_MARKS = {"agree": "✔", "disagree": "✘", "uncertain": "?"}


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


class EntryList(QListWidget):
    """The slide's review entries, one line each; ``entry_chosen(entry_id)`` when the user
    selects one (not when the list is refilled)."""

    entry_chosen = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.currentItemChanged.connect(self._on_current)

    def show_entries(self, entries: list[Any], current_id: str | None) -> None:
        """Refill with ``entries``, selecting ``current_id`` (no ``entry_chosen``)."""
        self.blockSignals(True)
        try:
            self.clear()
            for entry in entries:
                item = QListWidgetItem(describe_entry(entry))
                item.setData(ENTRY_ROLE, entry.entry_id)
                item.setToolTip(
                    plain_tooltip(
                        f"by {entry.reviewer or 'unnamed'}; created {entry.created_utc}, "
                        f"updated {entry.updated_utc}"
                    )
                )
                self.addItem(item)
                if entry.entry_id == current_id:
                    self.setCurrentItem(item)
        finally:
            self.blockSignals(False)

    def entry_ids(self) -> list[str]:
        return [self.item(i).data(ENTRY_ROLE) for i in range(self.count())]

    def current_entry_id(self) -> str | None:
        item = self.currentItem()
        return None if item is None else item.data(ENTRY_ROLE)

    def _on_current(self, item: QListWidgetItem | None, _previous: Any) -> None:
        if item is not None:
            self.entry_chosen.emit(item.data(ENTRY_ROLE))


class TypedDrafts:
    """Class and note typed for a tile before any verdict, kept per (slide, tile) while the
    reviewer looks at other tiles, so moving on never drops what was typed (in memory: a
    review needs a verdict before it is saved)."""

    def __init__(self) -> None:
        self._drafts: dict[tuple[str, str], tuple[str, str]] = {}

    def keep(self, slide_id: str, tile_id: str, reviewer_class: str, note: str) -> None:
        if reviewer_class or note:
            self._drafts[(slide_id, tile_id)] = (reviewer_class, note)
        else:
            self._drafts.pop((slide_id, tile_id), None)

    def get(self, slide_id: str, tile_id: str) -> tuple[str, str] | None:
        return self._drafts.get((slide_id, tile_id))

    def drop(self, slide_id: str, tile_id: str) -> None:
        self._drafts.pop((slide_id, tile_id), None)
