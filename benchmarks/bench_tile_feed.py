"""Tile-feed benchmark: tiles/s of raw decoding, of the feed and of a whole prediction, in one run.

Run as ``python benchmarks/bench_tile_feed.py`` (about 5 minutes on a quiet 2-core machine;
``--quick`` for a 1-minute check). Uses a generated 1-gigapixel Aperio-like SVS (32768² px,
0.5 µm/px, JPEG tiles of 512 px: ``bench_open.write_bench_svs``, made once into
``--cache-dir``) unless ``--slide`` is given; detects its tissue, tiles it at 0.5 µm/px with
224 px tiles and times, on the first ``--max-tiles`` tiles of that grid, in one run:

- raw tiffslide: ``TiffSlide(path).zarr_group[level][y:y+h, x:x+w]`` per tile region, in this
  process, in 2 threads (the GIL bound), and in 1 and 2 worker processes that opened the
  slide beforehand (decoding only: the ceiling a feed can reach);
- ``TileFeed`` with 0 (in the caller), 1 and 2 worker processes: region read + resize +
  batches handed back, worker start included;
- ``extract_slide_features`` with the builtin ``imilia-stain-stats`` extractor (no cache) at
  0, 1 and 2 decode processes;
- unless ``--no-predict``: ``predict_slide`` on the whole slide (or ``--predict-slide``; demo
  model, builtin extractor, CPU, fresh output folder) with 0 decode processes and with the
  default, once each;
- the start cost of a worker per start method (fork server, spawn).

Every row runs once as a warm-up, then ``--repeats`` rounds run every row once in turn (so a
shared machine's drifting load hits all rows alike); the median and the best run are shown,
with the machine's 1-minute load average at the end of the rounds. *tiles per CPU-s* counts
the CPU seconds of every process involved (worker processes included): the cost per tile,
which other jobs disturb less than the wall time.
*steady tiles/s* leaves out the time to the first batch (worker start, slide opening).
Prints markdown tables; nothing asserts. Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

Box = tuple[int, int, int]


def _decode_boxes(path: str, level: int, boxes: list[Box]) -> tuple[float, float]:
    """Open the slide, then decode ``boxes``; (decode wall s, decode CPU s). Runs in workers."""
    import tiffslide

    array = tiffslide.TiffSlide(path).zarr_group[str(level)]
    start, cpu = time.perf_counter(), time.process_time()
    for x, y, size in boxes:
        array[y : y + size, x : x + size]
    return time.perf_counter() - start, time.process_time() - cpu


def _raw_in_processes(path: Path, level: int, boxes: list[Box], workers: int, batch: int):
    """Decode in ``workers`` processes (batches dealt round-robin, as the feed does); the
    rate counts decoding only: the slowest process's decode seconds."""
    from concurrent.futures import ProcessPoolExecutor

    from napari_imilia.tiling.feed import _context

    shares: list[list[Box]] = [[] for _ in range(workers)]
    for k, start in enumerate(range(0, len(boxes), batch)):
        shares[k % workers].extend(boxes[start : start + batch])

    def run() -> dict[str, float]:
        with ProcessPoolExecutor(workers, mp_context=_context()) as pool:
            results = list(
                pool.map(_decode_boxes, [str(path)] * workers, [level] * workers, shares)
            )
        return {"wall": max(w for w, _ in results), "cpu_other": sum(c for _, c in results)}

    return run


def _raw_here(path: Path, level: int, boxes: list[Box], threads: int) -> Callable[[], None]:
    import tiffslide

    array = tiffslide.TiffSlide(path).zarr_group[str(level)]

    def read(box: Box) -> None:
        x, y, size = box
        array[y : y + size, x : x + size]

    def run() -> None:
        if threads == 1:
            for box in boxes:
                read(box)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(read, boxes))

    return run


Sample = tuple[float, float, float | None]  # wall s, CPU s of all processes, s to 1st batch


