"""Batches of tiles decoded in worker threads, ahead of the consumer.

``TileFeed`` reads each tile of a :class:`~napari_imilia.tiling.TileGrid` with one region read
(tiffslide's zarr array of the read level) plus the resize, in ``num_workers`` threads (tifffile,
imagecodecs and PIL release the GIL while decoding and resizing). ``prefetch_batches`` batches
beyond the one the consumer holds are in flight, so they decode while the consumer runs the
model; memory stays bounded by that window. Batches come out in grid order whatever the
thread timing. A failing read is re-raised in the consumer as :class:`TileReadError` naming
the tile's level-0 coordinates. Leaving the loop early (``break``, an exception, ``close()``)
cancels the queued reads and joins the threads.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from napari_imilia.errors import SlideError
from napari_imilia.slide import Slide
from napari_imilia.tiling import TileGrid


class TileReadError(SlideError):
    """A tile could not be read or decoded."""


@dataclass(frozen=True)
class TileBatch:
    """``tiles`` (B, tile_px, tile_px, 3) uint8 for the grid rows ``indices`` (B,) int64."""

    indices: np.ndarray
    tiles: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def default_num_workers() -> int:
    """min(4, CPU count)."""
    return max(1, min(4, os.cpu_count() or 1))


class TileFeed:
    """Iterate :class:`TileBatch` es over ``grid`` (or the rows ``indices`` of it), in order.

    ``num_workers=0`` reads in the consumer's thread (no threads at all). Use as a context
    manager or call :meth:`close` when stopping early without exhausting the iterator.
    """

    def __init__(
        self,
        slide: Slide,
        grid: TileGrid,
        *,
        batch_size: int = 64,
        num_workers: int | None = None,
        prefetch_batches: int = 2,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        if batch_size < 1 or prefetch_batches < 1:
            raise ValueError("batch_size and prefetch_batches must be at least 1")
        self.slide_name = slide.path.name
        self.grid = grid
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.prefetch_batches = int(prefetch_batches)
        rows = np.arange(grid.n_tiles) if indices is None else np.asarray(indices)
        self.indices = rows.astype(np.int64)
        self._reader = grid.reader(slide)
        self._executor: ThreadPoolExecutor | None = None
        self._started = False

    @property
    def n_tiles(self) -> int:
        return int(self.indices.shape[0])

    def __len__(self) -> int:
        """Number of batches."""
        return -(-self.n_tiles // self.batch_size)

    def __iter__(self) -> Iterator[TileBatch]:
        if self._started:
            raise RuntimeError("a TileFeed can be iterated once; make a new one")
        self._started = True
        return self._serial() if self.num_workers == 0 else self._threaded()

    def close(self) -> None:
        """Cancel queued reads and wait for the running ones; idempotent."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TileFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------
    def _batch_rows(self) -> Iterator[np.ndarray]:
        for start in range(0, self.n_tiles, self.batch_size):
            yield self.indices[start : start + self.batch_size]

    def _empty(self, n: int) -> np.ndarray:
        side = self.grid.tile_px
        return np.empty((n, side, side, 3), dtype=np.uint8)

    def _read_into(self, out: np.ndarray, slot: int, row: int) -> None:
        try:
            out[slot] = self._reader(row)
        except Exception as error:
            x, y = int(self.grid.x[row]), int(self.grid.y[row])
            raise TileReadError(
                f"{self.slide_name}: cannot read tile {row} at level-0 (x={x}, y={y}), "
                f"level {self.grid.read_level}: {type(error).__name__}: {error}"
            ) from error

    def _serial(self) -> Iterator[TileBatch]:
        for rows in self._batch_rows():
            tiles = self._empty(len(rows))
            for slot, row in enumerate(rows.tolist()):
                self._read_into(tiles, slot, row)
            yield TileBatch(indices=rows, tiles=tiles)

    def _threaded(self) -> Iterator[TileBatch]:
        executor = ThreadPoolExecutor(self.num_workers, thread_name_prefix="tile-feed")
        self._executor = executor
        pending: deque[tuple[np.ndarray, np.ndarray, list[Future[None]]]] = deque()
        batches = self._batch_rows()

        def fill() -> None:
            while len(pending) < self.prefetch_batches:
                rows = next(batches, None)
                if rows is None:
                    return
                tiles = self._empty(len(rows))
                futures = [
                    executor.submit(self._read_into, tiles, slot, row)
                    for slot, row in enumerate(rows.tolist())
                ]
                pending.append((rows, tiles, futures))

        try:
            fill()
            while pending:
                rows, tiles, futures = pending.popleft()
                for future in futures:
                    future.result()
                fill()  # keep the window full while the consumer works on this batch
                yield TileBatch(indices=rows, tiles=tiles)
        finally:
            for _, _, futures in pending:
                for future in futures:
                    future.cancel()
            self.close()
