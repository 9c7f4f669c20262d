"""Heatmap dock: how the session's result is shown on the slide.

The heatmap layer itself, its colorbar and caption, and the tile table layer are made by
the viewer link's ``layers.heatmap.HeatmapLayers`` as soon as a result exists, whatever
docks are open; this dock only changes what they show and how: the values (tile score,
attention, each channel of a multi-channel model, or the tiles that drive the score: the
extremes each channel selects, red where they push the slide score up, blue down), raw or
rank-normalised (0 = lowest, 1 = highest), a threshold below which tiles are hidden, the
colour scale (fixed for the model, the same on every slide, or this slide's range), the
colormap, the opacity and the canvas corner of the colour bar and its caption. It shows the
slide score with the model's name, short hash and a DEMO flag.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.text import plain_label
from napari_imilia._napari.layers.heatmap import (
    CORNERS,
    DEFAULT_COLORMAP,
    DRIVE_COLUMN,
    HeatmapImage,
    HeatmapOptions,
    heatmap_image,
    tile_table_points,
)
from napari_imilia._napari.layers.heatmap_values import SCALE_CHOICES
from napari_imilia._napari.roles import HEATMAP_ROLE, TILE_TABLE_ROLE
from napari_imilia.mil.channels import SCORE_PREFIX, channel_labels

__all__ = [
    "HEATMAP_ROLE",
    "TILE_TABLE_ROLE",
    "HeatmapImage",
    "HeatmapOptions",
    "HeatmapWidget",
    "heatmap_image",
    "tile_table_points",
]

COLORMAPS: tuple[str, ...] = (DEFAULT_COLORMAP, "viridis", "magma", "plasma", "turbo", "hot")
VALUE_COLUMNS: dict[str, str] = {"tile score": "score", "attention": "attention"}
DRIVERS_TEXT = "tiles that drive the score"
NO_PREDICTION_TEXT = "no prediction yet: run the model in the Slide and model panel"


def value_choices(tiles: Any, info: dict[str, Any]) -> dict[str, str]:
    """Combo text -> tile-table column for a result: tile score, attention when present,
    one entry per channel (with its polarity) and the drivers when the model has channels."""
    choices = {"tile score": "score"}
    if "attention" in tiles.columns:
        choices["attention"] = "attention"
    polarity = {str(c.get("label")): c.get("polarity") for c in info.get("channels") or []}
    for label in channel_labels(tiles, info):
        sign = {1: "+", -1: "−", 0: "0"}.get(polarity.get(label), "?")
        choices[f"channel {label} (polarity {sign})"] = SCORE_PREFIX + label
    if DRIVE_COLUMN in tiles.columns and "extreme_channels" in tiles.columns:
        choices[DRIVERS_TEXT] = DRIVE_COLUMN
    return choices


def model_caption(info: dict[str, Any]) -> str:
    """``model name · sha 1a2b3c4d5e6f`` (and the DEMO flag) from a result's ``slide.json``."""
    sha = str(info.get("model_sha256") or "")[:12] or "unknown"
    demo = " · DEMO MODEL (not for diagnosis)" if info.get("model_is_demo") else ""
    return f"{info.get('model', 'unknown model')} · sha {sha} · {info.get('extractor', '')}{demo}"


