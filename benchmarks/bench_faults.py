"""Bounded waits and the one-writer rule: what they cost (issue 20).

Run: ``PYTHONPATH=src python benchmarks/bench_faults.py [--repeats 20]``

1. Single-level giants (BigTIFFs whose tiles all share one deflate tile, made in
   milliseconds): seconds and peak resident memory of ``open_slide`` and of tissue detection
   (refused above ``IMILIA_MAX_OVERVIEW_MPX``), each in a fresh process.
2. A scored 1536 x 1024 px slide (13 tiles, max-MIL on the builtin extractor): seconds of
   drawing its result files (outside any lock) and of switching them in (the slide's write
   lock held), of ``load_prediction`` (which checks ``tiles.csv`` against the SHA-256 in
   ``slide.json``) and of ``reusable_result`` (the reuse check every cohort run makes per
   slide); medians of ``--repeats``.
3. The run lock: seconds to take and release ``OUT/.imilia/run.lock``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIANT = """
import json, resource, sys, time
from napari_imilia.slide import open_slide
started = time.perf_counter()
slide = open_slide(sys.argv[1])
opened = time.perf_counter() - started
outcome = "no tissue step"
started = time.perf_counter()
try:
    from napari_imilia.tiling.tissue import detect_tissue
    detect_tissue(slide)
    outcome = "tissue found"
except Exception as error:
    outcome = type(error).__name__
tissue = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"levels": len(slide.level_dimensions), "open_s": opened,
                  "tissue_s": tissue, "tissue": outcome, "peak_mb": peak}))
"""


def giants(folder: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from support.crafted_tiff import write_giant_tiff

    for side in (200_000, 1_000_000):
        path = write_giant_tiff(folder / f"giant_{side}.tiff", side)
        done = subprocess.run(
            [sys.executable, "-c", GIANT, str(path)],
            capture_output=True,
            text=True,
            timeout=3600,
            check=True,
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"giant {side} x {side} px: {figures['levels']} level(s); open_slide "
            f"{figures['open_s']:.2f} s; tissue: {figures['tissue']} after "
            f"{figures['tissue_s']:.2f} s; peak RSS {figures['peak_mb']:.0f} MB"
        )


def median_s(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def result_switch(folder: Path, repeats: int) -> None:
    import torch

    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.mil import create_model, load_model, save_model
    from napari_imilia.predict.lock import run_lock
    from napari_imilia.predict.results import (
        draft_result,
        load_prediction,
        reusable_result,
        switch_in,
    )
    from napari_imilia.predict.settings import PredictSettings
    from napari_imilia.predict.slide import predict_slide
    from napari_imilia.slide import open_slide

    slide_path = write_synthetic_slide(folder / "case.svs", width_px=1536, height_px=1024, seed=1)
    torch.manual_seed(0)
    model_path = save_model(
        create_model("max-mil", 64, hidden=[8]), folder / "m.safetensors",
        extractor="imilia-stain-stats", mpp=0.5,
    )  # fmt: skip
    out = folder / "out"
    result = predict_slide(slide_path, out, model_path=model_path, device="cpu", progress=False)
    info = {k: v for k, v in result.info.items() if k != "files"}
    with open_slide(slide_path) as slide:
        drafts = []

        def draw() -> None:
            with draft_result(slide, result.tiles, info) as draft:
                drafts.append(draft.record)

        def draw_and_switch() -> None:
            with draft_result(slide, result.tiles, info) as draft:
                started = time.perf_counter()
                switch_in(draft, result.out_dir)
                switched.append(time.perf_counter() - started)

        switched: list[float] = []
        draw_s = median_s(draw, repeats)
        median_s(draw_and_switch, repeats)
    model = load_model(model_path, device="cpu")
    settings = PredictSettings.from_keywords(model_path=model_path).resolve(model)
    load_s = median_s(lambda: load_prediction(result.out_dir), repeats)
    reuse_s = median_s(lambda: reusable_result(slide_path, out, settings), repeats)
    assert reusable_result(slide_path, out, settings) is not None  # the full check ran

    def lock() -> None:
        with run_lock(out):
            pass

    lock_s = median_s(lock, repeats)
    print(f"result files drawn (heatmap, GeoJSON; no lock held): {draw_s * 1e3:.0f} ms")
    print(f"switch in (slide write lock held): {statistics.median(switched) * 1e3:.1f} ms")
    print(f"load_prediction (with the tiles.csv SHA-256 check): {load_s * 1e3:.1f} ms")
    print(f"reusable_result (per slide of a cohort run): {reuse_s * 1e3:.1f} ms")
    print(f"run lock taken and released: {lock_s * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        giants(Path(tmp))
        result_switch(Path(tmp), args.repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process: peak RSS {peak:.0f} MB)")


if __name__ == "__main__":
    main()
