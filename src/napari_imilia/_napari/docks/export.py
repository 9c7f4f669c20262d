"""Export / import dock: the slide's results to QuPath GeoJSON and CSV, QuPath files back in.

*Export* writes ``export_review_bundle`` into the chosen folder (default: the slide's
results folder ``export/``): tiles, cells and epithelium of inspected tiles, the review as
annotations, and CSV tables of tiles, markers and reviews, all in level-0 pixels and each
carrying model name and hash, extractor, µm/px and software version. *Import GeoJSON…*
opens a QuPath (or napari-imilia) GeoJSON file as a Shapes layer on the open slide, with
classification, name and measurements in ``layer.features``; a malformed file or one whose
coordinates do not fit the slide gives an error notification and no layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.geojson_reader import geojson_layer_data, placement_of_slide
from napari_imilia._napari.notify import notify
from napari_imilia.errors import ImiliaError
from napari_imilia.review.bundle import COMPRESSION_SUFFIXES, export_review_bundle

COMPRESSION_LABELS: dict[str, str] = {
    "none": ".geojson (QuPath)",
    "zip": ".geojson.zip (QuPath, smaller)",
    "gzip": ".geojson.gz (not read by QuPath)",
}


class ExportPanel(QWidget):
    """The Export / import dock widget (npe2 ``napari-imilia.export_panel``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.last_written: list[Path] = []
        self._build_ui()
        self.link = dock_viewer_link(napari_viewer)
        self.links = DockLinks(self)
        self.links.connect(self.link.state.session_changed, self._on_session_changed)
        self._on_session_changed(self.link.ensure_session())

    def _build_ui(self) -> None:
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("export folder (default: results folder/export)")
        browse = QPushButton("…")
        browse.setToolTip("Choose the export folder")
        browse.clicked.connect(self._choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        self.compression_combo = QComboBox()
        for key in COMPRESSION_SUFFIXES:
            self.compression_combo.addItem(COMPRESSION_LABELS[key], key)
        form = QFormLayout()
        form.addRow("Folder", folder_row)
        form.addRow("GeoJSON", self.compression_combo)
        self.export_button = QPushButton("Export to QuPath GeoJSON + CSV")
        self.import_button = QPushButton("Import GeoJSON…")
        self.status_label = plain_label("")
        self.status_label.setWordWrap(True)
        layout = QVBoxLayout(scroll_content(self))
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.import_button)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.export_button.clicked.connect(lambda _=False: self.export())
        self.import_button.clicked.connect(self._choose_import)

    @property
    def session(self) -> Any:
        return self.link.state.session

    def _on_session_changed(self, session: Any) -> None:
        self.export_button.setEnabled(session is not None)
        self.status_label.setText(
            "No slide open" if session is None else f"Slide {session.slide_id}"
        )

    def export_folder(self) -> Path | None:
        """The folder typed in, else ``<results folder>/export`` of the session."""
        text = self.folder_edit.text().strip()
        if text:
            return Path(text).expanduser()
        return None if self.session is None else self.session.results_dir / "export"

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Export folder", str(self.export_folder() or "")
        )
        if folder:
            self.folder_edit.setText(folder)

    def export(self) -> list[Path]:
        """Write the bundle; returns the files written (empty after an error notification)."""
        session = self.session
        if session is None:
            notify("warning", "open a slide before exporting")
            return []
        folder = self.export_folder()
        compression = self.compression_combo.currentData()
        try:
            written = export_review_bundle(session, folder, compression=compression)
        except (ImiliaError, OSError) as error:
            notify("error", f"export failed: {error}")
            return []
        self.last_written = written
        names = "\n".join(p.name for p in written)
        self.status_label.setText(f"Wrote {len(written)} files to {folder}:\n{names}")
        notify("info", f"exported {len(written)} files to {folder}")
        return written

    def _choose_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import GeoJSON",
            "",
            "GeoJSON (*.geojson *.json *.geojson.gz *.geojson.zip *.zip)",
        )
        if path:
            self.import_geojson(path)

    def import_geojson(self, path: str | Path) -> Any | None:
        """Add the file's objects as a Shapes layer on the open slide; returns the layer, or
        None after an error notification."""
        session = self.session
        placement = None if session is None else placement_of_slide(session.slide)
        try:
            data, kwargs, _ = geojson_layer_data(path, placement)
        except ImiliaError as error:
            notify("error", f"cannot import {Path(path).name}: {error}")
            return None
        for note in kwargs["metadata"]["imilia_import_notes"]:
            notify("warning", note)
        layer = self.viewer.add_shapes(data, **kwargs)
        self.status_label.setText(f"Imported {layer.nshapes} shapes from {Path(path).name}")
        return layer
