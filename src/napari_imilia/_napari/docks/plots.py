"""Plots dock: the slide's tile-score distribution and a marker against score (matplotlib).

Left: histogram of every tile's score (the session's prediction), with the selected tile as
a line and inspected tiles as ticks. Right: the chosen marker (a density per mm², the
epithelium fraction, intraepithelial densities) against the tile score for every inspected
tile, with Spearman's rho (IMILIA's interpretability check: immune densities rise with the
score). Inspected tiles are those the tile inspector computed in this session (including
those inspected before the dock was opened: the session's cache) plus any
``markers.csv`` that ``imilia inspect`` wrote into the slide's results folder. Scores are
always read from the session; only the small marker rows are kept here. Redrawn on
``prediction_changed``, ``tile_inspected`` and ``tile_selected``.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QComboBox, QFormLayout, QSizePolicy, QVBoxLayout, QWidget

from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.text import plain_label
from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.cells.types import IMMUNE_CLASSES
from napari_imilia.interpret.markers import MARKER_CLASSES, column_key
from napari_imilia.trust.results import read_results_bytes

DEFAULT_MARKER = "density_per_mm2_immune"
HISTOGRAM_BINS = 30
CANVAS_MIN_HEIGHT_PX = 220


def plot_markers() -> list[tuple[str, str]]:
    """(column, label) of the markers the scatter can show, immune ones first."""
    immune = [f"density_per_mm2_{column_key(c)}" for c in IMMUNE_CLASSES]
    others = [f"density_per_mm2_{column_key(c)}" for c in MARKER_CLASSES if c not in IMMUNE_CLASSES]
    intra = [f"intraepithelial_density_per_mm2_{column_key(c)}" for c in IMMUNE_CLASSES]
    columns = [
        DEFAULT_MARKER,
        *immune,
        "epithelium_fraction",
        "intraepithelial_density_per_mm2_immune",
        *intra,
        *others,
    ]

    def label(column: str) -> str:
        if column == "epithelium_fraction":
            return "epithelium fraction of tissue"
        name = column.replace("intraepithelial_density_per_mm2_", "intraepithelial ")
        name = name.replace("density_per_mm2_", "").replace("_", " ")
        unit = "/mm² epithelium" if column.startswith("intraepithelial") else "/mm² tissue"
        return f"{name} {unit}"

    return [(c, label(c)) for c in columns]


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho over finite pairs; NaN with fewer than 3 or a constant side."""
    from scipy.stats import spearmanr

    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


