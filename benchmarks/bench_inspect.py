"""Tile inspection latency ("tile click to masks shown") and batch throughput.

Run from the repository root:

    python benchmarks/bench_inspect.py                     # core latency + batch
    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/bench_inspect.py --gui

1. **Core**: ``inspect_tile`` (classical cells + stain-heuristic epithelium + markers +
   epithelium polygons, with its 8 µm context margin) on 224 px tiles at 0.5 µm/px of the
   generated sample slide (tiles with >= 50% tissue, every ``--step``-th) and of
   ``small_HE.svs`` (../shared/data, skipped when absent); median wall and CPU ms per tile
   after one warm-up, on one thread (``OMP_NUM_THREADS=1``); CPU ms with ``context_um=0``;
   the time split into its stages (read, tissue, epithelium, cells, markers + polygons)
   measured by running the same calls one by one on the padded tile.
2. **GUI** (``--gui``, needs a display): in a napari viewer with the Tile inspector dock,
   the wall time from ``session.select_tile`` (what a canvas click or the Top tiles list
   does) until both Labels layers show the new tile and Qt has processed its events
   (worker thread hop and layer upload included; a shown 1200 x 900 window).
3. **Batch**: ``inspect_slide(tiles="all")`` on the sample slide with 1 and 2 worker
   processes (``--batch-tiles`` of its scored tiles), tiles per second including process
   start-up and writing the five files.

Nothing here asserts; the figures go to docs/performance.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/scipy load

import argparse
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "small_HE.svs"


def tissue_tiles(slide, step: int):
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=224)
    return grid.to_frame().iloc[::step].reset_index(drop=True)


def core_latency(slide, tiles) -> dict[str, float]:
    """Median ms per tile: total wall and CPU, and each stage's wall time."""
    from napari_imilia.interpret import CONTEXT_UM, TileBox, inspect_tile, read_tile_at_mpp
    from napari_imilia.interpret.cells import create_cell_backend
    from napari_imilia.interpret.cells.stain import optical_density, tissue_from_od
    from napari_imilia.interpret.context import context_box
    from napari_imilia.interpret.epithelium import epithelium_polygons, segment_epithelium
    from napari_imilia.interpret.markers import tile_markers

    backend = create_cell_backend("classical")
    rows = [row for _, row in tiles.iterrows()]
    inspect_tile(slide, rows[0], cell_backend=backend)  # warm-up
    totals, cpus, n_cells, alone_cpus = [], [], [], []
    margin = math.ceil(CONTEXT_UM / slide.require_mpp())
    stages: dict[str, list[float]] = {k: [] for k in ("read", "tissue", "epi", "cells", "rest")}
    for row in rows:
        wall, cpu = time.perf_counter(), time.process_time()
        result = inspect_tile(slide, row, cell_backend=backend)
        totals.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        n_cells.append(result.n_cells)
        cpu = time.process_time()
        inspect_tile(slide, row, cell_backend=backend, context_um=0.0)
        alone_cpus.append(time.process_time() - cpu)
        box = context_box(TileBox.from_row(row), margin)  # the stages see the context too
        t0 = time.perf_counter()
        rgb, mpp, per_px = read_tile_at_mpp(slide, box, 0.5)
        t1 = time.perf_counter()
        tissue = tissue_from_od(optical_density(rgb), mpp=mpp)
        t2 = time.perf_counter()
        epi = segment_epithelium(rgb, mpp=mpp, tissue_mask=tissue)
        t3 = time.perf_counter()
        cells = backend.segment(
            rgb,
            mpp=mpp,
            level0_xy=(box.x, box.y),
            level0_per_px=per_px,
            tissue_mask=tissue,
            epithelium_mask=epi.mask,
        )
        t4 = time.perf_counter()
        tile_markers(cells, epi.mask, tissue)
        epithelium_polygons(
            epi.mask, mpp=mpp, level0_xy=(box.x, box.y), level0_per_px=per_px, min_area_um2=20.0
        )
        t5 = time.perf_counter()
        for key, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[key].append(seconds)
    out = {
        "n": len(rows),
        "wall_ms": statistics.median(totals) * 1000,
        "cpu_ms": statistics.median(cpus) * 1000,
        "alone_cpu_ms": statistics.median(alone_cpus) * 1000,
        "p90_ms": float(np.percentile(totals, 90)) * 1000,
        "cells": statistics.median(n_cells),
    }
    out.update({f"{k}_ms": statistics.median(v) * 1000 for k, v in stages.items()})
    return out


