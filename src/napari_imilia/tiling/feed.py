"""Batches of tiles decoded in worker processes, ahead of the consumer, in grid order.

``TileFeed`` reads each tile of a :class:`~napari_imilia.tiling.grid.TileGrid` with one region read
(tiffslide's zarr array of the read level) plus the resize. With ``decode_workers`` = N > 0 the
reads run in N worker processes of a ``torch.utils.data.DataLoader``: each worker opens the
slide itself (its path and µm/px override), decodes whole batches into shared memory and
hands them back without copying; with ``pin_memory`` the batches land in page-locked memory
for non-blocking copies to a GPU. Processes, not threads: tiffslide/zarr hold the GIL for a
large part of a tile's decode, so threads decode no faster than one core (see
docs/performance.md). ``decode_workers=0`` reads in the caller, with no process at all; it is
also what a daemonic process (a dask.distributed worker) gets, since it cannot start
children.

Memory stays bounded: ``prefetch_batches`` batches per worker are in flight beyond the one
the consumer holds. Batches come out in grid order whatever the timing. A tile that fails is
re-raised in the consumer as :class:`TileReadError` naming the tile (row, level-0 x, y).
Leaving the loop early (``break``, an exception, Ctrl-C, ``close()``) stops and joins the
workers. Workers start with the ``forkserver`` method (safe from threaded hosts such as
napari, and torch's threads): the server imports the decoding modules once per Python
process (:func:`warm_up` starts it early), then each worker forks from it without importing
anything again. They are started by :func:`napari_imilia.processes.process_context`: never
running the user's script (a script without a main guard, or read from stdin, works) and
ending with the process that decodes (:func:`~napari_imilia.processes.watch_parent`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_imilia.errors import SlideError
from napari_imilia.processes import process_context, watch_parent
from napari_imilia.slide import BACKEND_CHOICES, Slide
from napari_imilia.tiling.grid import TileGrid

#: Start method of the decode processes (``fork`` is unsafe under napari's and torch's threads).
START_METHOD = "forkserver"
#: Modules the fork server imports once so that every worker forks with them loaded (torch
#: runs the DataLoader's worker loop).
_PRELOAD = [
    "torch",
    "torch.utils.data",
    "tiffslide",
    "napari_imilia.processes",
    "napari_imilia.tiling.feed",
]


class TileReadError(SlideError):
    """A tile could not be read or decoded."""


@dataclass(frozen=True)
class TileBatch:
    """``tiles`` (B, tile_px, tile_px, 3) uint8 for the grid rows ``indices`` (B,) int64."""

    indices: np.ndarray
    tiles: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset limit)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def can_start_processes() -> bool:
    """False inside a daemonic process (e.g. a dask.distributed worker): no children there."""
    return not multiprocessing.current_process().daemon


def default_decode_workers(device: str = "cpu") -> int:
    """Decode processes that use the machine next to an extractor running on ``device``.

    A GPU extractor needs one core to drive it: the others decode. A CPU extractor needs the
    cores itself: a quarter of them decode (at least one), the rest are its torch threads
    (:func:`torch_threads_beside`). Decoding runs at ~500 tiles/s per core, faster than any
    CPU extractor. 0 where processes cannot be started (:func:`can_start_processes`).
    """
    if not can_start_processes():
        return 0
    cores = usable_cores()
    if str(device).startswith("cuda"):
        return max(1, cores - 1)
    return max(1, cores // 4)


def torch_threads_beside(decode_workers: int) -> int:
    """Torch intra-op threads for a CPU extractor next to ``decode_workers`` decode processes,
    so that decoding and the model together do not use more threads than there are cores."""
    return max(1, usable_cores() - max(0, int(decode_workers)))


def warm_up() -> None:
    """Start the fork server now (it imports the decoding modules, ~1-3 s) so that a later
    ``TileFeed`` finds it ready; harmless when it runs already or processes are unavailable."""
    if can_start_processes() and START_METHOD == "forkserver":
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()


def _context() -> Any:
    return process_context(START_METHOD, preload=_PRELOAD)


class TileFeed:
    """Iterate :class:`TileBatch` es over ``grid`` (or the rows ``indices`` of it), in order.

    ``decode_workers``: decode processes (None: :func:`default_decode_workers`; 0: read in the
    caller). ``prefetch_batches``: batches each worker decodes ahead. ``pin_memory``: hand
    batches back in page-locked memory (for non-blocking copies to CUDA; needs a GPU). Use
    as a context manager or call :meth:`close` when stopping early.
    """

    def __init__(
        self,
        slide: Slide,
        grid: TileGrid,
        *,
        batch_size: int = 64,
        decode_workers: int | None = None,
        prefetch_batches: int = 2,
        indices: Sequence[int] | np.ndarray | None = None,
        pin_memory: bool = False,
    ) -> None:
        if batch_size < 1 or prefetch_batches < 1:
            raise ValueError("batch_size and prefetch_batches must be at least 1")
        if decode_workers is not None and decode_workers < 0:
            raise ValueError(f"decode_workers must be 0 or more, got {decode_workers}")
        self.slide = slide
        self.slide_name = slide.path.name
        self.grid = grid
        self.batch_size = int(batch_size)
        rows = np.arange(grid.n_tiles) if indices is None else np.asarray(indices)
        self.indices = rows.astype(np.int64)
        wanted = default_decode_workers() if decode_workers is None else int(decode_workers)
        if not can_start_processes():
            wanted = 0
        self.decode_workers = min(wanted, len(self))
        self.prefetch_batches = int(prefetch_batches)
        self.pin_memory = bool(pin_memory)
        self._iterator: Any = None
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
        return self._in_caller() if self.decode_workers == 0 else self._in_processes()

    def close(self) -> None:
        """Stop the decode processes and wait for them to exit; idempotent."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    def __enter__(self) -> TileFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------
    def _rows_of(self, batch: int) -> np.ndarray:
        return self.indices[batch * self.batch_size : (batch + 1) * self.batch_size]

    def _error(self, row: int, problem: str) -> TileReadError:
        x, y = int(self.grid.x[row]), int(self.grid.y[row])
        return TileReadError(
            f"{self.slide_name}: cannot read tile {row} at level-0 (x={x}, y={y}), "
            f"level {self.grid.read_level}: {problem}"
        )

    def _in_caller(self) -> Iterator[TileBatch]:
        reader = self.grid.reader(self.slide)
        side = self.grid.tile_px
        for batch in range(len(self)):
            rows = self._rows_of(batch)
            tiles = np.empty((len(rows), side, side, 3), dtype=np.uint8)
            for slot, row in enumerate(rows.tolist()):
                try:
                    tiles[slot] = reader(row)
                except Exception as error:
                    raise self._error(row, f"{type(error).__name__}: {error}") from error
            yield TileBatch(indices=rows, tiles=tiles)

    def _in_processes(self) -> Iterator[TileBatch]:
        import torch
        from torch.utils.data import DataLoader

        slide = self.slide
        override = float(slide.mpp) if slide.mpp_source == "override" and slide.mpp else None
        dataset = _BatchDecoder(
            str(slide.path), override, slide.backend, self.grid, self.indices, self.batch_size
        )
        loader = DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=self.decode_workers,  # torch.utils.data.DataLoader's name
            prefetch_factor=self.prefetch_batches,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            collate_fn=_as_is,
            multiprocessing_context=_context(),
            worker_init_fn=watch_parent,
        )
        try:
            self._iterator = iter(loader)
            for batch in range(len(self)):
                try:
                    item = next(self._iterator)
                except RuntimeError as error:  # a worker died (killed, out of memory)
                    row = int(self._rows_of(batch)[0])
                    raise self._error(row, f"the decode process stopped: {error}") from error
                if isinstance(item, _Failure):
                    raise self._error(item.row, item.problem)
                rows, tiles = item
                yield TileBatch(indices=rows, tiles=tiles.numpy())
        finally:
            self.close()


