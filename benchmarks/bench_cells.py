"""Cell-backend benchmark: speed of the classical backend and, with ``--accuracy``, its
detection and classification accuracy on synthetic H&E with planted nuclei.

Run as ``python benchmarks/bench_cells.py [--accuracy] [--seeds 100:120]``. Speed: CPU and
wall ms per 224 x 224 tile at 0.5 µm/px on one thread (median over tiles, after one warm-up), on
synthetic tiles (normal and inflamed colonic mucosa) and on every 224-px tile of
``small_HE.svs`` (../shared/data, skipped when absent) holding at least 50% tissue; plus
HistoPLUS JSON import of a generated file. Accuracy (``napari_imilia.interpret.cells.evaluate``):
planted nucleated cells matched one to one to detections whose centroids lie within 4 µm
(Hungarian matching); detection recall = matched / planted, precision = matched / (matched +
unmatched detections more than 3 µm inside the tile); centroid error of matched cells (µm);
count error per tile |detected - planted| / planted; per class recall and precision (a
class's precision counts its false detections too); the confusion matrix counts matched
pairs. ``--no-speed`` skips the timings. Prints markdown; nothing asserts.

With ``--deep``: the ``cellvit`` backend with the full-size HistoPLUS 40x architecture
(ViT-B/14 + 4 registers, full decoder, 142.8 M parameters) and seeded random weights, on the
CPU with one torch thread: the network on one 224 px window (batch 1 and per window in a
batch of 8), HoVer post-processing and measurements of one 224 px window from ideal maps of
a synthetic tile, and ``segment`` end to end on a 224 px tile at 0.25 µm/px (one window) and
at 0.5 µm/px (resampled to 448 px at 0.25: 9 windows of 224 px overlapping by 64).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/scipy load

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from napari_imilia.demo.synthetic import render_tile
from napari_imilia.interpret.cells.classical import ClassicalBackend
from napari_imilia.interpret.cells.evaluate import AccuracyReport, evaluate_tile
from napari_imilia.interpret.cells.histoplus_json import read_histoplus_json
from napari_imilia.interpret.cells.histoplus_json_write import write_histoplus_json
from napari_imilia.interpret.cells.stain import optical_density, tissue_from_od
from napari_imilia.interpret.cells.types import TileCells

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "small_HE.svs"


def _time_ms(backend: ClassicalBackend, rgb: np.ndarray, mpp: float) -> tuple[float, float]:
    """(wall, CPU) milliseconds of one ``segment`` call; CPU time is what one core spends,
    unaffected by other processes sharing the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    backend.segment(rgb, mpp=mpp, level0_xy=(0, 0), level0_per_px=1.0)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def speed(seeds: range) -> list[tuple[str, int, tuple[float, float]]]:
    backend = ClassicalBackend()
    tiles = [render_tile(224, 0.5, seed=s, inflamed=s % 2 == 1).rgb for s in seeds]
    _time_ms(backend, tiles[0], 0.5)
    rows = [("synthetic 224 px, 0.5 µm/px", len(tiles), _median(backend, tiles, 0.5))]
    fine = [render_tile(448, 0.25, seed=s, inflamed=True).rgb for s in list(seeds)[:6]]
    rows.append(
        ("synthetic 448 px, 0.25 µm/px (resampled)", len(fine), _median(backend, fine, 0.25))
    )
    if SHARED.is_file():
        import tiffslide

        image = np.asarray(tiffslide.TiffSlide(SHARED).read_region((0, 0), 0, (2220, 2967)))
        real = []
        for y in range(0, image.shape[0] - 223, 224):
            for x in range(0, image.shape[1] - 223, 224):
                rgb = np.ascontiguousarray(image[y : y + 224, x : x + 224, :3])
                if tissue_from_od(optical_density(rgb), mpp=0.499).mean() >= 0.5:
                    real.append(rgb)
        rows.append(("small_HE.svs tissue tiles, 224 px", len(real), _median(backend, real, 0.499)))
    return rows


def _median(backend: ClassicalBackend, tiles: list[np.ndarray], mpp: float) -> tuple[float, float]:
    times = [_time_ms(backend, rgb, mpp) for rgb in tiles]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def planted_nuclei(tile) -> tuple[np.ndarray, list[str]]:
    """Continuous tile-pixel centres and classes of a synthetic tile's nucleated cells whose
    centre lies in the tile (red cells have no nucleus)."""
    height, width = tile.rgb.shape[:2]
    planted = [
        c
        for c in tile.cells
        if c.class_name != "Red blood cell" and 0 <= c.x_px < width and 0 <= c.y_px < height
    ]
    # planted centres are pixel indices (pixel j centred at j): + 0.5 in continuous px
    xy = np.array([[c.x_px, c.y_px] for c in planted], dtype=np.float64).reshape(-1, 2) + 0.5
    return xy, [c.class_name for c in planted]


