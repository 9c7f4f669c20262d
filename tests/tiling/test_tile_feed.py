"""The tile feed: batches decoded in worker processes, in grid order, stopped cleanly."""

from __future__ import annotations

import multiprocessing
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_imilia.errors import ImiliaError
from napari_imilia.features.extract import ExtractionCancelled, extract_slide_features
from napari_imilia.slide import open_slide
from napari_imilia.tiling.feed import (
    TileFeed,
    TileReadError,
    default_decode_workers,
    torch_threads_beside,
    usable_cores,
)
from napari_imilia.tiling.grid import TileReader, make_tile_grid
from napari_imilia.tiling.tissue import detect_tissue
from support.images import ellipse, synthetic_he, write_pyramid_tiff
from support.processes import assert_no_decode_processes, decode_processes

SHAPE_HW = (1024, 1536)  # 0.5 µm/px: 64 px tiles at 0.5 µm/px read level 0 as is
CHUNK_PX = 256  # the TIFF's tile side


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    tissue = ellipse(SHAPE_HW, (512, 768), (450, 700))
    path = tmp_path_factory.mktemp("feed") / "case-02.tiff"
    return write_pyramid_tiff(path, synthetic_he(tissue, seed=5), mpp=0.5, n_levels=2)


@pytest.fixture
def slide(slide_path):
    with open_slide(slide_path) as opened:
        yield opened


@pytest.fixture
def grid(slide):
    return make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=64)


def in_caller(slide, grid, rows) -> np.ndarray:
    reader = TileReader(slide, grid)
    return np.stack([reader(int(row)) for row in rows])