class HeatmapWidget(QWidget):
    """The Heatmap dock widget (npe2 ``napari-imilia.heatmap``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._choices: dict[str, str] = dict(VALUE_COLUMNS)
        self.link = dock_viewer_link(napari_viewer)
        self.layers = self.link.heatmap
        self._build_ui()
        self._links = DockLinks(self)
        self._links.connect(self.link.state.session_changed, self._on_session_changed)
        self._links.connect(self.layers.options_changed, self._show_options)
        self._on_session_changed(self.link.ensure_session())

    # ------------------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        self.score_label = plain_label(NO_PREDICTION_TEXT)
        self.score_label.setWordWrap(True)
        font = self.score_label.font()
        font.setPointSize(font.pointSize() + 5)
        font.setBold(True)
        self.score_label.setFont(font)
        self.model_label = plain_label("")
        self.model_label.setWordWrap(True)
        self.demo_label = QLabel("")
        self.demo_label.setStyleSheet("color: #ff5050; font-weight: bold;")
        self.values_combo = QComboBox()
        self.values_combo.addItems(list(self._choices))
        self.rank_check = QCheckBox("rank-normalised (0 = lowest tile, 1 = highest)")
        self.threshold_check = QCheckBox("hide tiles below")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setEnabled(False)
        self.scale_combo = QComboBox()
        for text, scale in SCALE_CHOICES.items():
            self.scale_combo.addItem(text, scale)
        self.scale_combo.setToolTip(
            "fixed: the cohort's scale (its slides scored by this model), else the model's "
            "reference; the middle colour is a tile that pushes the slide neither way"
        )
        for combo in (self.values_combo, self.scale_combo):  # long items: shown elided
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(14)
        self.corner_combo = QComboBox()
        for corner in CORNERS:
            self.corner_combo.addItem(corner.replace("_", " "), corner)
        self.corner_combo.setCurrentIndex(CORNERS.index(self.layers.corner))
        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(list(COLORMAPS))
        self.colormap_combo.setCurrentText(self.layers.colormap)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.layers.opacity * 100))
        form = QFormLayout()
        form.addRow("values", self.values_combo)
        form.addRow("", self.rank_check)
        form.addRow(self.threshold_check, self.threshold_spin)
        form.addRow("colours", self.scale_combo)
        form.addRow("colormap", self.colormap_combo)
        form.addRow("opacity", self.opacity_slider)
        form.addRow("colour bar at", self.corner_combo)
        layout = QVBoxLayout(scroll_content(self))
        for widget in (self.score_label, self.demo_label, self.model_label):
            layout.addWidget(widget)
        layout.addLayout(form)
        layout.addStretch(1)
        self.values_combo.currentIndexChanged.connect(self._on_values_changed)
        self.rank_check.toggled.connect(self._on_values_changed)
        self.threshold_check.toggled.connect(self._on_threshold_toggled)
        self.threshold_spin.valueChanged.connect(self.refresh_image)
        self.scale_combo.currentIndexChanged.connect(self.refresh_image)
        self.corner_combo.currentIndexChanged.connect(self._apply_look)
        self.colormap_combo.currentTextChanged.connect(self._apply_look)
        self.opacity_slider.valueChanged.connect(self._apply_look)

    # ------------------------------------------------------------------------- state
    @property
    def session(self) -> Any:
        return self.link.state.session

    def options(self) -> HeatmapOptions:
        """The options the panel's controls say now."""
        column = self._choices.get(self.values_combo.currentText(), "score")
        threshold = self.threshold_spin.value() if self.threshold_check.isChecked() else None
        scale = self.scale_combo.currentData()
        return HeatmapOptions(column, self.rank_check.isChecked(), threshold, scale)

    def value_choices(self) -> dict[str, str]:
        """The values the panel offers now: combo text -> tile-table column."""
        return dict(self._choices)

    def heatmap_layer(self) -> Any | None:
        return self.layers.heatmap_layer()

    def tile_table_layer(self) -> Any | None:
        return self.layers.tile_table_layer()

    def _on_session_changed(self, session: Any) -> None:
        self._links.connect_session(session, {"prediction_changed": self._on_prediction_changed})
        self._on_prediction_changed(None if session is None else session.prediction)

    def _on_prediction_changed(self, result: Any) -> None:
        if result is None:
            session = self.link.state.session
            withheld = "" if session is None else session.withheld_reason
            self.score_label.setText(withheld or NO_PREDICTION_TEXT)
            self.model_label.setText("")
            self.demo_label.setText("")
            return
        info = result.info
        self._choices = value_choices(result.tiles, info)
        self._show_options(self.layers.options)
        self.score_label.setText(f"Slide score {result.score:.4f}  ({result.slide_id})")
        self.model_label.setText(model_caption(info))
        demo = bool(info.get("model_is_demo"))
        self.demo_label.setText("DEMO MODEL: not for diagnosis" if demo else "")

    def _show_options(self, options: HeatmapOptions) -> None:
        """Make the controls say ``options`` (the heatmap's), without feeding them back."""
        widgets = (self.values_combo, self.rank_check, self.threshold_check, self.scale_combo)
        for widget in widgets:
            widget.blockSignals(True)
        self.values_combo.clear()
        self.values_combo.addItems(list(self._choices))
        for text, column in self._choices.items():
            if column == options.column:
                self.values_combo.setCurrentText(text)
        self.rank_check.setChecked(options.rank_normalised)
        self.scale_combo.setCurrentIndex(max(self.scale_combo.findData(options.scale), 0))
        self.threshold_check.setChecked(options.threshold is not None)
        self.threshold_spin.setEnabled(options.threshold is not None)
        for widget in widgets:
            widget.blockSignals(False)
        self._update_threshold_range()

    def _on_values_changed(self, *_: Any) -> None:
        self._update_threshold_range()
        self.refresh_image()

    def _on_threshold_toggled(self, checked: bool) -> None:
        self.threshold_spin.setEnabled(checked)
        self.refresh_image()

    def _update_threshold_range(self) -> None:
        session = self.session
        if session is None or session.prediction is None:
            return
        options = HeatmapOptions(self.options().column, self.rank_check.isChecked())
        if options.column not in session.tiles.columns:
            return
        low, high = heatmap_image(session.tiles, options).value_range
        self.threshold_spin.blockSignals(True)
        self.threshold_spin.setRange(low, high)
        self.threshold_spin.setSingleStep(max((high - low) / 100, 1e-4))
        self.threshold_spin.blockSignals(False)

    # ------------------------------------------------------------------------- layers
    def refresh_image(self, *_: Any) -> None:
        """Show what the controls say (the heatmap redraws at once when a result exists)."""
        self.layers.show(self.options())

    def _apply_look(self, *_: Any) -> None:
        self.layers.show(
            colormap=self.colormap_combo.currentText(),
            opacity=self.opacity_slider.value() / 100,
            corner=self.corner_combo.currentData(),
        )
