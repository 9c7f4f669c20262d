"""Top tiles dock: the k highest- (or lowest-) scoring tiles, a thumbnail gallery, jumping.

Which tiles are the top tiles is the viewer state's (``ViewerState.top_tiles``): this dock
shows and edits it, and the N / P keys and the Review dock's count use it, open or not.
Tiles are ranked by tile score, attention (ABMIL) or, for a multi-channel model, one
channel's score (``score_<channel>`` of tiles.csv). Selecting a tile in the list (click,
arrow keys, *Previous*/*Next* or the N / P keys) or in the gallery calls
``session.select_tile`` and centres and zooms the camera on it; the viewer link outlines the
selected tile with a Shapes rectangle. Clicking a tile on the canvas selects it too (the list
follows). Thumbnails are small (``THUMB_PX``), read from the coarsest level that is fine
enough, one at a time in a ``thread_worker``, and kept in a bounded cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QColor, QIcon, QKeySequence, QPixmap, QShortcut
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.links import DockLinks, dock_viewer_link
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.docks.slide_info import rgb_pixmap
from napari_imilia._napari.docks.text import plain_label, plain_tooltip
from napari_imilia._napari.keys import step_top_tile
from napari_imilia._napari.layers.placement import centre_on_tile
from napari_imilia._napari.state import TopTiles
from napari_imilia.mil.channels import SCORE_PREFIX, channel_labels
from napari_imilia.tiling.grid import resize_tile

THUMB_PX = 96
MAX_K = 500
#: Thumbnails kept in memory (per widget), least recently used dropped.
MAX_CACHED_THUMBS = 256
TILE_ID_ROLE = Qt.ItemDataRole.UserRole


def tile_thumbnail(slide: Any, tile: Any, size_px: int = THUMB_PX) -> np.ndarray:
    """A (size_px, size_px, 3) uint8 picture of a tile row (level-0 x, y, width, height),
    read at the coarsest native level whose pixels are still at most the thumbnail's."""
    width, height = int(tile["width"]), int(tile["height"])
    level = slide.best_level_for_downsample(max(width, height) / size_px)
    downsample = slide.level_info[level].downsample
    size = (max(1, round(width / downsample)), max(1, round(height / downsample)))
    region = slide.read_region((int(tile["x"]), int(tile["y"])), level, size)
    return resize_tile(region, size_px)


def _read_thumbnails(slide: Any, tiles: list[Any]) -> Iterator[tuple[str, np.ndarray]]:
    """Generator for a ``thread_worker``: (tile_id, thumbnail) one tile at a time."""
    for tile in tiles:
        yield str(tile["tile_id"]), tile_thumbnail(slide, tile)


