"""Tile inspector dock: cells, epithelium and markers of the selected tile, on the slide.

Selecting a tile (a click on the canvas, the Top tiles list, or this dock's *Inspect*
button) runs ``napari_imilia.interpret`` on it in a ``thread_worker`` (the viewer stays
responsive): cell detection and classification with the chosen backend (classical, CellViT
checkpoint, or an imported HistoPLUS JSON) and epithelium segmentation (stain heuristic or
EpiSeg probe). Results are cached in the session's bounded LRU (``store_inspection``);
selecting a cached tile shows it at once. Only the current tile's two Labels layers exist
(``_inspect_layers``): cells coloured by class with a legend here, and the translucent
epithelium. The dock lists the tile's markers: counts and densities per mm² per class, the
epithelium fraction and intraepithelial immune cells. Errors become napari notifications.
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

from napari_imilia._napari.docks.links import DockLinks, track_worker
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.inspect_settings import (
    InspectorSettings,
    load_inspector_settings,
    save_inspector_settings,
)
from napari_imilia._napari.layers.inspection import remove_inspection_layers, show_inspection
from napari_imilia._napari.link import link_viewer
from napari_imilia._napari.settings import DEVICES
from napari_imilia.errors import ImiliaError
from napari_imilia.interpret import CELL_BACKENDS, InspectConfig, InspectTools, TileInspection
from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS, IMMUNE_CLASSES
from napari_imilia.interpret.epithelium import METHODS

MARKER_HEADERS = ("class", "count", "per mm² tissue", "intraepithelial")


def inspect_in_thread(
    slide: Any, row: dict[str, Any], config: InspectConfig, tools: InspectTools | None
) -> tuple[InspectTools, TileInspection]:
    """Worker body: load the tools if needed, then inspect one tile."""
    tools = tools if tools is not None else InspectTools.load(config, slide)
    return tools, tools.inspect(slide, row)


def _notify(message: str, level: str = "info") -> None:
    from napari.utils.notifications import show_error, show_info, show_warning

    {"error": show_error, "warning": show_warning}.get(level, show_info)(message)


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
        self.settings = load_inspector_settings()
        self._session: Any = None
        self._tools: InspectTools | None = None
        self._tools_slide: Any = None
        self.worker: Any = None
        self._wanted: str | None = None
        self._running: str | None = None
        self.current: TileInspection | None = None
        self._build_ui()
        self.links = DockLinks(self)
        self.link = link_viewer(napari_viewer)
        self.links.connect(self.link.state.session_changed, self._on_session_changed)
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
        self.status_label = QLabel("select a tile: click it on the slide or in Top tiles")
        self.status_label.setWordWrap(True)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.legend_label = QLabel("")
        self.markers_table = QTableWidget(0, len(MARKER_HEADERS))
        self.markers_table.setHorizontalHeaderLabels(MARKER_HEADERS)
        self.markers_table.verticalHeader().setVisible(False)

        form = QFormLayout()
        form.addRow("Cells", self.backend_combo)
        form.addRow("Checkpoint", self._with_browse(self.checkpoint_edit, "CellViT checkpoint"))
        form.addRow("HistoPLUS JSON", self._with_browse(self.json_edit, "HistoPLUS JSON"))
        form.addRow("Epithelium", self.epithelium_combo)
        form.addRow("EpiSeg probe", self._with_browse(self.probe_edit, "EpiSeg probe"))
        form.addRow("Extractor weights", self._with_browse(self.weights_edit, "ViT weights"))
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(scroll_content(self))
        layout.addLayout(form)
        layout.addWidget(self.auto_check)
        layout.addWidget(self.inspect_button)
        layout.addWidget(self.status_label)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.legend_label)
        layout.addWidget(self.markers_table, 1)

        self.inspect_button.clicked.connect(lambda: self.inspect_tile())
        self.backend_combo.currentTextChanged.connect(self._update_enabled)
        self.epithelium_combo.currentTextChanged.connect(self._update_enabled)
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

    def _update_enabled(self, *_: Any) -> None:
        backend = self.backend_combo.currentText()
        self.checkpoint_edit.setEnabled(backend == "cellvit")
        self.json_edit.setEnabled(backend == "histoplus-json")
        episeg = self.epithelium_combo.currentText() == "episeg"
        self.probe_edit.setEnabled(episeg)
        self.weights_edit.setEnabled(episeg)

    def current_config(self) -> InspectConfig:
        """The choices in the dock as an ``InspectConfig`` (remembered on disk)."""
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
        try:
            save_inspector_settings(self.settings)
        except OSError as error:
            _notify(f"could not remember the inspector settings: {error}", "warning")
        return self.settings.to_config()

    # ------------------------------------------------------------------------- session
    @property
    def session(self) -> Any:
        return self.link.state.session

    def _on_session_changed(self, session: Any) -> None:
        self._session = session
        self._tools = None
        self._wanted = None
        self._clear()
        self.links.connect_session(
            session,
            {
                "tile_selected": self._on_tile_selected,
                "prediction_changed": self._on_prediction_changed,
            },
        )
        # a dock opened late shows the selected tile's inspection the session already holds
        selected = None if session is None else session.selected_tile_id
        known = selected is not None and session.prediction is not None
        cached = known and session.cached_inspection(selected) is not None
        if known and (self.auto_check.isChecked() or cached):
            self.inspect_tile(str(selected))

    def _on_prediction_changed(self, _result: Any) -> None:
        self._wanted = None
        self._clear()

    def _on_tile_selected(self, tile_id: Any) -> None:
        if tile_id is not None and self.auto_check.isChecked():
            self.inspect_tile(str(tile_id))

    def _clear(self) -> None:
        self.current = None
        remove_inspection_layers(self.viewer)
        self.summary_label.setText("")
        self.legend_label.setText("")
        self.markers_table.setRowCount(0)

    # ------------------------------------------------------------------------- inspecting
    def inspect_tile(self, tile_id: str | None = None) -> None:
        """Show the inspection of ``tile_id`` (default: the selected tile), from the cache
        when it was made with the current choices, else computed in a worker thread."""
        session = self.session
        if session is None or session.prediction is None:
            _notify("napari-imilia: open a slide and score it before inspecting tiles")
            return
        tile_id = tile_id or session.selected_tile_id
        if tile_id is None:
            _notify("napari-imilia: select a tile first (click it, or use Top tiles)")
            return
        try:
            config = self.current_config()
        except ImiliaError as error:
            _notify(f"napari-imilia: {error}", "error")
            return
        cached = session.cached_inspection(tile_id)
        if cached is not None and cached.config == config:
            self._wanted = tile_id
            self._show(cached)
            return
        self._wanted = tile_id
        if self.worker is None:
            self._start(session, tile_id, config)
        else:
            self.status_label.setText(f"tile {tile_id} queued after {self._running}")

    def _start(self, session: Any, tile_id: str, config: InspectConfig) -> None:
        from napari.qt.threading import thread_worker

        tools = self._tools
        if tools is None or tools.config != config or self._tools_slide is not session.slide:
            tools = None
        row = session.tile_row(tile_id).to_dict()
        # errors are shown by _on_error, not re-raised in the main thread
        worker = thread_worker(inspect_in_thread, start_thread=False, ignore_errors=True)(
            session.slide, row, config, tools
        )
        worker.returned.connect(partial(self._on_returned, session))
        worker.errored.connect(partial(self._on_error, tile_id))
        worker.finished.connect(self._on_finished)
        track_worker(worker)
        self.worker, self._running = worker, tile_id
        self.status_label.setText(f"inspecting tile {tile_id} ({config.cell_backend} cells)…")
        worker.start()

    def _on_returned(self, session: Any, outcome: tuple[InspectTools, TileInspection]) -> None:
        tools, inspection = outcome
        if session is not self.session or session.prediction is None:
            return
        self._tools, self._tools_slide = tools, session.slide
        session.store_inspection(inspection.tile_id, inspection)
        if inspection.tile_id == self._wanted:
            self._show(inspection)

    def _on_error(self, tile_id: str, error: BaseException) -> None:
        if isinstance(error, ImiliaError):
            message = f"napari-imilia: cannot inspect tile {tile_id}: {error}"
        else:
            message = (
                f"napari-imilia: inspecting tile {tile_id} failed ({type(error).__name__}: {error})"
            )
        self.status_label.setText(message)
        if self._wanted == tile_id:
            self._wanted = None
        _notify(message, "error")

    def _on_finished(self) -> None:
        self.worker, finished = None, self._running
        self._running = None
        wanted = self._wanted
        if wanted is not None and wanted != finished:
            self.inspect_tile(wanted)

    # ------------------------------------------------------------------------- showing
    def _show(self, inspection: TileInspection) -> None:
        session = self.session
        show_inspection(self.viewer, session, inspection)
        self.current = inspection
        self.status_label.setText(f"tile {inspection.tile_id} inspected")
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

    def closeEvent(self, event: Any) -> None:
        if self.worker is not None:
            self.worker.quit()
        super().closeEvent(event)
