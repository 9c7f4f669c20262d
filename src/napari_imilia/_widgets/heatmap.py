"""Heatmap dock: the session's per-tile scores as one Image layer on the slide.

The heatmap layer (role ``heatmap``) is the tile grid (one pixel per tile, NaN where there
is no tile, which napari draws transparent) placed by ``ScoreGrid.napari_placement``: its
scale is the tile step in µm and its translate puts each pixel's centre on its tile's
centre, so it sits exactly on the slide at every zoom. The panel chooses the values (tile
score or attention), raw or rank-normalised (0 = lowest, 1 = highest), a threshold below
which tiles are hidden, the colormap and the opacity; it shows the slide score with the
model's name, short hash and a DEMO flag.

The tile table (tile_id, x, y, width, height in level-0 px, tissue_fraction, score, rank,
attention...) is exposed as ``layer.features`` of a hidden **Points** layer (role
``tile_table``) with one point per tile centre, for other napari tools to read; Points are
used rather than Shapes because thousands of points stay cheap to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
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

from napari_imilia._widgets._dock_scroll import scroll_content
from napari_imilia._widgets._state import LAYER_ROLE_KEY, layers_with_role
from napari_imilia._widgets._viewer_link import (
    add_layer_keeping_selection,
    link_viewer,
    remove_role_layers,
    world_layer_kwargs,
    world_um_per_px,
)
from napari_imilia.heatmap import ScoreGrid, rank_normalise, score_grid

HEATMAP_ROLE = "heatmap"
TILE_TABLE_ROLE = "tile_table"
COLORMAPS: tuple[str, ...] = ("inferno", "viridis", "magma", "plasma", "turbo", "hot")
VALUE_COLUMNS: dict[str, str] = {"tile score": "score", "attention": "attention"}
DEFAULT_OPACITY = 0.55
NO_PREDICTION_TEXT = "no prediction yet: run the model in the Slide and model panel"


@dataclass(frozen=True)
class HeatmapOptions:
    """What the heatmap shows: ``column`` of the tile table, rank-normalised or raw, and the
    value (in the shown units) below which tiles are hidden (None: show all)."""

    column: str = "score"
    rank_normalised: bool = False
    threshold: float | None = None


@dataclass(frozen=True)
class HeatmapImage:
    """Values to show (NaN = hidden), their full range before thresholding, and the grid."""

    values: np.ndarray
    value_range: tuple[float, float]
    grid: ScoreGrid


def heatmap_image(tiles: pd.DataFrame, options: HeatmapOptions) -> HeatmapImage:
    """The heatmap's pixels for ``options`` (float32, NaN where no tile or below threshold)."""
    grid = score_grid(tiles, options.column)
    values = grid.values.astype(np.float64)
    if options.rank_normalised:
        values = rank_normalise(values)
        low, high = 0.0, 1.0
    else:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if high <= low:
        high = low + 1e-6
    if options.threshold is not None:
        values = np.where(values >= options.threshold, values, np.nan)
    return HeatmapImage(values.astype(np.float32), (low, high), grid)