def accuracy(seeds: range, *, epithelium: bool) -> AccuracyReport:
    """Normal and inflamed 224 px tiles at 0.5 µm/px of each seed against their planted
    nuclei (``cells.evaluate``: matched within 4 µm)."""
    backend = ClassicalBackend()
    report = AccuracyReport()
    for seed in seeds:
        for inflamed in (False, True):
            tile = render_tile(224, 0.5, seed=seed, inflamed=inflamed)
            extra = {"epithelium_mask": tile.epithelium_mask} if epithelium else {}
            cells = backend.segment(tile.rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0, **extra)
            xy, classes = planted_nuclei(tile)
            report.add([evaluate_tile(cells, xy, classes, tile_size_px=(224, 224))])
    return report


def json_import(side_tiles: int = 20) -> tuple[int, float, float]:
    """Write a slide of ``side_tiles`` x ``side_tiles`` synthetic tiles' cells, read it back,
    and cut 224-px regions out of it."""
    backend = ClassicalBackend()
    row = [
        backend.segment(
            render_tile(224, 0.5, seed=i, inflamed=True).rgb,
            mpp=0.5,
            level0_xy=(0, 0),
            level0_per_px=1.0,
        )
        for i in range(side_tiles)
    ]
    tiles = [
        _shifted(cells, 224 * i, 224 * j) for j in range(side_tiles) for i, cells in enumerate(row)
    ]
    side_px = 224 * side_tiles
    with tempfile.TemporaryDirectory() as folder:
        path = write_histoplus_json(
            Path(folder) / "cells.json", tiles, level0_dimensions=(side_px, side_px)
        )
        start = time.perf_counter()
        cells = read_histoplus_json(path, level0_dimensions=(side_px, side_px))
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(side_tiles):
            cells.region_cells((224 * i, 224 * i), (224, 224), mpp=0.5, level0_per_px=1.0)
        region_ms = (time.perf_counter() - start) * 1000 / side_tiles
    return len(cells), read_s, region_ms


def _shifted(cells: TileCells, dx: int, dy: int) -> TileCells:
    """The same cells moved by (dx, dy) level-0 pixels."""
    table = cells.table.copy()
    table["centroid_x"] += dx
    table["centroid_y"] += dy
    x0, y0 = cells.level0_xy
    offset = np.array([dx, dy], dtype=np.float64)
    return dataclasses.replace(
        cells,
        table=table,
        contours=[c + offset for c in cells.contours],
        level0_xy=(x0 + dx, y0 + dy),
    )


def _timed(function, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) ms of ``function()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        times.append(((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000))
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def deep_speed() -> list[tuple[str, int, tuple[float, float]]]:
    """The CellViT backend at full size with random weights (see the module docstring)."""
    import torch

    from napari_imilia.interpret.cells.cellvit import HISTOPLUS_40X, CellViT, CellViTBackend
    from napari_imilia.interpret.cells.cellvit.backend import cells_from_maps
    from napari_imilia.interpret.cells.cellvit.post import hv_targets
    from napari_imilia.interpret.cells.cellvit.windows import TileMaps
    from napari_imilia.interpret.cells.measure import build_tile_cells

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    backend = CellViTBackend(CellViT(HISTOPLUS_40X).init_random(seed=0), device="cpu")
    one = np.stack([render_tile(224, 0.25, seed=1, inflamed=True).rgb])
    eight = np.stack([render_tile(224, 0.25, seed=s, inflamed=True).rgb for s in range(8)])
    backend.predict_windows(one)  # warm-up
    rows = [("network, 1 window (batch 1)", 3, _timed(lambda: backend.predict_windows(one), 3))]
    wall, cpu = _timed(lambda: backend.predict_windows(eight), 1)
    rows.append(("network, per window in a batch of 8", 8, (wall / 8, cpu / 8)))

    def post(seed: int) -> None:
        tile = render_tile(224, 0.25, seed=seed, inflamed=True)
        labels = tile.instance_labels
        types = np.eye(15, dtype=np.float32)[tile.class_ids].transpose(2, 0, 1)
        maps = TileMaps((labels > 0).astype(np.float32), hv_targets(labels), types)
        found, class_ids, probability = cells_from_maps(maps, np.arange(15), backend.hover)
        build_tile_cells(
            found,
            class_ids,
            probability,
            tile.rgb,
            mpp=0.25,
            level0_xy=(0, 0),
            level0_per_px=1.0,
            backend="cellvit",
        )

    times = [_timed(lambda s=s: post(s), 1) for s in range(5)]
    rows.append(
        (
            "post-processing + table, 1 window (ideal maps)",
            5,
            (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)),
        )
    )
    fine = render_tile(224, 0.25, seed=2, inflamed=True).rgb
    rows.append(
        (
            "segment: 224 px tile at 0.25 µm/px (1 window)",
            3,
            _timed(lambda: backend.segment(fine, mpp=0.25, level0_xy=(0, 0), level0_per_px=1.0), 3),
        )
    )
    coarse = render_tile(224, 0.5, seed=3, inflamed=True).rgb
    rows.append(
        (
            "segment: 224 px tile at 0.5 µm/px (448 px, 9 windows)",
            1,
            _timed(
                lambda: backend.segment(coarse, mpp=0.5, level0_xy=(0, 0), level0_per_px=2.0), 1
            ),
        )
    )
    return rows