def _sample(run: Callable[[], dict[str, float] | None]) -> Sample:
    """One timed call; ``run`` may report its own wall time (the caller's CPU then does not
    count), other processes' CPU seconds (``cpu_other``) and its first batch (``first``)."""
    start, cpu = time.perf_counter(), time.process_time()
    info = run() or {}
    wall = info.get("wall", time.perf_counter() - start)
    own_cpu = 0.0 if "wall" in info else time.process_time() - cpu
    return wall, own_cpu + info.get("cpu_other", 0.0), info.get("first")


def _interleaved(runs: list[Callable[[], object]], repeats: int) -> list[list[Sample]]:
    """A warm-up of each, then ``repeats`` rounds running every one once: rows see the same
    drift of a shared machine's load instead of the later rows getting a quieter one."""
    for run in runs:
        run()
    samples: list[list[Sample]] = [[] for _ in runs]
    for _ in range(repeats):
        for k, run in enumerate(runs):
            samples[k].append(_sample(run))
    return samples


def _feed(slide, grid, workers: int, batch: int) -> Callable[[], dict[str, float]]:
    """One pass of the feed; reports the first batch and the workers' CPU seconds."""
    import psutil

    from napari_imilia.tiling.feed import TileFeed

    def run() -> dict[str, float]:
        start = time.perf_counter()
        info = {"cpu_other": 0.0}
        with TileFeed(slide, grid, batch_size=batch, decode_workers=workers) as feed:
            for k, _ in enumerate(feed):
                if k == 0:
                    info["first"] = time.perf_counter() - start
                if k == len(feed) - 1 and feed._iterator is not None:  # workers still alive
                    for worker in feed._iterator._workers:
                        times = psutil.Process(worker.pid).cpu_times()
                        info["cpu_other"] += times.user + times.system
        return info

    return run


def _row(label: str, workers: str, n: int, samples: list[Sample]) -> float:
    walls = [wall for wall, _, _ in samples]
    median = statistics.median(walls)
    steady = "-"
    firsts = [first for _, _, first in samples if first is not None]
    if firsts:
        first = statistics.median(firsts)
        steady = f"{n / max(median - first, 1e-9):,.0f} (first batch {first:.2f} s)"
    cpu = sum(c for _, c, _ in samples)
    per_cpu = f"{n * len(samples) / cpu:,.0f}" if cpu > 0 else "-"
    load = os.getloadavg()[0]
    print(
        f"| {label} | {workers} | {median:.3f} | {n / median:,.0f} | {n / min(walls):,.0f} "
        f"| {steady} | {per_cpu} | {load:.1f} |",
        flush=True,
    )
    return n / median


def _start_cost(slide, grid, method: str, batch: int) -> float:
    from napari_imilia.tiling import feed as tile_feed

    saved = tile_feed.START_METHOD
    tile_feed.START_METHOD = method
    try:
        return float(_feed(slide, grid.take(slice(0, batch)), 1, batch)()["first"])
    finally:
        tile_feed.START_METHOD = saved


def _predict(path: Path, workers: int | None) -> tuple[float, int]:
    from napari_imilia.predict.slide import predict_slide

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = predict_slide(path, out, device="cpu", decode_workers=workers, progress=False)
        return time.perf_counter() - start, int(result.info["n_tiles"])


