"""Stain-heuristic epithelium: Dice against the synthetic ground truth, and ms per tile.

Run from the repository root:

    python benchmarks/bench_epithelium.py            # sample slide + seeds 1-9, small_HE.svs

1. **Accuracy on generated slides**: the sample slide (seed 0, 6144 x 4096 px) and one
   3072 x 2048 px slide per extra seed (``--seeds``; three planted inflamed areas, written
   to a temporary folder with their JPEG tiles). ``--tiles`` random 224 px tiles with >= 50%
   tissue per slide are read as ``inspect_tile`` reads them (0.5 µm/px, tissue from
   ``cells.stain.tissue_from_od``) and segmented; the truth is
   ``synthetic.truth.epithelium_truth`` of the same level-0 box. Dice per tile over tiles
   where truth or prediction covers >= 2% of the tile, and the predicted fraction of tiles
   with under 1% true epithelium; also with the tile's optical density scaled by 0.75 and 1.33
   (lighter / darker staining).
2. **Real slide** (``../shared/data/small_HE.svs``, skipped when absent): epithelium
   fraction of tiles inside the epidermis, in dermis, and of a tile with marking dye (the
   tiles of ``tests/interpret/test_epithelium_synthetic.py``).
3. **Speed**: ``segment_epithelium(method="stain-heuristic")`` with the tissue mask given
   (as ``inspect_tile`` calls it), one thread, median and p90 ms over all tiles of 1 after
   one warm-up.

Nothing here asserts; the figures go to docs/epithelium_markers.md and docs/performance.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/scipy load

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "small_HE.svs"
TILE_PX = 224
DICE_MIN_FRACTION = 0.02
REAL_GROUPS = {
    "epidermis": [(3, 5), (4, 5), (8, 5), (9, 5)],
    "dermis": [(8, 3), (9, 7), (10, 6), (11, 4), (11, 5), (12, 4)],
    "marking dye": [(8, 7)],
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def tissue_tiles(slide_path: Path, scene, n_tiles: int, seed: int) -> list[tuple]:
    """(rgb, tissue, truth) of random tissue tiles, read as ``inspect_tile`` reads them."""
    from napari_imilia.demo.synthetic.truth import epithelium_truth
    from napari_imilia.interpret.cells.stain import optical_density, tissue_from_od
    from napari_imilia.interpret.read import TileBox, read_tile_at_mpp
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    slide = open_slide(slide_path)
    rows = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=TILE_PX).to_frame()
    rows = rows[rows.tissue_fraction >= 0.5]
    pick = np.random.default_rng(seed).choice(len(rows), min(n_tiles, len(rows)), replace=False)
    out = []
    for _, row in rows.iloc[np.sort(pick)].iterrows():
        box = TileBox.from_row(row)
        rgb, mpp, _ = read_tile_at_mpp(slide, box, 0.5)
        tissue = tissue_from_od(optical_density(rgb), mpp=mpp)
        out.append((rgb, tissue, epithelium_truth(scene, (box.x, box.y, box.width, box.height))))
    return out


def accuracy(tiles: list[tuple], od_scale: float = 1.0) -> dict[str, float]:
    from napari_imilia.interpret.epithelium import segment_epithelium

    scores, empty_fractions = [], []
    for rgb, tissue, truth in tiles:
        if od_scale != 1.0:
            rgb = np.clip(255 * ((rgb + 1.0) / 256) ** od_scale, 0, 255).astype(np.uint8)
        mask = segment_epithelium(rgb, mpp=0.5, tissue_mask=tissue).mask
        if max(truth.mean(), mask.mean()) >= DICE_MIN_FRACTION:
            scores.append(dice(mask, truth))
        if truth.mean() < 0.01:
            empty_fractions.append(mask.mean())
    return {
        "n": len(scores),
        "mean": float(np.mean(scores)),
        "median": float(np.median(scores)),
        "p10": float(np.percentile(scores, 10)),
        "pooled_truth": float(np.mean([t.mean() for *_, t in tiles])),
        "empty_n": len(empty_fractions),
        "empty_predicted": float(np.mean(empty_fractions)) if empty_fractions else float("nan"),
    }


def real_slide() -> dict[str, list[float]]:
    from napari_imilia.interpret.epithelium import segment_epithelium
    from napari_imilia.interpret.read import TileBox, read_tile_at_mpp
    from napari_imilia.slide import open_slide

    slide = open_slide(SHARED)
    out = {}
    for name, tiles in REAL_GROUPS.items():
        fractions = []
        for row, col in tiles:
            box = TileBox(f"{row}_{col}", col * TILE_PX, row * TILE_PX, TILE_PX, TILE_PX)
            rgb, mpp, _ = read_tile_at_mpp(slide, box, slide.require_mpp())
            fractions.append(segment_epithelium(rgb, mpp=mpp).fraction)
        out[name] = fractions
    return out


def speed(tiles: list[tuple]) -> tuple[float, float]:
    from napari_imilia.interpret.epithelium import segment_epithelium

    rgb, tissue, _ = tiles[0]
    segment_epithelium(rgb, mpp=0.5, tissue_mask=tissue)  # warm-up
    times = []
    for rgb, tissue, _ in tiles:
        start = time.perf_counter()
        segment_epithelium(rgb, mpp=0.5, tissue_mask=tissue)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000, float(np.percentile(times, 90)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6, 7, 8, 9])
    parser.add_argument("--tiles", type=int, default=30, help="tissue tiles per slide")
    args = parser.parse_args()

    from napari_imilia.demo.sample import (
        sample_slide_path,
        sample_slide_scene,
        synthetic_slide_scene,
        write_synthetic_slide,
    )

    print(
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, load {os.getloadavg()[0]:.1f}\n"
    )
    every: list[tuple] = []
    print(
        "| slide | tiles in Dice | mean Dice | median | p10 | mean Dice, OD x0.75 | "
        "OD x1.33 | true epithelium fraction | tiles without epithelium: n, predicted |"
    )
    print("| --- |" + " ---: |" * 8)
    with tempfile.TemporaryDirectory() as folder:
        slides = [("sample slide (seed 0)", sample_slide_path(), sample_slide_scene(), 0)]
        for seed in args.seeds:
            path = write_synthetic_slide(
                Path(folder) / f"seed{seed}.svs",
                width_px=3072,
                height_px=2048,
                seed=seed,
                inflamed_regions="random",
                n_inflamed_regions=3,
            )
            slides.append((f"seed {seed}", path, synthetic_slide_scene(path), seed))
        means = []
        for name, path, scene, seed in slides:
            tiles = tissue_tiles(path, scene, args.tiles, seed)
            every.extend(tiles)
            plain, light, dark = (accuracy(tiles, k) for k in (1.0, 0.75, 1.33))
            means.append(plain["mean"])
            print(
                f"| {name} | {plain['n']} | {plain['mean']:.3f} | {plain['median']:.3f} | "
                f"{plain['p10']:.3f} | {light['mean']:.3f} | {dark['mean']:.3f} | "
                f"{plain['pooled_truth']:.3f} | {plain['empty_n']}, "
                f"{plain['empty_predicted']:.3f} |"
            )
        print(f"\nmean of the slides' mean Dice: {np.mean(means):.3f}")
    median_ms, p90_ms = speed(every)
    print(f"stain-heuristic: {median_ms:.1f} ms per 224 px tile (median), p90 {p90_ms:.1f}, "
          f"{len(every)} tiles")  # fmt: skip
    if SHARED.is_file():
        print("\nsmall_HE.svs epithelium fraction per tile:")
        for name, fractions in real_slide().items():
            print(f"  {name}: {', '.join(f'{f:.2f}' for f in fractions)}")


if __name__ == "__main__":
    main()