# -- in the worker processes ------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """What a worker hands back instead of a batch whose tile ``row`` failed."""

    row: int
    problem: str


def _as_is(item: Any) -> Any:
    return item


class _BatchDecoder:
    """A map-style dataset: item ``k`` is batch ``k`` (rows, tiles in shared memory).

    Each worker process holds its own copy and opens the slide on its first batch.
    """

    def __init__(
        self,
        slide_path: str,
        mpp_override: float | None,
        backend: str,
        grid: TileGrid,
        indices: np.ndarray,
        batch_size: int,
    ) -> None:
        self.slide_path = slide_path
        self.mpp_override = mpp_override
        self.backend = backend if backend in BACKEND_CHOICES else "auto"
        self.grid = grid
        self.indices = indices
        self.batch_size = batch_size
        self._reader: Callable[[int], np.ndarray] | None = None

    def __len__(self) -> int:
        return -(-int(self.indices.shape[0]) // self.batch_size)

    def __getitem__(self, batch: int) -> tuple[np.ndarray, Any] | _Failure:
        import torch

        rows = self.indices[batch * self.batch_size : (batch + 1) * self.batch_size]
        side = self.grid.tile_px
        # allocated in shared memory, so handing it to the consumer copies nothing
        tiles = torch.empty((len(rows), side, side, 3), dtype=torch.uint8).share_memory_()
        out = tiles.numpy()
        for slot, row in enumerate(rows.tolist()):
            try:
                out[slot] = self._tile_reader()(row)
            except Exception as error:
                return _Failure(row=row, problem=_describe(error))
        return rows, tiles

    def _tile_reader(self) -> Callable[[int], np.ndarray]:
        if self._reader is None:
            from napari_imilia.slide import open_slide

            try:
                slide = open_slide(self.slide_path, mpp=self.mpp_override, backend=self.backend)
            except Exception as error:
                raise SlideError(f"the decode process could not open the slide: {error}") from error
            self._reader = self.grid.reader(slide)
        return self._reader


def _describe(error: BaseException) -> str:
    if isinstance(error, SlideError) and "decode process" in str(error):
        return str(error)
    return f"{type(error).__name__}: {error}"
