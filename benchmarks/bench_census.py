"""Whole-slide census: throughput, GeoJSON of 10^5 cells, napari frame time with 10^6 cells.

Run from the repository root (figures go to docs/performance.md, "Whole-slide census"):

    python benchmarks/bench_census.py --throughput  # the sample slide, 1 and 2 processes
    python benchmarks/bench_census.py --geojson     # 100,000 cells written and read back
    xvfb-run -a -s "-screen 0 1366x768x24" python benchmarks/bench_census.py --napari

1. **Throughput**: ``census_slide`` of the generated sample slide (6144 x 4096 px at 0.5
   µm/px, every tissue tile: 224 px at 0.5 µm/px with >= 5 % tissue; classical cells,
   stain-heuristic epithelium) from scratch with ``workers`` = 1 then 2, tiles/s and cells/s
   including process start-up and writing every file; the machine's load average before each
   run is printed (the speed-up needs an idle machine).
2. **GeoJSON**: 100,000 cells with 23-vertex outlines (the mean of the census's simplified
   nuclei) on half-pixel coordinates written by ``GeoJSONStreamWriter`` and read back by
   ``iter_object_batches``; best of ``--repeats``; and the shapely reader
   (``read_geojson``) on the same file for comparison with ``--old-reader``.
3. **napari**: a blank pyramidal OME-TIFF of 24,576 x 20,480 px at 0.5 µm/px (126 mm²) with a
   census of 10^6 cells (about 100 cells per 224 px tile, classes and compartments drawn at
   random) written with the census's own table code; the viewer link draws the density map
   and the cells in view. In a shown 1366 x 768 window the camera pans across the slide and
   zooms in and out (``--steps`` frames each); per frame: set the camera, process Qt events
   (the cells layer refreshes), render the canvas (``viewer.screenshot(canvas_only=True)``:
   the draw plus a read-back of the frame). Median and worst frame, zoomed out and zoomed in.

Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def throughput(repeats: int) -> None:
    """Census of the sample slide from scratch with 1 then 2 processes, ``repeats`` times
    each, alternating; tiles/s over the whole call (start-up and files included) and in
    steady state (from the first part written to the last)."""
    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.interpret.census import census_slide

    slide = sample_slide_path()
    results: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
    for _ in range(repeats):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as out:
                load = os.getloadavg()[0]
                stamps: list[tuple[float, int]] = []
                start = time.perf_counter()
                result = census_slide(
                    slide,
                    out,
                    workers=workers,
                    progress=lambda p, seen=stamps: seen.append((time.perf_counter(), p.done)),
                )
                wall = time.perf_counter() - start
            (t0, d0), (t1, d1) = stamps[1], stamps[-1]
            steady = (d1 - d0) / (t1 - t0) if t1 > t0 else float("nan")
            results[workers].append((result.n_tiles / wall, steady, load))
            print(
                f"workers={workers}: {result.n_tiles} tiles, {result.n_cells} cells in "
                f"{wall:.1f} s: {result.n_tiles / wall:.2f} tiles/s overall, {steady:.2f} tiles/s "
                f"steady, {result.n_cells / wall:.0f} cells/s (load average before: {load:.2f})",
                flush=True,
            )
    best = {w: (max(r[0] for r in rows), max(r[1] for r in rows)) for w, rows in results.items()}
    print(
        f"best of {repeats}: 1 process {best[1][0]:.2f} tiles/s ({best[1][1]:.2f} steady); 2 "
        f"processes {best[2][0]:.2f} ({best[2][1]:.2f} steady); speed-up "
        f"{best[2][0] / best[1][0]:.2f}x overall, {best[2][1] / best[1][1]:.2f}x steady"
    )


def fake_cells(n: int, seed: int = 0):
    from napari_imilia.export.geojson_stream import ObjectBatch

    rng = np.random.default_rng(seed)
    cx = np.round(rng.uniform(100, 40_000, n)) + 0.5
    cy = np.round(rng.uniform(100, 30_000, n))
    angles = np.linspace(0, 2 * np.pi, 22, endpoint=False)
    ring = np.round(np.stack([np.cos(angles), np.sin(angles)], 1) * 8) / 2
    ring = np.vstack([ring, ring[:1]])
    xy = (ring[None] + np.stack([cx, cy], 1)[:, None]).reshape(-1, 2)
    return ObjectBatch(
        names=[f"{int(x)}_{int(y)}:{i}" for i, (x, y) in enumerate(zip(cx, cy, strict=True))],
        class_index=rng.integers(0, 14, n).astype(np.int32),
        classes=[(f"class {i}", (i * 15, 100, 200)) for i in range(14)],
        x=cx,
        y=cy,
        ring_offsets=np.arange(n + 1) * len(ring),
        ring_xy=xy,
        measurements={
            "Nucleus: Area µm^2": np.round(rng.uniform(10, 60, n), 2),
            "Classification probability": np.round(rng.uniform(0.3, 1, n), 3),
        },
        metadata={"compartment": rng.choice(["epithelium", "lamina propria"], n).tolist()},
    )


def geojson(repeats: int, old_reader: bool) -> None:
    from napari_imilia.export import ExportContext, read_geojson
    from napari_imilia.export.geojson_stream import write_object_batches
    from napari_imilia.export.geojson_stream_read import iter_object_batches

    cells = fake_cells(100_000)
    ctx = ExportContext("bench", "/bench.svs", "", "", "", 0.5, 224)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cells.geojson"
        writes, reads, cpu_w, cpu_r = [], [], [], []
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            write_object_batches(path, [cells], ctx)
            writes.append(time.perf_counter() - start)
            cpu_w.append(time.process_time() - cpu)
            start, cpu = time.perf_counter(), time.process_time()
            n = sum(len(b) for b in iter_object_batches(path))
            reads.append(time.perf_counter() - start)
            cpu_r.append(time.process_time() - cpu)
        size = path.stat().st_size / 1e6
        print(
            f"100,000 cells ({size:.0f} MB): write {min(writes):.2f} s wall ({min(cpu_w):.2f} s "
            f"CPU), read {min(reads):.2f} s wall ({min(cpu_r):.2f} s CPU), best of {repeats} "
            f"(all wall: write {[round(w, 2) for w in writes]}, read "
            f"{[round(r, 2) for r in reads]}); {n} read; load average {os.getloadavg()[0]:.2f}"
        )
        if old_reader:
            start = time.perf_counter()
            read_geojson(path)
            print(f"read_geojson (shapely objects): {time.perf_counter() - start:.1f} s")


def big_slide(path: Path, height: int = 20_480, width: int = 24_576) -> Path:
    """A blank pink pyramidal OME-TIFF (5 levels) at 0.5 µm/px."""
    import tifffile

    tile = np.full((512, 512, 3), (236, 200, 220), np.uint8)

    def tiles(h: int, w: int):
        for _ in range(-(-h // 512) * -(-w // 512)):
            yield tile

    levels = [(height >> k, width >> k) for k in range(5)]
    options = {"tile": (512, 512), "photometric": "rgb", "compression": "zlib", "dtype": np.uint8}
    meta = {"PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    meta.update({"PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(tiles(*levels[0]), shape=(*levels[0], 3), subifds=4, metadata=meta, **options)
        for h, w in levels[1:]:
            tif.write(tiles(h, w), shape=(h, w, 3), subfiletype=1, **options)
    return path


def fake_census(folder: Path, width: int, height: int, per_tile: int = 100) -> int:
    """A census folder of ``per_tile`` random cells per 224 px tile (no GeoJSON)."""
    import json

    import pyarrow.parquet as pq

    from napari_imilia.interpret.census.finish import region_table, tile_table
    from napari_imilia.interpret.census.parts import PART_TILES
    from napari_imilia.interpret.census.record import CensusTile, cells_table

    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    tiles: list[CensusTile] = []
    for y in range(0, height - 224, 224):
        for x in range(0, width - 224, 224):
            n = int(rng.poisson(per_tile))
            cls = rng.choice([2, 3, 4, 5, 6, 11], n, p=[0.3, 0.15, 0.25, 0.05, 0.05, 0.2])
            outline = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]], float)
            cx, cy = x + rng.uniform(0, 224, n), y + rng.uniform(0, 224, n)
            tiles.append(
                CensusTile(
                    f"{x}_{y}",
                    x,
                    y,
                    224,
                    224,
                    0.0125,
                    0.003,
                    cells={
                        "label": np.arange(1, n + 1, dtype=np.int32),
                        "centroid_x": cx,
                        "centroid_y": cy,
                        "class_id": cls.astype(np.uint8),
                        "probability": rng.uniform(0.3, 1, n).astype(np.float32),
                        "area_um2": rng.uniform(10, 60, n).astype(np.float32),
                        "compartment": np.where(cls == 11, 0, rng.integers(0, 2, n) + 0).astype(
                            np.uint8
                        ),
                        "outline_offsets": np.arange(n + 1, dtype=np.int64) * 5,
                        "outline_xy": (outline[None] + np.stack([cx, cy], 1)[:, None]).reshape(
                            -1, 2
                        ),
                    },
                )
            )
    writer = None
    counts = []
    from napari_imilia.interpret.census.finish import part_counts

    for start in range(0, len(tiles), PART_TILES):
        table = cells_table(tiles[start : start + PART_TILES])
        writer = writer or pq.ParquetWriter(folder / "cells.parquet", table.schema)
        writer.write_table(table)
        counts.append(part_counts(table, len(tiles[start : start + PART_TILES])))
    writer.close()
    frame = tile_table([t.row() | {"seconds": 0.0} for t in tiles], np.concatenate(counts))
    frame.insert(5, "region", "piece 1")
    frame.to_csv(folder / "tiles.csv", index=False)
    region_table(frame).to_csv(folder / "regions.csv", index=False)
    n_cells = int(frame["n_cells"].sum())
    info = {
        "slide_id": folder.parent.name,
        "mpp": 0.5,
        "n_cells": n_cells,
        "n_tiles": len(tiles),
        "settings": {"inspect": {"cell_backend": "synthetic", "epithelium_method": "random"}},
    }
    (folder / "census.json").write_text(json.dumps(info))
    return n_cells


def napari_frames(steps: int) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_imilia._napari.compat import viewer_camera
    from napari_imilia._napari.link import link_viewer
    from napari_imilia._napari.roles import CENSUS_CELLS_ROLE, layers_with_role
    from napari_imilia._napari.state import viewer_state

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        slide = big_slide(root / "big.ome.tif")
        os.environ["IMILIA_RESULTS_DIR"] = str(root / "results")
        os.environ["IMILIA_CONFIG_DIR"] = str(root / "config")  # no saved results folder
        start = time.perf_counter()
        n_cells = fake_census(root / "results" / "big" / "census", 24_576, 20_480)
        print(f"fake census of {n_cells:,} cells written in {time.perf_counter() - start:.0f} s")
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1366, 768)
        start = time.perf_counter()
        viewer.open(str(slide), plugin="napari-imilia")
        link_viewer(viewer).ensure_session()
        state = viewer_state(viewer)
        QApplication.processEvents()
        print(
            f"slide + census layers shown in {time.perf_counter() - start:.1f} s; "
            f"{len(state.census.data.tiles)} tiles"
        )
        camera = viewer_camera(viewer)
        width_um = 24_576 * 0.5

        def frames(centres, zooms) -> list[float]:
            times = []
            for centre, zoom in zip(centres, zooms, strict=True):
                start = time.perf_counter()
                camera.center = centre
                camera.zoom = zoom
                QApplication.processEvents()
                viewer.screenshot(canvas_only=True)
                times.append((time.perf_counter() - start) * 1000)
            return times

        canvas_w = viewer.canvas.size[1]
        far = canvas_w / width_um
        near = canvas_w / 600.0  # 600 µm across: the cells are drawn
        xs = np.linspace(0.2, 0.8, steps) * width_um
        moves = {
            "pan zoomed out": ([(5000.0, x) for x in xs], [far * 1.5] * steps),
            "pan zoomed in": (
                [(5000.0, 4000 + 2000 * t) for t in np.linspace(0, 1, steps)],
                [near] * steps,
            ),
            "zoom in": ([(5000.0, 5000.0)] * steps, list(np.geomspace(far, near, steps))),
        }
        data = state.census.data
        for label, shown in (("slide alone", None), ("slide + census", data)):
            state.census.set_data(shown)
            frames(*moves["pan zoomed out"])  # warm-up: chunks read, textures made
            for name, (centres, zooms) in moves.items():
                times = frames(centres, zooms)
                print(
                    f"{label}, {name}: median {statistics.median(times):.0f} ms, worst "
                    f"{max(times):.0f} ms ({steps} frames)"
                )
        cells = layers_with_role(viewer, CENSUS_CELLS_ROLE)
        shown_n = len(cells[0].data) if cells else 0
        print(f"cells in the Points layer when zoomed in: {shown_n:,} of {n_cells:,}")
        viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--geojson", action="store_true")
    parser.add_argument("--old-reader", action="store_true")
    parser.add_argument("--napari", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    if args.throughput:
        throughput(args.repeats)
    if args.geojson:
        geojson(args.repeats, args.old_reader)
    if args.napari:
        napari_frames(args.steps)


if __name__ == "__main__":
    main()