@pytest.mark.parametrize("decode_workers", [0, 1, 2])
def test_feed_gives_the_in_caller_tiles_in_grid_order(slide, grid, decode_workers):
    expected = in_caller(slide, grid, range(grid.n_tiles))
    rows, tiles = [], []
    with TileFeed(slide, grid, batch_size=7, decode_workers=decode_workers) as feed:
        assert len(feed) == -(-grid.n_tiles // 7)
        assert feed.decode_workers == decode_workers
        for batch in feed:
            assert batch.tiles.shape == (len(batch), 64, 64, 3)
            assert batch.tiles.dtype == np.uint8
            rows.extend(batch.indices.tolist())
            tiles.append(batch.tiles)
    assert rows == list(range(grid.n_tiles))
    np.testing.assert_array_equal(np.concatenate(tiles), expected)  # pixel-identical
    assert_no_decode_processes()


def test_feed_reads_a_subset_of_rows_in_the_given_order(slide, grid):
    rows = np.arange(grid.n_tiles)[::-3][:20]  # descending, every third tile
    got_rows, got_tiles = [], []
    for batch in TileFeed(slide, grid, batch_size=6, decode_workers=2, indices=rows):
        got_rows.extend(batch.indices.tolist())
        got_tiles.append(batch.tiles)
    assert got_rows == rows.tolist()
    np.testing.assert_array_equal(np.concatenate(got_tiles), in_caller(slide, grid, rows))
    assert_no_decode_processes()


def test_feed_in_the_caller_reads_only_the_chunks_under_its_tiles(slide, grid, chunk_reads):
    keys = chunk_reads
    rows = np.arange(0, grid.n_tiles, 5)
    for _ in TileFeed(slide, grid, batch_size=8, decode_workers=0, indices=rows):
        pass
    under_tiles = 0
    for x, y in zip(grid.x[rows].tolist(), grid.y[rows].tolist(), strict=True):
        cols = (x + grid.footprint_px - 1) // CHUNK_PX - x // CHUNK_PX + 1
        chunk_rows = (y + grid.footprint_px - 1) // CHUNK_PX - y // CHUNK_PX + 1
        under_tiles += cols * chunk_rows
    assert keys and all(key.startswith("0/") for key in keys)
    assert len(keys) == under_tiles  # one region read per tile, nothing else
    assert len(set(keys)) < 4 * 6  # fewer than the 24 chunks of the whole level


def test_cancelled_feed_stops_its_processes(slide, grid):
    feed = TileFeed(slide, grid, batch_size=4, decode_workers=2, prefetch_batches=2)
    for batch in feed:
        assert batch.indices.tolist() == [0, 1, 2, 3]
        assert decode_processes()  # the workers run while the consumer holds a batch
        break
    assert_no_decode_processes()
    with pytest.raises(RuntimeError, match="once"):
        iter(feed)
    feed = TileFeed(slide, grid, batch_size=4, decode_workers=2)
    with pytest.raises(KeyboardInterrupt), feed:  # Ctrl-C in the consumer's loop
        for _ in feed:
            raise KeyboardInterrupt
    assert_no_decode_processes()


def test_cancelled_extraction_stops_its_processes(slide, grid):
    cancel = threading.Event()

    class Embedder:
        name, dim, weights_sha256 = "mean", 3, None

        def embed(self, tiles: np.ndarray) -> np.ndarray:
            cancel.set()  # the user presses Cancel while the first batch is embedded
            return tiles.reshape(len(tiles), -1, 3).mean(axis=1)

    with pytest.raises(ExtractionCancelled, match="cancelled after 8 of"):
        extract_slide_features(
            slide, grid, Embedder(), cache_dir=None, batch_size=8, decode_workers=2,
            progress=False, cancel=cancel,
        )  # fmt: skip
    assert_no_decode_processes()


def _corrupt_chunk(path: Path, chunk_yx: tuple[int, int]) -> None:
    """Overwrite the compressed bytes of one level-0 chunk with garbage (same length)."""
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        columns = -(-page.imagewidth // CHUNK_PX)
        index = chunk_yx[0] * columns + chunk_yx[1]
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x07not zlib" * (count // 9) + b"\x00" * (count % 9))


def test_a_tile_that_fails_in_a_worker_is_named(slide_path, tmp_path):
    path = tmp_path / "corrupt.tiff"
    shutil.copyfile(slide_path, path)
    with open_slide(path) as slide:
        grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=64)
        chunk = (2, 3)
        in_chunk = (grid.y // CHUNK_PX == chunk[0]) & (grid.x // CHUNK_PX == chunk[1])
        bad = int(np.flatnonzero(in_chunk)[0])  # the first tile of the grid in that chunk
        _corrupt_chunk(path, chunk)
        x, y = int(grid.x[bad]), int(grid.y[bad])
        done: list[int] = []
        with pytest.raises(TileReadError, match=rf"tile {bad} at level-0 \(x={x}, y={y}\)"):
            for batch in TileFeed(slide, grid, batch_size=5, decode_workers=2):
                done.extend(batch.indices.tolist())
        assert done == list(range(bad // 5 * 5))  # every batch before the failing one
        assert_no_decode_processes()


def test_a_slide_removed_before_decoding_is_an_error_naming_the_first_tile(slide_path, tmp_path):
    path = tmp_path / "removed.tiff"
    shutil.copyfile(slide_path, path)
    with open_slide(path) as slide:
        grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=64)
        path.unlink()  # the workers open the slide by its path: gone
        x, y = int(grid.x[0]), int(grid.y[0])
        with pytest.raises(ImiliaError, match=rf"tile 0 at level-0 \(x={x}, y={y}\).*not found"):
            for _ in TileFeed(slide, grid, batch_size=5, decode_workers=1):
                pass
    assert_no_decode_processes()


def test_daemonic_processes_decode_in_the_caller(slide, grid, monkeypatch):
    """A dask.distributed worker process is daemonic and may not start children."""
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert default_decode_workers("cuda") == 0
    with TileFeed(slide, grid, batch_size=16, decode_workers=2) as feed:
        assert feed.decode_workers == 0
        assert sum(len(b) for b in feed) == grid.n_tiles
    assert not decode_processes()


def test_default_workers_leave_cores_to_the_extractor(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert usable_cores() == 16
    assert default_decode_workers("cuda") == 15  # one core drives the GPU
    assert default_decode_workers("cpu") == 4
    assert torch_threads_beside(4) == 12
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert default_decode_workers("cpu") == 1 and torch_threads_beside(1) == 1
    assert default_decode_workers("cuda") == 1


def test_feed_rejects_bad_settings(slide, grid):
    with pytest.raises(ValueError, match="at least 1"):
        TileFeed(slide, grid, batch_size=0)
    with pytest.raises(ValueError, match="0 or more"):
        TileFeed(slide, grid, decode_workers=-1)
    assert TileFeed(slide, grid, batch_size=grid.n_tiles, decode_workers=8).decode_workers == 1


def test_resized_tiles_match_the_in_caller_path(slide):
    """0.75 µm/px tiles of a 0.5 µm/px slide: 96 level-0 px read, resized to 64 px."""
    grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.75, tile_px=64)
    assert (grid.read_level, grid.read_size_px) == (0, 96)
    rows = np.arange(min(24, grid.n_tiles))
    tiles = [b.tiles for b in TileFeed(slide, grid, batch_size=5, decode_workers=2, indices=rows)]
    np.testing.assert_array_equal(np.concatenate(tiles), in_caller(slide, grid, rows))
    assert_no_decode_processes()


def test_pinned_batches_without_a_gpu_are_plain_batches(slide, grid):
    rows = np.arange(10)
    with TileFeed(
        slide, grid, batch_size=4, decode_workers=1, indices=rows, pin_memory=True
    ) as feed:
        tiles = np.concatenate([b.tiles for b in feed])
    np.testing.assert_array_equal(tiles, in_caller(slide, grid, rows))


def test_cpu_extraction_shares_the_cores_with_its_decoders(slide, grid, monkeypatch):
    """Beside 1 decode process on 2 cores, torch gets 1 thread, and its count comes back."""
    import torch

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    seen: list[int] = []

    class Embedder:
        name, dim, weights_sha256 = "threads", 1, None

        def embed(self, tiles: np.ndarray) -> np.ndarray:
            seen.append(torch.get_num_threads())
            return np.zeros((len(tiles), 1), dtype=np.float32)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        extract_slide_features(
            slide, grid, Embedder(), cache_dir=None, batch_size=64, decode_workers=1, progress=False
        )
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert_no_decode_processes()


def test_a_killed_worker_is_an_error_and_the_others_stop(slide, grid):
    feed = TileFeed(slide, grid, batch_size=2, decode_workers=2, prefetch_batches=1)
    with pytest.raises(TileReadError, match=r"cannot read tile \d+ at level-0 .*decode process"):
        for k, _ in enumerate(feed):
            if k == 0:
                victim = decode_processes()[0]
                victim.kill()
                victim.wait(10)
    assert_no_decode_processes()