class PlotsWidget(QWidget):
    """The Plots dock widget (npe2 ``napari-imilia.plots``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._session: Any = None
        self.markers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.marker_combo = QComboBox()
        for column, label in plot_markers():
            self.marker_combo.addItem(label, column)
        self.info_label = plain_label("no prediction yet")
        self.figure = Figure(figsize=(7.0, 3.2), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        # Expanding: napari then adds no stretch under the dock, so the plots get its height
        policy = QSizePolicy.Policy.Expanding
        self.canvas.setSizePolicy(policy, policy)
        self.canvas.setMinimumHeight(CANVAS_MIN_HEIGHT_PX)
        self._draw_pending = False
        self.canvas.installEventFilter(self)
        self.score_axes, self.scatter_axes = self.figure.subplots(1, 2)
        form = QFormLayout()
        form.addRow("Marker", self.marker_combo)
        layout = QVBoxLayout(scroll_content(self))
        layout.addLayout(form)
        layout.addWidget(self.info_label)
        layout.addWidget(self.canvas, 1)
        self.marker_combo.currentIndexChanged.connect(self.redraw)
        self.links = DockLinks(self)
        self.link = dock_viewer_link(napari_viewer)
        self.links.connect(self.link.state.session_changed, self._on_session_changed)
        self._on_session_changed(self.link.ensure_session())

    @property
    def session(self) -> Any:
        return self.link.state.session

    @property
    def marker(self) -> str:
        return str(self.marker_combo.currentData())

    def set_marker(self, column: str) -> None:
        index = self.marker_combo.findData(column)
        if index < 0:
            raise ValueError(f"no marker {column!r}")
        self.marker_combo.setCurrentIndex(index)

    # ------------------------------------------------------------------------- session
    def _on_session_changed(self, session: Any) -> None:
        self._session = session
        self.links.connect_session(
            session,
            {
                "prediction_changed": self._on_prediction_changed,
                "tile_inspected": self._on_tile_inspected,
                "tile_selected": self._on_tile_selected,
            },
        )
        self._on_prediction_changed(None)

    def _on_prediction_changed(self, _result: Any) -> None:
        self.markers.clear()
        self._load_batch_markers()
        self._load_session_inspections()
        self.redraw()

    def _on_tile_inspected(self, tile_id: str, inspection: Any) -> None:
        self.markers[str(tile_id)] = inspection.markers.as_row()
        self.markers.move_to_end(str(tile_id))
        self.redraw()

    def _on_tile_selected(self, _tile_id: Any) -> None:
        self.redraw()

    def _load_session_inspections(self) -> None:
        """Marker rows of the inspections the session already holds (a dock opened late shows
        them), least recently used first."""
        session = self.session
        if session is None or session.prediction is None:
            return
        for tile_id in session.inspected_tile_ids:
            inspection = session.cached_inspection(tile_id)
            if inspection is not None:
                self.markers[str(tile_id)] = inspection.markers.as_row()

    def _load_batch_markers(self) -> None:
        """Rows of ``results_dir/markers.csv`` (from ``imilia inspect``) for scored tiles."""
        session = self.session
        if session is None or session.prediction is None:
            return
        path = session.results_dir / "markers.csv"
        if not path.is_file():
            return
        try:
            raw = read_results_bytes(path, session.results_dir)
            table = pd.read_csv(io.BytesIO(raw), dtype={"tile_id": str})
        except (ImiliaError, OSError, ValueError):
            return
        known = set(session.tiles["tile_id"].astype(str))
        for row in table.to_dict("records"):
            if str(row.get("tile_id")) in known:
                self.markers[str(row["tile_id"])] = row

    # ------------------------------------------------------------------------- drawing
    def scatter_data(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(tile ids, scores, marker values) of the inspected tiles, for the chosen marker."""
        session = self.session
        if session is None or session.prediction is None or not self.markers:
            return [], np.zeros(0), np.zeros(0)
        scores = session.tiles.set_index(session.tiles["tile_id"].astype(str))["score"]
        ids = [t for t in self.markers if t in scores.index]
        x = scores.loc[ids].to_numpy(np.float64)
        y = np.array([float(self.markers[t].get(self.marker, math.nan)) for t in ids])
        return ids, x, y

    def redraw(self, *_: Any) -> None:
        session = self.session
        for axes in (self.score_axes, self.scatter_axes):
            axes.clear()
        if session is None or session.prediction is None:
            self.info_label.setText("no prediction yet")
            self._draw()
            return
        tiles = session.tiles
        scores = tiles["score"].to_numpy(np.float64)
        self.score_axes.hist(scores[np.isfinite(scores)], bins=HISTOGRAM_BINS, color="#607d8b")
        ids, x, y = self.scatter_data()
        if len(x):
            low = self.score_axes.get_ylim()[1] * 0.04
            self.score_axes.plot(x, np.full(len(x), low), "|", color="#e91e63", markersize=8)
        if session.selected_tile_id is not None:
            selected = float(session.tile_row(session.selected_tile_id)["score"])
            self.score_axes.axvline(selected, color="#00bcd4", linewidth=1.5)
        self.score_axes.set_title(f"tile scores ({len(tiles)} tiles)", fontsize=9)
        self.score_axes.set_xlabel("tile score", fontsize=8)
        self.score_axes.set_ylabel("tiles", fontsize=8)
        label = self.marker_combo.currentText()
        self.scatter_axes.scatter(x, y, s=14, color="#e91e63", alpha=0.8)
        rho = spearman_rho(x, y)
        rho_text = "n/a" if not math.isfinite(rho) else f"{rho:+.2f}"
        # the marker is the y label: the title stays short enough not to be cut in the dock
        self.scatter_axes.set_title(f"Spearman rho {rho_text} ({len(x)} tiles)", fontsize=9)
        self.scatter_axes.set_xlabel("tile score", fontsize=8)
        self.scatter_axes.set_ylabel(label, fontsize=8)
        for axes in (self.score_axes, self.scatter_axes):
            axes.tick_params(labelsize=7)
        self.info_label.setText(
            f"{len(ids)} inspected tile(s); slide score {session.prediction.score:.4f}"
        )
        self._draw()

    def _draw(self) -> None:
        """Render the figure now if it is on the screen, else when it is painted next (a
        dock in a hidden tab costs nothing while the reviewer steps through slides)."""
        if self.canvas.isVisible() and not self.canvas.visibleRegion().isEmpty():
            self.canvas.draw_idle()
        else:
            self._draw_pending = True

    def eventFilter(self, watched: Any, event: Any) -> bool:
        """The canvas is painted (shown, its tab raised): render the figure if it changed."""
        if watched is self.canvas and event.type() == QEvent.Type.Paint and self._draw_pending:
            self._draw_pending = False
            self.canvas.draw_idle()
        return False
