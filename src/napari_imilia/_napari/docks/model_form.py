"""The model half of the Slide and model panel: checkpoint, extractor, device, MPP, tile size,
results folder. It edits a :class:`~napari_imilia._napari.settings.PanelSettings` and makes
the :class:`~napari_imilia._napari.inference.InferenceRequest` of a Run.

The extractor list and the model's description need torch (seconds to import), so the form
appears at once with the saved choice and fills them once the event loop has shown it
(``choices_loaded`` once done)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QWidget,
)

from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.inference import read_model_summary
from napari_imilia._napari.settings import DEVICES, PanelSettings
from napari_imilia.errors import ImiliaError

MODEL_OWN_EXTRACTOR = "the model's own"
MODEL_FILTER = "MIL checkpoints (*.safetensors *.pt *.pth);;All files (*)"


def _read_extractors() -> list[tuple[str, str]]:
    """(name, description) of the extractors; imports torch."""
    from napari_imilia.features.extractors import list_extractors

    return list_extractors()


def _row(*widgets: QWidget) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


class ModelForm(QWidget):
    """Model choices; ``changed`` is emitted after any edit (the panel saves settings)."""

    changed = Signal()
    results_root_changed = Signal(str)

    def __init__(self, settings: PanelSettings) -> None:
        super().__init__()
        self.choices_loaded = False
        self.model_edit = QLineEdit(settings.model_path)
        self.model_edit.setPlaceholderText("empty: the bundled DEMO model")
        self.model_file_button = QPushButton("File…")
        self.model_folder_button = QPushButton("Folder…")
        self.model_label = plain_label("")
        self.model_label.setWordWrap(True)
        self.model_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.extractor_combo = QComboBox()
        self.extractor_combo.addItem(MODEL_OWN_EXTRACTOR, "")
        if settings.extractor:  # until the list is read: the saved choice
            self.extractor_combo.addItem(settings.extractor, settings.extractor)
            self.extractor_combo.setCurrentIndex(1)
        self.weights_edit = QLineEdit(settings.extractor_weights)
        self.weights_edit.setPlaceholderText("local weights file (ViT extractors)")
        self.weights_button = QPushButton("…")
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.device_combo.setCurrentText(settings.device)
        self.mpp_spin = QDoubleSpinBox()
        self.mpp_spin.setRange(0.0, 20.0)
        self.mpp_spin.setDecimals(3)
        self.mpp_spin.setSingleStep(0.25)
        self.mpp_spin.setSpecialValueText("model's")
        self.mpp_spin.setSuffix(" µm/px")
        self.mpp_spin.setValue(settings.target_mpp)
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 4096)
        self.tile_spin.setSingleStep(32)
        self.tile_spin.setSpecialValueText("model's")
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setValue(settings.tile_px)
        self.results_edit = QLineEdit(settings.results_root)
        self.results_edit.setPlaceholderText("default results folder")
        self.results_button = QPushButton("…")

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(
            "MIL model", _row(self.model_edit, self.model_file_button, self.model_folder_button)
        )
        form.addRow(self.model_label)
        form.addRow("extractor", self.extractor_combo)
        form.addRow("weights", _row(self.weights_edit, self.weights_button))
        form.addRow("device", self.device_combo)
        form.addRow("target MPP", self.mpp_spin)
        form.addRow("tile size", self.tile_spin)
        form.addRow("results", _row(self.results_edit, self.results_button))

        self.model_edit.editingFinished.connect(self._on_model_edited)
        self.model_file_button.clicked.connect(self._choose_model_file)
        self.model_folder_button.clicked.connect(self._choose_model_folder)
        self.weights_button.clicked.connect(self._choose_weights)
        self.results_button.clicked.connect(self._choose_results)
        self.results_edit.editingFinished.connect(self._on_results_edited)
        self.weights_edit.editingFinished.connect(self.changed.emit)
        self.extractor_combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.device_combo.currentIndexChanged.connect(lambda *_: self.changed.emit())
        self.mpp_spin.valueChanged.connect(lambda *_: self.changed.emit())
        self.tile_spin.valueChanged.connect(lambda *_: self.changed.emit())
        self.model_label.setText("reading the model…")
        self._load_choices()

    def _load_choices(self) -> None:
        """Read the extractor list (and so import torch) once the dock is on screen: in the
        UI thread, after the event loop has shown the dock (a worker thread importing torch
        while Qt 6 lays out docks crashed napari)."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: self._on_extractors(_read_extractors()))

    def _on_extractors(self, extractors: list[tuple[str, str]]) -> None:
        """Fill the extractor list (keeping the choice) and describe the model."""
        current = str(self.extractor_combo.currentData() or "")
        combo = self.extractor_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(MODEL_OWN_EXTRACTOR, "")
        for name, description in extractors:
            combo.addItem(name, name)
            combo.setItemData(combo.count() - 1, description, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(max(combo.findData(current), 0))
        combo.blockSignals(False)
        self.choices_loaded = True
        self.update_model_label()

    # ------------------------------------------------------------------------- values
    def store(self, settings: PanelSettings) -> None:
        """Copy the form's values into ``settings``."""
        settings.model_path = self.model_edit.text().strip()
        settings.extractor = str(self.extractor_combo.currentData() or "")
        settings.extractor_weights = self.weights_edit.text().strip()
        settings.device = self.device_combo.currentText()
        settings.target_mpp = float(self.mpp_spin.value())
        settings.tile_px = int(self.tile_spin.value())
        settings.results_root = self.results_edit.text().strip()

    def set_model_path(self, path: str) -> None:
        self.model_edit.setText(path)
        self._on_model_edited()

    def set_results_root(self, path: str) -> None:
        self.results_edit.setText(path)
        self._on_results_edited()

    def update_model_label(self) -> bool:
        """Describe the chosen checkpoint (DEMO MODEL in red); False when it cannot be read."""
        try:
            summary = read_model_summary(self.model_edit.text())
        except ImiliaError as error:
            self.model_label.setStyleSheet("color: #ff5050;")
            self._set_model_text(str(error))
            return False
        self.model_label.setStyleSheet("color: #ff5050; font-weight: bold;" if summary.demo else "")
        self._set_model_text(summary.describe())
        return True

    def _set_model_text(self, text: str) -> None:
        """Show ``text`` with room for all its lines (wrapped labels get squeezed in docks)."""
        self.model_label.setText(text)
        lines = text.count("\n") + 1
        self.model_label.setMinimumHeight(lines * self.model_label.fontMetrics().lineSpacing() + 4)

    # ------------------------------------------------------------------------- slots
    def _on_model_edited(self) -> None:
        self.update_model_label()
        self.changed.emit()

    def _on_results_edited(self) -> None:
        self.changed.emit()
        self.results_root_changed.emit(self.results_edit.text().strip())

    def _choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "MIL model checkpoint", "", MODEL_FILTER)
        if path:
            self.set_model_path(path)

    def _choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of MIL checkpoints (folds)")
        if path:
            self.set_model_path(path)

    def _choose_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Extractor weights", "", MODEL_FILTER)
        if path:
            self.weights_edit.setText(path)
            self.changed.emit()

    def _choose_results(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Results folder", self._results_start())
        if path:
            self.set_results_root(path)

    def _results_start(self) -> str:
        text = self.results_edit.text().strip()
        return text if text and Path(text).is_dir() else ""

    def request_values(self) -> dict[str, Any]:
        """Keyword values for an ``InferenceRequest`` (model, extractor, device, MPP, tile)."""
        return {
            "model_path": self.model_edit.text().strip(),
            "extractor": str(self.extractor_combo.currentData() or ""),
            "extractor_weights": self.weights_edit.text().strip(),
            "device": self.device_combo.currentText(),
            "target_mpp": float(self.mpp_spin.value()) or None,
            "tile_px": int(self.tile_spin.value()) or None,
        }