def bench_slide(args: argparse.Namespace) -> Path:
    if args.slide is not None:
        return args.slide
    from bench_open import write_bench_svs

    path = args.cache_dir / f"bench_{args.side}.svs"
    if not path.exists():
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        write_bench_svs(path, args.side)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=None, help="slide (default: generated)")
    parser.add_argument("--side", type=int, default=32768, help="generated slide side, px")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "imilia")
    parser.add_argument("--max-tiles", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-predict", action="store_true", help="skip predict_slide rows")
    parser.add_argument("--predict-slide", type=Path, default=None, help="slide for predict_slide")
    parser.add_argument("--quick", action="store_true", help="512 tiles, 1 repeat, no predict")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_tiles, args.repeats, args.no_predict = 512, 1, True

    import torch

    from napari_imilia.features.extract import extract_slide_features
    from napari_imilia.features.extractors import create_extractor
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.feed import default_decode_workers, usable_cores, warm_up
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    warm_up()  # the fork server imports while the slide is tiled
    path = bench_slide(args)
    slide = open_slide(path)
    full = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=224)
    grid = full.take(slice(0, min(args.max_tiles, full.n_tiles)))
    n, batch = grid.n_tiles, args.batch_size
    ds = slide.level_info[grid.read_level].downsample
    boxes = [
        (int(x // ds), int(y // ds), grid.read_size_px)
        for x, y in zip(grid.x.tolist(), grid.y.tolist(), strict=True)
    ]
    extractor = create_extractor("imilia-stain-stats", device="cpu")
    width0, height0 = slide.dimensions
    print(
        f"slide {path.name}: {width0} x {height0} px at {slide.mpp} µm/px; {full.n_tiles} "
        f"tissue tiles, the first {n} timed; {grid.tile_px} px at {grid.target_mpp} µm/px, "
        f"read at level {grid.read_level}; batches of {batch}"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"({usable_cores()} usable), load average {os.getloadavg()[0]:.1f} at start, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), CUDA "
        f"{'yes' if torch.cuda.is_available() else 'no'}; {args.repeats} timed runs per row"
    )
    print()
    print(
        "| path | workers | median s | tiles/s (median) | tiles/s (best) | steady tiles/s "
        "| tiles per CPU-s | load avg |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    raw = "raw tiffslide zarr decode"
    feed = "TileFeed (read + resize + batch)"
    features = f"extract_slide_features, {extractor.name}"

    def shown(workers: int) -> str:
        return f"{workers} process{'es' if workers > 1 else ''}" if workers else "0 (in the caller)"

    def extraction(workers: int) -> Callable[[], dict[str, float]]:
        def run() -> dict[str, float]:
            start = time.perf_counter()
            extract_slide_features(
                slide, grid, extractor, cache_dir=None, batch_size=batch,
                decode_workers=workers, progress=False,
            )  # fmt: skip
            return {"wall": time.perf_counter() - start}  # the workers' CPU is not counted

        return run

    level, raw_only = grid.read_level, f"{raw}, decode time only"
    rows: list[tuple[str, str, str, Callable[[], object]]] = [
        ("here1", raw, "1 (in the caller)", _raw_here(path, level, boxes, 1)),
        ("threads2", raw, "2 threads", _raw_here(path, level, boxes, 2)),
    ]
    rows += [
        (f"raw{w}", raw_only, shown(w), _raw_in_processes(path, level, boxes, w, batch))
        for w in (1, 2)
    ]
    rows += [(f"feed{w}", feed, shown(w), _feed(slide, grid, w, batch)) for w in (0, 1, 2)]
    rows += [(f"features{w}", features, shown(w), extraction(w)) for w in (0, 1, 2)]
    samples = _interleaved([run for *_, run in rows], args.repeats)
    rates = {
        key: _row(label, workers, n, got)
        for (key, label, workers, _), got in zip(rows, samples, strict=True)
    }
    if not args.no_predict:
        for workers in (0, None):
            seconds, tiles = _predict(args.predict_slide or path, workers)
            shown = f"default: {default_decode_workers('cpu')}" if workers is None else "0"
            _row(f"predict_slide, whole slide ({tiles} tiles)", shown, tiles, [(seconds, 0, None)])
    print()
    print("| start method | first batch of 1 worker after (s) |")
    print("| --- | ---: |")
    for method in ("forkserver", "spawn"):
        print(f"| {method} | {_start_cost(slide, grid, method, batch):.2f} |", flush=True)
    print()
    print(
        f"feed 2 processes / feed 1 process: {rates['feed2'] / rates['feed1']:.2f}x (target "
        f">= 1.6); feed 2 processes / raw decode in 2 processes: "
        f"{rates['feed2'] / rates['raw2']:.0%} (target >= 85%)"
    )
    slide.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