def tile_table_points(tiles: pd.DataFrame) -> np.ndarray:
    """(N, 2) tile centres in level-0 pixel (row, col) coordinates."""
    rows = tiles["y"].to_numpy(np.float64) + (tiles["height"].to_numpy(np.float64) - 1) / 2
    cols = tiles["x"].to_numpy(np.float64) + (tiles["width"].to_numpy(np.float64) - 1) / 2
    return np.stack([rows, cols], axis=1)


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
        self._session: Any = None
        self._build_ui()
        self.link = link_viewer(napari_viewer)
        self.link.state.session_changed.connect(self._on_session_changed)
        self._on_session_changed(self.link.ensure_session())

    # ------------------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        self.score_label = QLabel(NO_PREDICTION_TEXT)
        self.score_label.setWordWrap(True)
        font = self.score_label.font()
        font.setPointSize(font.pointSize() + 5)
        font.setBold(True)
        self.score_label.setFont(font)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.demo_label = QLabel("")
        self.demo_label.setStyleSheet("color: #ff5050; font-weight: bold;")
        self.values_combo = QComboBox()
        self.values_combo.addItems(list(VALUE_COLUMNS))
        self.rank_check = QCheckBox("rank-normalised (0 = lowest tile, 1 = highest)")
        self.threshold_check = QCheckBox("hide tiles below")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setEnabled(False)
        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(list(COLORMAPS))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(DEFAULT_OPACITY * 100))
        form = QFormLayout()
        form.addRow("values", self.values_combo)
        form.addRow("", self.rank_check)
        form.addRow(self.threshold_check, self.threshold_spin)
        form.addRow("colormap", self.colormap_combo)
        form.addRow("opacity", self.opacity_slider)
        layout = QVBoxLayout(scroll_content(self))
        for widget in (self.score_label, self.demo_label, self.model_label):
            layout.addWidget(widget)
        layout.addLayout(form)
        layout.addStretch(1)
        self.values_combo.currentIndexChanged.connect(self._on_values_changed)
        self.rank_check.toggled.connect(self._on_values_changed)
        self.threshold_check.toggled.connect(self._on_threshold_toggled)
        self.threshold_spin.valueChanged.connect(self.refresh_image)
        self.colormap_combo.currentTextChanged.connect(self._apply_look)
        self.opacity_slider.valueChanged.connect(self._apply_look)

    # ------------------------------------------------------------------------- state
    @property
    def session(self) -> Any:
        return self.link.state.session

    def options(self) -> HeatmapOptions:
        """The options the panel's controls say now."""
        column = VALUE_COLUMNS[self.values_combo.currentText()]
        threshold = self.threshold_spin.value() if self.threshold_check.isChecked() else None
        return HeatmapOptions(column, self.rank_check.isChecked(), threshold)

    def heatmap_layer(self) -> Any | None:
        layers = layers_with_role(self.viewer, HEATMAP_ROLE)
        return layers[0] if layers else None

    def tile_table_layer(self) -> Any | None:
        layers = layers_with_role(self.viewer, TILE_TABLE_ROLE)
        return layers[0] if layers else None

    def _on_session_changed(self, session: Any) -> None:
        if self._session is not None:
            self._session.prediction_changed.disconnect(self._on_prediction_changed)
        self._session = session
        if session is not None:
            session.prediction_changed.connect(self._on_prediction_changed)
        self._on_prediction_changed(None if session is None else session.prediction)

    def _on_prediction_changed(self, result: Any) -> None:
        if result is None:
            remove_role_layers(self.viewer, HEATMAP_ROLE)
            remove_role_layers(self.viewer, TILE_TABLE_ROLE)
            self.score_label.setText(NO_PREDICTION_TEXT)
            self.model_label.setText("")
            self.demo_label.setText("")
            return
        has_attention = "attention" in result.tiles.columns
        item = self.values_combo.model().item(1)
        item.setEnabled(has_attention)
        if not has_attention and self.values_combo.currentIndex() == 1:
            self.values_combo.setCurrentIndex(0)
        info = result.info
        self.score_label.setText(f"Slide score {result.score:.4f}  ({result.slide_id})")
        self.model_label.setText(model_caption(info))
        demo = bool(info.get("model_is_demo"))
        self.demo_label.setText("DEMO MODEL: not for diagnosis" if demo else "")
        self._update_threshold_range()
        self.refresh_image()
        self._update_tile_table(result.tiles)

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
        """Recompute the heatmap pixels from the session's tiles and the panel's options."""
        session = self.session
        if session is None or session.prediction is None:
            return
        options = self.options()
        if options.column not in session.tiles.columns:
            options = HeatmapOptions("score", options.rank_normalised, options.threshold)
        image = heatmap_image(session.tiles, options)
        placement = image.grid.napari_placement(world_um_per_px(self.viewer, session))
        units = world_layer_kwargs(self.viewer, session).get("units")
        layer = self.heatmap_layer()
        name = f"{session.slide_id} heatmap ({options.column})"
        if layer is None:
            from napari.layers import Image

            layer = Image(
                image.values,
                name=name,
                colormap=self.colormap_combo.currentText(),
                contrast_limits=image.value_range,
                opacity=self.opacity_slider.value() / 100,
                interpolation2d="nearest",
                metadata={LAYER_ROLE_KEY: HEATMAP_ROLE},
                **placement,
                **({} if units is None else {"units": units}),
            )
            add_layer_keeping_selection(self.viewer, layer)
        else:
            layer.data = image.values
            layer.scale = placement["scale"]
            layer.translate = placement["translate"]
            layer.contrast_limits_range = image.value_range
            layer.contrast_limits = image.value_range
            layer.name = name
        layer.metadata["heatmap_options"] = options
        self._apply_look()

    def _apply_look(self, *_: Any) -> None:
        layer = self.heatmap_layer()
        if layer is not None:
            layer.colormap = self.colormap_combo.currentText()
            layer.opacity = self.opacity_slider.value() / 100

    def _update_tile_table(self, tiles: pd.DataFrame) -> None:
        session = self.session
        placement = world_layer_kwargs(self.viewer, session)
        features = tiles.reset_index(drop=True)
        layer = self.tile_table_layer()
        if layer is None:
            from napari.layers import Points

            layer = Points(
                tile_table_points(tiles),
                features=features,
                name=f"{session.slide_id} tiles (table)",
                size=max(float(tiles["width"].iloc[0]) * 0.15, 1.0),
                face_color="white",
                visible=False,
                metadata={LAYER_ROLE_KEY: TILE_TABLE_ROLE},
                **placement,
            )
            add_layer_keeping_selection(self.viewer, layer)
        else:
            layer.data = tile_table_points(tiles)
            layer.features = features
            layer.scale = placement["scale"]
