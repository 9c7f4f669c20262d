"""The census section of the Tile inspector dock: run the slide's whole-slide cell census,
choose what its density map shows, read its values, list the cells of the tile clicked on
the map.

Everything here is the viewer state's (``ViewerState.census``, a
:class:`~napari_imilia._napari.census.CensusRunner`): *Run census* makes it with the Tile
inspector's choices (cell backend, epithelium method) in a worker thread, with a progress bar
and *Cancel* (the finished parts are kept: *Run census* again goes on); the viewer link draws
the density map and the cells in view; a click on the map lists the tile's cells here and, on
a scored slide, inspects the tile (its masks and markers appear above, in the inspector). No
layer is drawn here. It is a section, not a dock of its own: the dock column keeps its count.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.links import DockLinks
from napari_imilia.interpret.census import COMPARTMENTS, PRESETS, CellSelection
from napari_imilia.interpret.census.finish import COUNTED_CLASSES

ANYWHERE = "anywhere"
#: Cells listed for a picked tile (the rest are counted).
MAX_LISTED = 200
REGION_HEADERS = ("region", "cells", "mm²", "per mm²")
CELL_HEADERS = ("class", "compartment", "area µm²", "confidence")


def selection_for(choice: str, compartment: str) -> CellSelection:
    """The selection of a *Show* entry: a preset by its name, or one class in ``compartment``
    (per mm² of that compartment when it is epithelium or lamina propria, else of tissue)."""
    for preset in PRESETS:
        if preset.name == choice:
            return preset
    where = () if compartment == ANYWHERE else (compartment,)
    per = compartment if compartment in ("epithelium", "lamina propria") else "tissue"
    return CellSelection((choice,), where, per)


class CensusSection(QWidget):
    """The census section (see the module docstring) of a dock joined to ``link``."""

    def __init__(self, link: Any) -> None:
        super().__init__()
        self.link = link
        self.state = link.state
        self.runner = self.state.census
        self._build_ui()
        self.links = DockLinks(self)
        self.links.connect(self.runner.changed, self._on_changed)
        self.links.connect(self.runner.progress, self._on_progress)
        self.links.connect(self.runner.status, self._on_status)
        self.links.connect(self.runner.picked, self._on_picked)
        self.links.connect(self.runner.selection_changed, self._on_selection)
        self.link.ensure_session()
        self._on_changed(self.runner.data)

    def _build_ui(self) -> None:
        self.run_button = QPushButton("Run census")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setVisible(False)  # while a census runs
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.show_combo = _combo([p.name for p in PRESETS] + list(COUNTED_CLASSES))
        self.compartment_combo = _combo([ANYWHERE, *COMPARTMENTS])
        self.values_label = QLabel("")
        self.values_label.setWordWrap(True)
        self.regions_table = _table(REGION_HEADERS)
        self.picked_label = QLabel("click the density map to list a tile's cells")
        self.picked_label.setWordWrap(True)
        self.cells_table = _table(CELL_HEADERS)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        form = QFormLayout()
        form.addRow("Show", self.show_combo)
        form.addRow("Compartment", self.compartment_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.addWidget(QLabel("<b>Whole-slide census</b>: every cell, by class and compartment"))
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addLayout(form)
        layout.addWidget(self.values_label)
        layout.addWidget(self.regions_table)
        layout.addWidget(self.picked_label)
        layout.addWidget(self.cells_table)

        self.run_button.clicked.connect(self._run)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.show_combo.currentTextChanged.connect(self._on_choice)
        self.compartment_combo.currentTextChanged.connect(self._on_choice)

    # ------------------------------------------------------------------ actions
    def _run(self) -> None:
        self.runner.run()
        running = self.runner.running
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.progress_bar.setVisible(running)
        if running:
            self.progress_bar.setValue(0)
            self.runner.worker.finished.connect(self._on_finished)

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_choice(self, *_: Any) -> None:
        preset = self.show_combo.currentText() in {p.name for p in PRESETS}
        self.compartment_combo.setEnabled(not preset)
        choice = selection_for(self.show_combo.currentText(), self.compartment_combo.currentText())
        self.runner.select(choice)

    # ------------------------------------------------------------------ state
    def _on_selection(self, selection: CellSelection) -> None:
        """Show the state's selection in the combos (set elsewhere too), then its values."""
        preset = selection in PRESETS
        choice = selection.name if preset else (selection.classes or ("",))[0]
        where = (selection.compartments or (ANYWHERE,))[0]
        for combo, text in ((self.show_combo, choice), (self.compartment_combo, where)):
            if combo.findText(text) >= 0 and combo.currentText() != text:
                combo.blockSignals(True)
                combo.setCurrentText(text)
                combo.blockSignals(False)
        self.compartment_combo.setEnabled(not preset)
        self._show_values()

    def _on_changed(self, data: Any) -> None:
        if data is None:
            has_session = self.state.session is not None
            self.status_label.setText(
                "no census of this slide yet: Run census (or imilia cells SLIDE --out RESULTS)"
                if has_session
                else "open a slide to run its census"
            )
            self.run_button.setEnabled(has_session and not self.runner.running)
        else:
            made = data.info.get("settings", {}).get("inspect", {})
            self.status_label.setText(
                f"census: {data.info.get('n_cells', 0):,} cells in "
                f"{data.info.get('n_tiles', 0):,} tiles ({made.get('cell_backend')} cells, "
                f"{made.get('epithelium_method')})"
            )
        self._show_values()
        self.cells_table.setRowCount(0)

    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_progress(self, progress: Any) -> None:
        self.progress_bar.setMaximum(max(1, progress.total))
        self.progress_bar.setValue(progress.done)
        self.progress_bar.setFormat(f"%v / %m tiles{' (cancelled)' if progress.cancelled else ''}")

    def _show_values(self, *_: Any) -> None:
        data = self.runner.data
        self.regions_table.setRowCount(0)
        if data is None:
            self.values_label.setText("")
            return
        selection = self.runner.selection
        worst = data.worst_window(selection, 500.0)
        classes = " + ".join(selection.classes) or "all classes"
        where = " or ".join(selection.compartments) or "anywhere"
        self.values_label.setText(
            f"<b>{selection.name}</b>: {classes} ({where}), per mm² of {selection.per}. "
            f"Worst 500 µm window: {_number(worst.density_per_mm2)} /mm² ({worst.count} cells, "
            f"{len(worst.tile_ids)} tiles)"
        )
        regions = data.region_values(selection)
        self.regions_table.setRowCount(len(regions))
        for r, row in enumerate(regions.itertuples(index=False)):
            values = (
                row.region,
                f"{row.count:,}",
                f"{row.area_mm2:.3f}",
                _number(row.density_per_mm2),
            )
            for c, text in enumerate(values):
                self.regions_table.setItem(r, c, QTableWidgetItem(text))
        _fit_rows(self.regions_table, max_rows=6)

    def _on_picked(self, tile_id: str, cells: Any) -> None:
        counts = cells["class_name"].astype(str).value_counts()
        summary = ", ".join(f"{name} {n}" for name, n in counts.items())
        self.picked_label.setText(f"<b>tile {tile_id}</b>: {len(cells)} cells ({summary})")
        shown = cells.head(MAX_LISTED)
        self.cells_table.setRowCount(len(shown))
        for r, row in enumerate(shown.itertuples(index=False)):
            values = (
                str(row.class_name),
                str(row.compartment),
                f"{row.area_um2:.1f}",
                f"{row.probability:.2f}",
            )
            for c, text in enumerate(values):
                self.cells_table.setItem(r, c, QTableWidgetItem(text))


def _table(headers: tuple[str, ...]) -> QTableWidget:
    """A table whose columns share the dock's width (it never widens the dock)."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    table.horizontalHeader().setMinimumSectionSize(40)
    table.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustIgnored)
    table.setMinimumSize(160, 120)
    return table


def _fit_rows(table: QTableWidget, max_rows: int) -> None:
    """As tall as its rows (at most ``max_rows``), no empty space below them."""
    rows = min(table.rowCount(), max_rows)
    height = table.horizontalHeader().height() + 2 * table.frameWidth()
    height += sum(table.rowHeight(r) for r in range(rows)) + 2
    table.setMinimumHeight(min(height, 120))
    table.setMaximumHeight(height)


def _combo(items: list[str]) -> QComboBox:
    """A combo box as narrow as the dock allows (long entries are elided)."""
    combo = QComboBox()
    combo.addItems(items)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(12)
    return combo


def _number(value: float) -> str:
    return "–" if value is None or value != value else f"{value:,.0f}"
