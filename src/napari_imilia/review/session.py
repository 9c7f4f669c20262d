"""``ReviewSession``: everything one open slide's review needs, in one object (no Qt).

One session per open slide holds the slide, its results folder (``results_root/<slide_id>``),
the prediction (tile table with scores and ranks), the selected tile, a bounded cache of tile
inspections and the autosaved review store. Widgets observe it through its psygnal signals;
the core never imports Qt, so the whole review workflow is testable without a display.

Coordinates are level-0 pixels, (x, y), top-left origin, as in every table of the project.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from psygnal import Signal

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.review.entry import ReviewEntry
from napari_imilia.review.store import ReviewStore
from napari_imilia.trust.paths import path_inside
from napari_imilia.user_dirs import default_results_root

#: Environment variable naming the default folder for results (one subfolder per slide).
#: Inspections kept in memory per session; older ones are dropped (least recently used).
DEFAULT_MAX_INSPECTIONS = 16


class ReviewSession:
    """The review state of one open slide. Create with :meth:`open`; close with :meth:`close`.

    Signals: ``prediction_changed(result)``, ``tile_selected(tile_id or None)``,
    ``tile_inspected(tile_id, inspection)``, ``review_changed()``, ``closed()``.
    """

    prediction_changed = Signal(object)
    tile_selected = Signal(object)
    tile_inspected = Signal(str, object)
    review_changed = Signal()
    closed = Signal()

    def __init__(
        self,
        slide: Any,
        results_root: Path,
        *,
        max_inspections: int = DEFAULT_MAX_INSPECTIONS,
    ) -> None:
        if max_inspections < 1:
            raise ImiliaError(f"max_inspections must be at least 1; got {max_inspections}")
        self.slide = slide
        self.results_root = Path(results_root)
        self.max_inspections = int(max_inspections)
        self.prediction: Any | None = None
        #: Why the model's output is withheld ('' when shown): see :meth:`withhold_prediction`.
        self.withheld_reason = ""
        self._withheld: Any | None = None
        self.selected_tile_id: str | None = None
        self._inspections: OrderedDict[str, Any] = OrderedDict()
        self._review: ReviewStore | None = None

    # ----------------------------------------------------------------- opening / closing
    @classmethod
    def open(
        cls,
        slide_path: str | os.PathLike[str],
        results_root: str | os.PathLike[str] | None = None,
        *,
        mpp: float | None = None,
        max_inspections: int = DEFAULT_MAX_INSPECTIONS,
    ) -> ReviewSession:
        """Open a slide (``mpp`` overrides its metadata) and load any earlier prediction and
        review found in ``results_root/<slide_id>``."""
        from napari_imilia.slide import open_slide

        slide = open_slide(slide_path, mpp=mpp)
        return cls.for_slide(slide, results_root, max_inspections=max_inspections)

    @classmethod
    def for_slide(
        cls,
        slide: Any,
        results_root: str | os.PathLike[str] | None = None,
        *,
        max_inspections: int = DEFAULT_MAX_INSPECTIONS,
    ) -> ReviewSession:
        """A session over an already open slide (e.g. the one behind a napari layer)."""
        root = Path(results_root) if results_root is not None else default_results_root()
        session = cls(slide, root, max_inspections=max_inspections)
        session.load_cached_prediction()
        return session

    def close(self) -> None:
        """Emit ``closed`` and drop cached inspections (the slide stays open for its layer)."""
        self._inspections.clear()
        self.closed.emit()

    @property
    def slide_id(self) -> str:
        return str(self.slide.slide_id)

    @property
    def results_dir(self) -> Path:
        """Where this slide's prediction, inspections and review live (``ImiliaError`` if
        the slide id would lead outside ``results_root``)."""
        return path_inside(self.results_root, self.slide_id)

    # ----------------------------------------------------------------- prediction
    def load_cached_prediction(self) -> bool:
        """Load ``results_dir``'s earlier prediction if it is of this slide; True if loaded."""
        from napari_imilia.predict.slide import load_prediction

        if not (self.results_dir / "slide.json").is_file():
            return False
        try:
            result = load_prediction(self.results_dir)
        except (ImiliaError, ValueError, KeyError):
            return False
        if result.slide_id != self.slide_id:
            return False
        self.set_prediction(result)
        return True

    def set_prediction(self, result: Any) -> None:
        """Show a new ``PredictionResult``; clears inspections made under the old one. While
        the prediction is withheld it is kept aside instead (and nothing is emitted)."""
        if result is not None and str(result.slide_id) != self.slide_id:
            raise DataError(f"prediction is of slide {result.slide_id!r}, not of {self.slide_id!r}")
        if self.withheld_reason:
            self._withheld = result
            return
        self._show(result)

    def _show(self, result: Any) -> None:
        self.prediction = result
        self._inspections.clear()
        self.selected_tile_id = None
        self._review = None  # the review store is keyed by the model: reopen lazily
        self.prediction_changed.emit(result)

    def withhold_prediction(self, reason: str) -> None:
        """Hide the model's output (score, tiles, heatmap, everything drawn from it) for
        ``reason`` (e.g. a blinded reader study): ``prediction`` reads None until
        :meth:`reveal_prediction`; a result loaded or computed meanwhile is kept aside."""
        if not reason:
            raise ImiliaError("say why the model's output is withheld")
        if self.withheld_reason:
            self.withheld_reason = reason
            return
        result = self.prediction
        self.withheld_reason = reason
        self._withheld = result
        self._show(None)  # the reason is set first: docks told of it can say why

    def reveal_prediction(self) -> None:
        """Show the withheld prediction (emits ``prediction_changed``, None when none came)."""
        if not self.withheld_reason:
            return
        result, self._withheld, self.withheld_reason = self._withheld, None, ""
        self._show(result)

    @property
    def tiles(self) -> pd.DataFrame:
        """The scored tile table (level-0 px); ``DataError`` before any prediction."""
        if self.prediction is None:
            raise DataError(f"slide {self.slide_id} has not been scored yet; run the model first")
        return self.prediction.tiles

    def tile_row(self, tile_id: str) -> pd.Series:
        """The row of ``tile_id`` in :attr:`tiles`; ``DataError`` if there is no such tile."""
        tiles = self.tiles
        hits = tiles.index[tiles["tile_id"].astype(str) == str(tile_id)]
        if len(hits) == 0:
            raise DataError(f"slide {self.slide_id} has no tile {tile_id!r}")
        return tiles.loc[hits[0]]

    def tile_at(self, level0_x: float, level0_y: float) -> str | None:
        """Id of the tile covering the level-0 point (x, y), or None (outside tissue tiles)."""
        if self.prediction is None:
            return None
        tiles = self.tiles
        x = tiles["x"].to_numpy(dtype=np.float64)
        y = tiles["y"].to_numpy(dtype=np.float64)
        inside = (
            (x <= level0_x)
            & (level0_x < x + tiles["width"].to_numpy(dtype=np.float64))
            & (y <= level0_y)
            & (level0_y < y + tiles["height"].to_numpy(dtype=np.float64))
        )
        hits = np.flatnonzero(inside)
        return None if hits.size == 0 else str(tiles["tile_id"].iloc[int(hits[0])])

    def ranked_tiles(self, k: int, *, bottom: bool = False, column: str = "score") -> pd.DataFrame:
        """The ``k`` highest-scoring tiles (lowest with ``bottom``), best first."""
        if k < 1:
            raise DataError(f"number of tiles must be at least 1; got {k}")
        tiles = self.tiles
        if column not in tiles.columns:
            raise DataError(f"tile table has no {column!r} column")
        order = tiles.sort_values(column, ascending=bottom, kind="mergesort")
        return order.head(int(k)).reset_index(drop=True)

    # ----------------------------------------------------------------- selection / inspections
    def select_tile(self, tile_id: str | None) -> None:
        """Select a tile (None clears); emits ``tile_selected`` when it changes."""
        if tile_id is not None:
            tile_id = str(self.tile_row(tile_id)["tile_id"])
        if tile_id != self.selected_tile_id:
            self.selected_tile_id = tile_id
            self.tile_selected.emit(tile_id)

    def cached_inspection(self, tile_id: str) -> Any | None:
        """The cached inspection of ``tile_id`` (marked recently used), or None."""
        inspection = self._inspections.get(str(tile_id))
        if inspection is not None:
            self._inspections.move_to_end(str(tile_id))
        return inspection

    def store_inspection(self, tile_id: str, inspection: Any) -> None:
        """Cache an inspection (bounded: the least recently used is dropped) and emit
        ``tile_inspected``."""
        key = str(tile_id)
        self._inspections[key] = inspection
        self._inspections.move_to_end(key)
        while len(self._inspections) > self.max_inspections:
            self._inspections.popitem(last=False)
        self.tile_inspected.emit(key, inspection)

    @property
    def inspected_tile_ids(self) -> list[str]:
        """Tiles whose inspection is cached, least recently used first."""
        return list(self._inspections)

    # ----------------------------------------------------------------- review
    @property
    def review(self) -> ReviewStore:
        """The slide's review store (opened on first use, autosaving every change)."""
        if self._review is None:
            info = {} if self.prediction is None else self.prediction.info
            model_sha = info.get("model_sha256")
            with self._disk_errors("opened"):
                self._review = ReviewStore.open(
                    self.results_dir, self.slide_id, model_sha256=model_sha
                )
        return self._review

    def sync_review(self) -> bool:
        """Take in review edits other processes saved for this slide (another napari window,
        another reviewer); emits ``review_changed`` and returns True when there were any."""
        if self._review is None:
            return False
        with self._disk_errors("read"):
            changed = self._review.sync()
        if changed:
            self.review_changed.emit()
        return changed

    @contextlib.contextmanager
    def _disk_errors(self, action: str) -> Iterator[None]:
        """Turn a refusal of the disk (read-only share, no permission, disk full) into an
        ``ImiliaError`` that says where and what to do."""
        try:
            yield
        except OSError as error:
            reason = error.strerror or str(error)
            raise ImiliaError(
                f"the review of {self.slide_id} cannot be {action} in {self.results_dir} "
                f"({reason}); ask for write access to that folder or choose another results "
                "folder"
            ) from error

    def own_tile_review(self, tile_id: Any, reviewer: str) -> ReviewEntry | None:
        """``reviewer``'s latest review of tile ``tile_id`` (an unsigned one counts as anyone's),
        or None: another reviewer's review of the tile is theirs, never edited by this one."""
        mine = [
            e
            for e in self.review.for_tile(tile_id)
            if e.target_kind == "tile" and e.reviewer in ("", reviewer)
        ]
        return mine[-1] if mine else None

    def add_review(self, **fields: Any) -> ReviewEntry:
        """``ReviewStore.add`` (saved at once), then ``review_changed``."""
        with self._disk_errors("saved"):
            entry = self.review.add(**fields)
        self.review_changed.emit()
        return entry

    def update_review(self, entry_id: str, **changes: Any) -> ReviewEntry:
        """``ReviewStore.update`` (saved at once), then ``review_changed``."""
        with self._disk_errors("saved"):
            entry = self.review.update(entry_id, **changes)
        self.review_changed.emit()
        return entry

    def remove_review(self, entry_id: str) -> ReviewEntry:
        """``ReviewStore.remove`` (saved at once), then ``review_changed``."""
        with self._disk_errors("saved"):
            entry = self.review.remove(entry_id)
        self.review_changed.emit()
        return entry
