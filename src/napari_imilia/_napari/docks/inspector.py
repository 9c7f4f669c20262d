"""Tile inspector dock: the choices of the viewer's tile inspections, and the markers of the
inspection shown.

The choices (cell backend: classical, CellViT checkpoint or an imported HistoPLUS JSON;
epithelium: stain heuristic or EpiSeg probe; device) are the viewer state's
(``ViewerState.inspect_settings``, remembered on disk): this dock shows and edits them, and
the ``I`` key uses them whether the dock is open or not. Results come first (the *Inspect*
button, the shown tile's markers); the choices sit below in a folded *Inspection settings*
section. With *inspect when a tile is
selected* checked, selecting a tile (a click on the canvas, the Top tiles list) inspects it;
*Inspect* inspects the selected tile. Inspections run in the state's
``InspectionRunner`` (a ``thread_worker``; the viewer stays responsive) with the models the
state has loaded; the viewer link draws the cell and epithelium masks and their legend. The
dock lists the shown tile's markers: counts and densities per mm² per class, the epithelium
fraction and intraepithelial immune cells. Errors become notifications.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.census import CensusSection
from napari_imilia._napari.docks.fold import FoldSection
from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.inspect_settings import InspectorSettings
from napari_imilia._napari.notify import notify
from napari_imilia._napari.settings import DEVICES
from napari_imilia.interpret import CELL_BACKENDS, InspectConfig, TileInspection
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, IMMUNE_CLASSES
from napari_imilia.interpret.epithelium import METHODS

MARKER_HEADERS = ("class", "count", "per mm² tissue", "intraepithelial")


def _number(value: float, digits: int = 0) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def legend_html(inspection: TileInspection) -> str:
    """Class colour swatches with the tile's count per class (present classes only)."""
    counts = inspection.markers.counts
    parts = [
        f'<span style="color: rgb{CELL_CLASS_COLORS[name]}">■</span> {name} ({count})'
        for name, count in counts.items()
        if count
    ]
    return "<br>".join(parts) if parts else "no cells in this tile"


def markers_summary(inspection: TileInspection) -> str:
    """One paragraph: tissue, epithelium, immune density, intraepithelial immune cells."""
    m = inspection.markers
    lines = [
        f"<b>{inspection.tile_id}</b>: {m.n_cells} cells ({inspection.cell_backend}, "
        f"{inspection.epithelium_method}), {inspection.seconds * 1000:.0f} ms",
        f"tissue {m.tissue_area_mm2:.4f} mm² · epithelium "
        f"{_number(m.epithelium_fraction * 100, 1)} % of tissue",
        f"immune cells {m.immune_count} ({_number(m.immune_density_per_mm2)} /mm²) · "
        f"intraepithelial {m.intraepithelial_immune_count} "
        f"({_number(m.intraepithelial_immune_density_per_mm2)} /mm² epithelium)",
    ]
    if inspection.score is not None:
        lines[0] += f" · tile score {inspection.score:.3f}"
    if inspection.flags:
        lines.append(f"<span style='color: #ff9800'>flags: {', '.join(inspection.flags)}</span>")
    return "<br>".join(lines)


