"""Tile-feed benchmark: tiles/s of the threaded feed against raw tiffslide zarr decoding.

Run as ``python benchmarks/bench_tile_feed.py [--slide PATH] [--mpp MPP]``. Uses the generated
sample slide (``napari_imilia.sample.sample_slide_path``) unless ``--slide`` is given; detects
its tissue and tiles it at ``--target-mpp`` (0.5) with ``--tile-px`` (224) tiles, then times,
on the first ``--max-tiles`` tiles of that grid, in one run:

- raw tiffslide: ``TiffSlide(path).zarr_group[level][y:y+h, x:x+w]`` for each tile's region at
  the read level, in 1 and 2 threads (decode only: no resize, no batching);
- ``Slide.read_region`` (through the dask array of the level), 1 thread, for reference;
- ``TileFeed`` with 0 (consumer thread), 1 and 2 workers: region read + resize + batches;
- ``extract_slide_features`` end to end with the builtin ``imilia-stain-stats`` extractor on
  the CPU (no cache), and the extractor alone on tiles already in memory.

Each row is timed ``--repeats`` times after one warm-up (the file is in the page cache); the
median and the best run are shown (the best run is the least disturbed on a shared machine),
with the cores the process really got (its CPU seconds / wall seconds) and the tiles per CPU
second, i.e. per core actually used, which other jobs on a shared machine disturb less.
Prints a markdown table; nothing asserts. Figures go to docs/tiling_features.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _times_s(run: Callable[[], object], repeats: int) -> tuple[list[float], float]:
    """Wall seconds of each timed run, and the process CPU seconds of all of them."""
    run()
    times, cpu = [], 0.0
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - start)
        cpu += time.process_time() - cpu_start
    return times, cpu


def _raw_zarr(path: Path, level: int, boxes: list[tuple[int, int, int]], threads: int):
    import tiffslide

    handle = tiffslide.TiffSlide(path)
    array = handle.zarr_group[str(level)]

    def read(box: tuple[int, int, int]) -> np.ndarray:
        x, y, size = box
        return array[y : y + size, x : x + size]

    def run() -> None:
        if threads == 1:
            for box in boxes:
                read(box)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(read, boxes))

    return run


def _builtin_extractor():
    from napari_imilia.extractors import create_extractor

    return create_extractor("imilia-stain-stats", device="cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=None, help="slide (default: the sample)")
    parser.add_argument("--mpp", type=float, default=None, help="level-0 µm/px override")
    parser.add_argument("--target-mpp", type=float, default=0.5)
    parser.add_argument("--tile-px", type=int, default=224)
    parser.add_argument("--max-tiles", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from napari_imilia.features import extract_slide_features
    from napari_imilia.slide import open_slide
    from napari_imilia.tile_feed import TileFeed
    from napari_imilia.tiling import TileReader, make_tile_grid
    from napari_imilia.tissue import detect_tissue

    path = args.slide
    if path is None:
        from napari_imilia.sample import sample_slide_path

        path = sample_slide_path()
    slide = open_slide(path, mpp=args.mpp)
    tissue = detect_tissue(slide)
    full = make_tile_grid(slide, tissue, target_mpp=args.target_mpp, tile_px=args.tile_px)
    keep = slice(0, min(args.max_tiles, full.n_tiles))
    grid = full.take(keep)
    n = grid.n_tiles
    ds = slide.level_info[grid.read_level].downsample
    boxes = [
        (int(x // ds), int(y // ds), grid.read_size_px)
        for x, y in zip(grid.x.tolist(), grid.y.tolist(), strict=True)
    ]
    extractor = _builtin_extractor()
    tiles = np.stack([TileReader(slide, grid)(i) for i in range(n)])

    def feed(workers: int) -> Callable[[], None]:
        def run() -> None:
            for _ in TileFeed(slide, grid, batch_size=args.batch_size, num_workers=workers):
                pass

        return run

    def read_region() -> None:
        size = (grid.read_size_px, grid.read_size_px)
        for x, y in zip(grid.x.tolist(), grid.y.tolist(), strict=True):
            slide.read_region((x, y), grid.read_level, size)

    def embed_only() -> None:
        for start in range(0, n, args.batch_size):
            extractor.embed(tiles[start : start + args.batch_size])

    def end_to_end() -> None:
        extract_slide_features(
            slide, grid, extractor, cache_dir=None, batch_size=args.batch_size,
            num_workers=2, progress=False,
        )  # fmt: skip

    raw = "raw tiffslide zarr decode"
    rows = [
        (raw, "1 thread", _raw_zarr(slide.path, grid.read_level, boxes, 1)),
        (raw, "2 threads", _raw_zarr(slide.path, grid.read_level, boxes, 2)),
        ("Slide.read_region (dask)", "1 thread", read_region),
        ("TileFeed (read + resize + batch)", "0 workers", feed(0)),
        ("TileFeed (read + resize + batch)", "1 worker", feed(1)),
        ("TileFeed (read + resize + batch)", "2 workers", feed(2)),
        (f"{extractor.name} embed only (tiles in memory)", "-", embed_only),
        (f"extract_slide_features, {extractor.name}", "2 workers", end_to_end),
    ]
    width0, height0 = slide.dimensions
    print(
        f"slide {slide.path.name}: {width0} x {height0} px at {slide.mpp} µm/px, "
        f"{slide.native_level_count} native levels; {full.n_tiles} tissue tiles, {n} timed; "
        f"{grid.tile_px} px at {grid.target_mpp} µm/px = {grid.footprint_px} level-0 px, read at "
        f"level {grid.read_level} as {grid.read_size_px} px"
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(load average {load} at start), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )
    print(f"{args.repeats} timed runs per row after a warm-up")
    print()
    print(
        "| path | workers | median s | tiles/s (median) | tiles/s (best run) | cores used "
        "| tiles per CPU-s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, workers, run in rows:
        times, cpu_s = _times_s(run, args.repeats)
        median = statistics.median(times)
        print(
            f"| {label} | {workers} | {median:.3f} | {n / median:,.0f} | {n / min(times):,.0f} "
            f"| {cpu_s / sum(times):.2f} | {n * len(times) / cpu_s:,.0f} |",
            flush=True,
        )
    slide.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