def _confusion_table(confusion: Counter) -> str:
    truths = sorted({t for t, _ in confusion})
    predicted = sorted({p for _, p in confusion})
    lines = [
        "| planted \\ predicted | " + " | ".join(predicted) + " |",
        "| --- |" + " ---: |" * len(predicted),
    ]
    for truth in truths:
        counts = [confusion[(truth, p)] for p in predicted]
        lines.append(f"| {truth} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def _class_table(report: AccuracyReport) -> str:
    lines = [
        "| class | planted (matched) | recall | predicted | precision |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in report.per_class().items():
        lines.append(
            f"| {name} | {row['n_known']} | {row['recall']:.2f} | {row['n_predicted']} | "
            f"{row['precision']:.2f} |"
        )
    return "\n".join(lines)


def _print_accuracy(seeds: str) -> None:
    for epithelium in (False, True):
        report = accuracy(_seed_range(seeds), epithelium=epithelium)
        label = "with the planted epithelium mask" if epithelium else "no epithelium mask"
        print(
            f"\nSynthetic seeds {seeds}, normal + inflamed, {label}: {len(report.tiles)} tiles, "
            f"{report.n_known} planted nuclei; detection recall {report.recall:.3f}, "
            f"precision {report.precision:.3f}; centroid error median "
            f"{report.position_error_um(0.5):.2f} µm, 95th percentile "
            f"{report.position_error_um(0.95):.2f} µm; count error per tile median "
            f"{100 * report.count_error(0.5):.1f}%, max {100 * report.count_error(1.0):.1f}%\n"
        )
        print(_class_table(report))
        print()
        print(_confusion_table(report.confusion))


def _seed_range(text: str) -> range:
    start, stop = (int(v) for v in text.split(":"))
    return range(start, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accuracy", action="store_true", help="also measure accuracy")
    parser.add_argument("--seeds", default="100:120", help="synthetic seeds, start:stop")
    parser.add_argument("--deep", action="store_true", help="also time the cellvit backend")
    parser.add_argument("--no-speed", action="store_true", help="skip the classical timings")
    args = parser.parse_args()
    seeds = _seed_range(args.seeds)
    machine = platform.processor() or platform.machine()
    threads = os.environ["OMP_NUM_THREADS"]
    print(f"{machine}, python {platform.python_version()}, OMP_NUM_THREADS={threads}\n")
    if not args.no_speed:
        print("| tiles | n | CPU ms/tile | tiles/s per core | wall ms/tile |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, count, (wall, cpu) in speed(seeds):
            print(f"| {name} | {count} | {cpu:.1f} | {1000 / cpu:.1f} | {wall:.1f} |")
        n_cells, read_s, region_ms = json_import()
        print(
            f"\nHistoPLUS JSON: read {n_cells} cells in {read_s:.2f} s; "
            f"one 224-px region in {region_ms:.1f} ms"
        )
    if args.deep:
        print("\nCellViT, HistoPLUS 40x architecture, random weights, CPU:\n")
        print("| step | n | CPU ms | wall ms |")
        print("| --- | ---: | ---: | ---: |")
        for name, count, (wall, cpu) in deep_speed():
            print(f"| {name} | {count} | {cpu:.0f} | {wall:.0f} |")
    if args.accuracy:
        _print_accuracy(args.seeds)


if __name__ == "__main__":
    main()