class TopTilesWidget(QWidget):
    """The Top tiles dock widget (npe2 ``napari-imilia.top_tiles``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._thumbs: OrderedDict[str, np.ndarray] = OrderedDict()
        self._shown: set[str] = set()  # tiles whose gallery item shows its thumbnail
        self.thumb_worker: Any = None
        self.link = dock_viewer_link(napari_viewer)
        self.state = self.link.state
        self._build_ui()
        self.links = DockLinks(self)
        self.links.connect(self.state.session_changed, self._on_session_changed)
        self.links.connect(self.state.top_tiles_changed, self._on_top_tiles_changed)
        self._on_session_changed(self.link.ensure_session())

    # ------------------------------------------------------------------------- UI
    def _build_ui(self) -> None:
        top = self.state.top_tiles
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, MAX_K)
        self.k_spin.setValue(top.k)
        self.k_spin.setPrefix("k = ")
        self.bottom_check = QCheckBox("bottom k (lowest)")
        self.bottom_check.setChecked(top.bottom)
        self.column_combo = QComboBox()
        self.column_combo.addItem("by tile score", "score")
        self.column_combo.addItem("by attention", "attention")
        self.list = QListWidget()
        self.previous_button = QPushButton("◀ Previous (P)")
        self.next_button = QPushButton("Next (N) ▶")
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setGridSize(QSize(THUMB_PX + 12, THUMB_PX + 24))
        blank = QPixmap(THUMB_PX, THUMB_PX)
        blank.fill(QColor(128, 128, 128))
        self._placeholder = QIcon(blank)
        self.gallery.setMinimumHeight(THUMB_PX + 40)
        self.gallery_check = QCheckBox("thumbnails")
        self.gallery_check.setChecked(True)
        self.gallery_check.setToolTip("Show the gallery of tile thumbnails under the list")
        self.info_label = plain_label("no prediction yet")
        controls = QHBoxLayout()
        for widget in (self.k_spin, self.bottom_check, self.column_combo):
            controls.addWidget(widget)
        steps = QHBoxLayout()
        steps.addWidget(self.previous_button)
        steps.addWidget(self.next_button)
        steps.addWidget(self.gallery_check)
        layout = QVBoxLayout(scroll_content(self))
        layout.addLayout(controls)
        layout.addLayout(steps)
        layout.addWidget(self.info_label)
        layout.addWidget(self.list, 2)  # the list gets two thirds of the height
        layout.addWidget(self.gallery, 1)

        self.gallery_check.toggled.connect(self.gallery.setVisible)
        self.k_spin.valueChanged.connect(self._store_choice)
        self.bottom_check.toggled.connect(self._store_choice)
        self.column_combo.currentIndexChanged.connect(self._store_choice)
        self.list.currentRowChanged.connect(self._on_row_changed)
        self.gallery.itemClicked.connect(self._on_gallery_clicked)
        self.previous_button.clicked.connect(self.select_previous)
        self.next_button.clicked.connect(self.select_next)
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for key, slot in (("N", self.select_next), ("P", self.select_previous)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(context)
            shortcut.activated.connect(slot)

    # ------------------------------------------------------------------------- state
    @property
    def session(self) -> Any:
        return self.state.session

    def _store_choice(self, *_: Any) -> None:
        """Make the controls' k, bottom and column the viewer's top tiles (it refreshes)."""
        column = self.column_combo.currentData() or self.state.top_tiles.column
        choice = TopTiles(self.k_spin.value(), self.bottom_check.isChecked(), str(column))
        self.state.set_top_tiles(choice)

    def _on_top_tiles_changed(self, top: TopTiles) -> None:
        """Show the viewer's top tiles (another dock may have changed them)."""
        for widget in (self.k_spin, self.bottom_check):
            widget.blockSignals(True)
        self.k_spin.setValue(top.k)
        self.bottom_check.setChecked(top.bottom)
        for widget in (self.k_spin, self.bottom_check):
            widget.blockSignals(False)
        self.refresh()

    def tile_ids(self) -> list[str]:
        """The listed tiles' ids, in list order."""
        return [self.list.item(i).data(TILE_ID_ROLE) for i in range(self.list.count())]

    def _on_session_changed(self, session: Any) -> None:
        self.links.connect_session(
            session,
            {
                "prediction_changed": self._on_prediction_changed,
                "tile_selected": self._on_tile_selected,
            },
        )
        self._thumbs.clear()
        self.refresh()

    def _on_prediction_changed(self, _result: Any) -> None:
        self._thumbs.clear()
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Rebuild the list and gallery from the session's tiles and the k / bottom options."""
        session = self.session
        self.list.blockSignals(True)
        self.list.clear()
        self.gallery.clear()
        self._shown = set()
        self.list.blockSignals(False)
        if session is None or session.prediction is None:
            self.info_label.setText("no prediction yet")
            return
        tiles = session.tiles
        self._fill_columns(tiles, session.prediction.info)
        top = self.state.top_tiles
        column = top.column if top.column in tiles.columns else "score"
        ranked = self.state.top_tile_table()
        which = "lowest" if top.bottom else "highest"
        self.info_label.setText(f"{len(ranked)} {which} of {len(tiles)} tiles by {column}")
        rows = [row for _, row in ranked.iterrows()]
        for position, row in enumerate(rows, start=1):
            text = f"{position}. {row['tile_id']}   {column} {row[column]:.4g}   rank {row['rank']}"
            item = QListWidgetItem(text)
            item.setData(TILE_ID_ROLE, str(row["tile_id"]))
            self.list.addItem(item)
            thumb = QListWidgetItem(self._placeholder, str(position))
            thumb.setData(TILE_ID_ROLE, str(row["tile_id"]))
            thumb.setToolTip(plain_tooltip(text))
            self.gallery.addItem(thumb)
        self._highlight(session.selected_tile_id)
        self._load_thumbnails(rows)

    def _fill_columns(self, tiles: Any, info: dict[str, Any]) -> None:
        """Offer ranking by tile score, attention (when present) and each channel's score;
        keeps the current choice when the result still has it."""
        choices = [("by tile score", "score")]
        if "attention" in tiles.columns:
            choices.append(("by attention", "attention"))
        labels = channel_labels(tiles, info)
        choices += [(f"by channel {label}", SCORE_PREFIX + label) for label in labels]
        current = self.state.top_tiles.column
        self.column_combo.blockSignals(True)
        self.column_combo.clear()
        for text, column in choices:
            self.column_combo.addItem(text, column)
        index = self.column_combo.findData(current)
        self.column_combo.setCurrentIndex(max(index, 0))
        self.column_combo.blockSignals(False)

    # ------------------------------------------------------------------------- selection
    def select_row(self, row: int) -> None:
        """Select the list's ``row`` (clamped), which selects and centres on its tile."""
        if self.list.count():
            self.list.setCurrentRow(min(max(row, 0), self.list.count() - 1))

    def select_next(self) -> None:
        """The next of the viewer's top tiles (as the N key)."""
        step_top_tile(self.viewer, 1)

    def select_previous(self) -> None:
        """The previous of the viewer's top tiles (as the P key)."""
        step_top_tile(self.viewer, -1)

    def _on_row_changed(self, row: int) -> None:
        session = self.session
        if session is None or row < 0:
            return
        tile_id = self.list.item(row).data(TILE_ID_ROLE)
        session.select_tile(tile_id)
        centre_on_tile(self.viewer, session, tile_id)
        self.gallery.setCurrentRow(row)

    def _on_gallery_clicked(self, item: QListWidgetItem) -> None:
        self.select_row(self.gallery.row(item))

    def _on_tile_selected(self, tile_id: Any) -> None:
        self._highlight(tile_id)

    def _highlight(self, tile_id: Any) -> None:
        """Show ``tile_id`` as the current row without re-selecting it (or clear)."""
        ids = self.tile_ids()
        row = ids.index(tile_id) if tile_id in ids else -1
        if row != self.list.currentRow():
            self.list.blockSignals(True)
            self.list.setCurrentRow(row)
            self.list.blockSignals(False)
            self.gallery.setCurrentRow(row)

    # ------------------------------------------------------------------------- gallery
    @property
    def thumbnails_loading(self) -> bool:
        return self.thumb_worker is not None

    def _load_thumbnails(self, rows: list[Any]) -> None:
        from napari.qt.threading import thread_worker

        if self.thumb_worker is not None:
            self.thumb_worker.quit()
            self.thumb_worker = None
        missing = [row for row in rows if str(row["tile_id"]) not in self._thumbs]
        for row in rows:
            if str(row["tile_id"]) in self._thumbs:
                self._set_icon(str(row["tile_id"]), self._thumbs[str(row["tile_id"])])
        if not missing:
            return
        worker = thread_worker(_read_thumbnails, start_thread=False)(self.session.slide, missing)
        worker.yielded.connect(self._on_thumbnail)
        worker.finished.connect(lambda w=worker: self._on_thumbs_finished(w))
        self.thumb_worker = worker
        worker.start()

    def _on_thumbnail(self, item: tuple[str, np.ndarray]) -> None:
        tile_id, image = item
        self._thumbs[tile_id] = image
        self._thumbs.move_to_end(tile_id)
        while len(self._thumbs) > MAX_CACHED_THUMBS:
            self._thumbs.popitem(last=False)
        self._set_icon(tile_id, image)

    def _on_thumbs_finished(self, worker: Any) -> None:
        if self.thumb_worker is worker:
            self.thumb_worker = None

    def _set_icon(self, tile_id: str, image: np.ndarray) -> None:
        self._shown.add(tile_id)
        for i in range(self.gallery.count()):
            item = self.gallery.item(i)
            if item.data(TILE_ID_ROLE) == tile_id:
                item.setIcon(QIcon(rgb_pixmap(image)))

    def icons_shown(self) -> int:
        """Gallery items that show their tile's thumbnail (not the grey placeholder)."""
        ids = [self.gallery.item(i).data(TILE_ID_ROLE) for i in range(self.gallery.count())]
        return sum(tile_id in self._shown for tile_id in ids)