def gui_latency(slide_path: Path, results: Path, repeats: int) -> tuple[float, float]:
    """Median seconds from ``select_tile`` to both Labels layers showing the tile, and
    median seconds of ``inspect_tile`` itself inside the worker thread."""
    os.environ["IMILIA_RESULTS_DIR"] = str(results)
    os.environ["IMILIA_CONFIG_DIR"] = str(results / "config")
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_imilia._napari.roles import CELLS_ROLE, EPITHELIUM_ROLE, layers_with_role
    from napari_imilia._napari.state import viewer_state

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 900)
    viewer.open(str(slide_path), plugin="napari-imilia")
    viewer.window.add_plugin_dock_widget("napari-imilia", "Tile inspector")
    app = QApplication.instance()
    session = viewer_state(viewer).session
    ids = session.ranked_tiles(repeats + 1)["tile_id"].astype(str).tolist()

    def shown(tile_id: str) -> bool:
        layers = [*layers_with_role(viewer, CELLS_ROLE), *layers_with_role(viewer, EPITHELIUM_ROLE)]
        return len(layers) == 2 and all(x.metadata.get("tile_id") == tile_id for x in layers)

    loop = QEventLoop()
    # the inspector stores the result (tile_inspected), then updates the layers in the
    # same slot; quitting on the next loop turn stops right after that, with no polling
    session.tile_inspected.connect(lambda *_: QTimer.singleShot(0, loop.quit))
    samples, worker_s = [], []
    for i, tile_id in enumerate(ids):
        start = time.perf_counter()
        session.select_tile(tile_id)
        loop.exec_()  # the main thread idles in Qt's loop, as it does for a real click
        app.processEvents()  # the redraw of the new layers
        if not shown(tile_id):
            raise RuntimeError(f"tile {tile_id} was not shown")
        if i:  # the first one is the warm-up
            samples.append(time.perf_counter() - start)
            worker_s.append(session.cached_inspection(tile_id).seconds)
    viewer.close()
    return statistics.median(samples), statistics.median(worker_s)


def score(slide_path: Path, folder: Path) -> Path:
    import torch

    from napari_imilia.features.extractors import create_extractor
    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    torch.manual_seed(0)
    extractor = create_extractor("imilia-stain-stats")
    model = create_model("abmil", in_dim=extractor.dim)
    model_path = save_model(
        model, folder / "bench.safetensors", extractor=extractor.name, mpp=0.5, tile_px=224
    )
    predict_slide(slide_path, folder / "results", model_path=model_path, progress=False)
    return folder / "results"


def batch(slide_path: Path, results: Path, n_tiles: int, workers: int) -> tuple[int, float]:
    from napari_imilia.interpret import inspect_slide

    start = time.perf_counter()
    result = inspect_slide(
        slide_path,
        results.parent / f"out{workers}",
        results_dir=results,
        tiles=f"top:{n_tiles}",
        workers=workers,
    )
    return len(result.markers), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=int, default=5, help="every n-th tissue tile")
    parser.add_argument("--gui", action="store_true", help="also time the napari dock")
    parser.add_argument("--repeats", type=int, default=15, help="GUI: tiles timed")
    parser.add_argument("--batch-tiles", type=int, default=120)
    parser.add_argument("--no-batch", action="store_true", help="skip the batch timing")
    args = parser.parse_args()

    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.slide import open_slide

    print(
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}\n"
    )
    sample = sample_slide_path()
    print(
        "| tiles | n | wall ms (median) | p90 | CPU ms | CPU ms, no context | read | tissue "
        "| epithelium | cells | markers+polygons | cells/tile |"
    )
    print("| --- |" + " ---: |" * 11)
    sources = [("sample slide, 224 px @ 0.5 µm/px", sample)]
    if SHARED.is_file():
        sources.append(("small_HE.svs, 224 px @ 0.499 µm/px", SHARED))
    for name, path in sources:
        with open_slide(path) as slide:
            r = core_latency(slide, tissue_tiles(slide, args.step))
        print(
            f"| {name} | {r['n']} | {r['wall_ms']:.0f} | {r['p90_ms']:.0f} | "
            f"{r['cpu_ms']:.0f} | {r['alone_cpu_ms']:.0f} | "
            f"{r['read_ms']:.1f} | {r['tissue_ms']:.1f} | "
            f"{r['epi_ms']:.0f} | {r['cells_ms']:.0f} | {r['rest_ms']:.1f} | "
            f"{r['cells']:.0f} |"
        )
    with tempfile.TemporaryDirectory() as tmp:
        results = score(sample, Path(tmp))
        if args.gui:
            seconds, in_worker = gui_latency(sample, results, args.repeats)
            print(
                f"\nGUI select -> both Labels layers shown: median {seconds * 1000:.0f} ms "
                f"over {args.repeats} tiles (inspect_tile in the worker thread: "
                f"{in_worker * 1000:.0f} ms)"
            )
        if args.no_batch:
            return
        print("\n| batch | tiles | processes | seconds | tiles/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for workers in (1, 2):
            n, seconds = batch(sample, results, args.batch_tiles, workers)
            print(
                f"| inspect_slide top:{args.batch_tiles} | {n} | {workers} | {seconds:.1f} | "
                f"{n / seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