class TileInspectorWidget(QWidget):
    """The Tile inspector dock widget (npe2 ``napari-imilia.tile_inspector``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.link = dock_viewer_link(napari_viewer)
        self.state = self.link.state
        self.inspections = self.state.inspections
        self.settings = self.state.inspect_settings
        self._build_ui()
        self.links = DockLinks(self)
        self.links.connect(self.state.session_changed, self._on_session_changed)
        self.links.connect(self.inspections.shown, self._on_shown)
        self.links.connect(self.inspections.status, self._on_status)
        self._on_session_changed(self.link.ensure_session())

    # ------------------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        s = self.settings
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(CELL_BACKENDS)
        self.backend_combo.setCurrentText(s.cell_backend)
        self.checkpoint_edit = QLineEdit(s.cell_checkpoint)
        self.checkpoint_edit.setPlaceholderText("CellViT checkpoint (.safetensors / .pt)")
        self.json_edit = QLineEdit(s.histoplus_json)
        self.json_edit.setPlaceholderText("HistoPLUS cell_masks.json of this slide")
        self.epithelium_combo = QComboBox()
        self.epithelium_combo.addItems(METHODS)
        self.epithelium_combo.setCurrentText(s.epithelium_method)
        self.probe_edit = QLineEdit(s.episeg_probe)
        self.probe_edit.setPlaceholderText("EpiSeg probe (.safetensors)")
        self.weights_edit = QLineEdit(s.episeg_extractor_weights)
        self.weights_edit.setPlaceholderText("weights of the probe's ViT extractor")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setCurrentText(s.device)
        self.auto_check = QCheckBox("inspect when a tile is selected")
        self.auto_check.setChecked(s.auto_inspect)
        self.inspect_button = QPushButton("Inspect selected tile")
        self.status_label = plain_label("select a tile: click it on the slide or in Top tiles")
        self.status_label.setWordWrap(True)
        self.summary_label = plain_label("")
        self.summary_label.setWordWrap(True)
        self.legend_label = QLabel("")
        self.markers_table = QTableWidget(0, len(MARKER_HEADERS))
        self.markers_table.setHorizontalHeaderLabels(MARKER_HEADERS)
        self.markers_table.verticalHeader().setVisible(False)

        settings = QWidget()
        form = QFormLayout(settings)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Cells", self.backend_combo)
        form.addRow("Checkpoint", self._with_browse(self.checkpoint_edit, "CellViT checkpoint"))
        form.addRow("HistoPLUS JSON", self._with_browse(self.json_edit, "HistoPLUS JSON"))
        form.addRow("Epithelium", self.epithelium_combo)
        form.addRow("EpiSeg probe", self._with_browse(self.probe_edit, "EpiSeg probe"))
        form.addRow("Extractor weights", self._with_browse(self.weights_edit, "ViT weights"))
        form.addRow("Device", self.device_combo)
        form.addRow("", self.auto_check)
        self.settings_section = FoldSection("Inspection settings", settings)
        layout = QVBoxLayout(scroll_content(self))
        layout.addWidget(self.inspect_button)
        layout.addWidget(self.status_label)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.legend_label)
        layout.addWidget(self.markers_table, 1)
        layout.addWidget(self.settings_section)
        self.census = CensusSection(self.link)  # the slide's census: run, density map, picks
        layout.addWidget(self.census)

        self.inspect_button.clicked.connect(lambda: self.inspect_tile())
        self.backend_combo.currentTextChanged.connect(self._update_enabled)
        self.epithelium_combo.currentTextChanged.connect(self._update_enabled)
        for combo in (self.backend_combo, self.epithelium_combo, self.device_combo):
            combo.currentTextChanged.connect(self._store_choices)
        for edit in (self.checkpoint_edit, self.json_edit, self.probe_edit, self.weights_edit):
            edit.editingFinished.connect(self._store_choices)
        self.auto_check.toggled.connect(self._store_choices)
        self._update_enabled()

    def _with_browse(self, edit: QLineEdit, title: str) -> QWidget:
        button = QPushButton("…")
        button.setMaximumWidth(32)
        button.clicked.connect(partial(self._browse, edit, title))
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        row.addWidget(button)
        return box

    def _browse(self, edit: QLineEdit, title: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, edit.text())
        if path:
            edit.setText(path)
            self._store_choices()

    def _update_enabled(self, *_: Any) -> None:
        backend = self.backend_combo.currentText()
        self.checkpoint_edit.setEnabled(backend == "cellvit")
        self.json_edit.setEnabled(backend == "histoplus-json")
        episeg = self.epithelium_combo.currentText() == "episeg"
        self.probe_edit.setEnabled(episeg)
        self.weights_edit.setEnabled(episeg)

    def _store_choices(self, *_: Any) -> InspectorSettings:
        """Make the dock's choices the viewer's inspection choices (remembered on disk)."""
        self.settings = InspectorSettings(
            cell_backend=self.backend_combo.currentText(),
            cell_checkpoint=self.checkpoint_edit.text().strip(),
            histoplus_json=self.json_edit.text().strip(),
            epithelium_method=self.epithelium_combo.currentText(),
            episeg_probe=self.probe_edit.text().strip(),
            episeg_extractor_weights=self.weights_edit.text().strip(),
            device=self.device_combo.currentText(),
            auto_inspect=self.auto_check.isChecked(),
        )
        if self.settings != self.state.inspect_settings:
            try:
                self.state.set_inspect_settings(self.settings)
            except OSError as error:
                notify("warning", f"could not remember the inspector settings: {error}")
        return self.settings

    def current_config(self) -> InspectConfig:
        """The choices in the dock as an ``InspectConfig`` (``ImiliaError`` if a file is
        missing); they become the viewer's choices."""
        return self._store_choices().to_config()

    # ------------------------------------------------------------------------- state
    @property
    def session(self) -> Any:
        return self.state.session

    @property
    def current(self) -> TileInspection | None:
        """The inspection shown on the canvas (the viewer state's)."""
        return self.inspections.current

    @property
    def worker(self) -> Any:
        """The inspection running now (the viewer state's), or None."""
        return self.inspections.worker

    def _on_session_changed(self, session: Any) -> None:
        self.links.connect_session(session, {"tile_selected": self._on_tile_selected})
        self._on_shown(self.inspections.current)
        # a dock opened late shows the selected tile's inspection the session already holds
        selected = None if session is None else session.selected_tile_id
        if selected is None or session.prediction is None:
            return
        shown = self.current is not None and self.current.tile_id == str(selected)
        cached = session.cached_inspection(selected) is not None
        if not shown and (self.auto_check.isChecked() or cached):
            self.inspect_tile(str(selected))

    def _on_tile_selected(self, tile_id: Any) -> None:
        if tile_id is not None and self.auto_check.isChecked():
            self.inspect_tile(str(tile_id))

    # ------------------------------------------------------------------------- inspecting
    def inspect_tile(self, tile_id: str | None = None) -> None:
        """Inspect ``tile_id`` (default: the selected tile) with the dock's choices."""
        self._store_choices()
        self.inspections.inspect(tile_id)

    # ------------------------------------------------------------------------- showing
    def _on_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_shown(self, inspection: TileInspection | None) -> None:
        if inspection is None:
            self.summary_label.setText("")
            self.legend_label.setText("")
            self.markers_table.setRowCount(0)
            return
        self.summary_label.setText(markers_summary(inspection))
        self.legend_label.setText(legend_html(inspection))
        self._fill_table(inspection)

    def _fill_table(self, inspection: TileInspection) -> None:
        m = inspection.markers
        rows = [
            (name, m.counts[name], m.densities_per_mm2[name], m.intraepithelial_counts.get(name))
            for name in m.counts
            if m.counts[name] or name in IMMUNE_CLASSES
        ]
        rows.append(
            (
                "Immune (total)",
                m.immune_count,
                m.immune_density_per_mm2,
                m.intraepithelial_immune_count,
            )
        )
        self.markers_table.setRowCount(len(rows))
        for r, (name, count, density, intra) in enumerate(rows):
            values = (name, str(count), _number(density), "" if intra is None else str(intra))
            for c, text in enumerate(values):
                self.markers_table.setItem(r, c, QTableWidgetItem(text))
        self.markers_table.resizeColumnsToContents()
