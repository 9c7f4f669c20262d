"""Cohort benchmark: one generated cohort scored in this process, on a 2-worker LocalCluster
and on an external loopback cluster (``dask scheduler`` + 2 ``dask worker`` processes), then
rerun to show that complete results are reused.

Run as ``python benchmarks/bench_cohort.py [--slides 6] [--size-px 2048]``. Slides are
synthetic H&E (``napari_imilia.demo.sample.write_synthetic_slide``, 0.5 µm/px, one seed each),
scored by a small max-MIL head on the builtin ``imilia-stain-stats`` extractor on the CPU,
each mode into a fresh output folder (features computed, not cached). Wall time excludes
starting the external cluster (printed apart); the LocalCluster's start is included, as
``--parallel-slides 2`` pays it. Prints a markdown table; the scores of the three modes are
checked to agree. Nothing here asserts timings; figures go to docs/prediction.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _cohort(folder: Path, n_slides: int, size_px: int) -> list[Path]:
    from napari_imilia.demo.sample import write_synthetic_slide

    return [
        write_synthetic_slide(
            folder / f"bench_{seed}.svs",
            width_px=size_px,
            height_px=size_px * 3 // 4,
            seed=seed,
            inflamed_regions="random",
            n_inflamed_regions=1,
        )
        for seed in range(1, n_slides + 1)
    ]


def _model(folder: Path) -> Path:
    import torch

    from napari_imilia.mil import create_model, save_model

    torch.manual_seed(0)
    model = create_model("max-mil", 64, hidden=[8])
    return save_model(model, folder / "mm.safetensors", extractor="imilia-stain-stats", mpp=0.5)


def _timed(slides: list[Path], out: Path, **kwargs: object) -> tuple[float, pd.DataFrame]:
    from napari_imilia.cohort.run import predict_cohort

    start = time.perf_counter()
    table = predict_cohort(slides, out, device="cpu", progress=False, **kwargs)
    return time.perf_counter() - start, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=6, help="slides in the cohort (6)")
    parser.add_argument("--size-px", type=int, default=2048, help="slide width, level 0 (2048)")
    args = parser.parse_args()
    from loopback_cluster import LoopbackCluster

    with tempfile.TemporaryDirectory(prefix="bench_cohort_") as tmp:
        root = Path(tmp)
        slides = _cohort(root / "slides", args.slides, args.size_px)
        model = _model(root)
        rows, tables = [], {}
        seconds, tables["in-process"] = _timed(slides, root / "here", model_path=model)
        rows.append(("in this process", seconds))
        seconds, _ = _timed(slides, root / "here", model_path=model)
        rows.append(("rerun, all reused (in this process)", seconds))
        seconds, tables["local"] = _timed(
            slides, root / "local", model_path=model, cluster_workers=2, processes=True
        )
        rows.append(("LocalCluster, 2 worker processes (start included)", seconds))
        start = time.perf_counter()
        cluster = LoopbackCluster(root / "cluster", n_workers=2)
        startup = time.perf_counter() - start
        try:
            seconds, tables["external"] = _timed(
                slides, root / "external", model_path=model, scheduler=cluster.address
            )
        finally:
            cluster.stop()
        rows.append(("external scheduler + 2 `dask worker` processes", seconds))
        n_tiles = int(tables["in-process"]["n_tiles"].sum())
        for name, table in tables.items():
            assert (table["status"] == "ok").all(), (name, table)
            diff = (table["score"] - tables["in-process"]["score"]).abs().max()
            assert diff < 1e-6, (name, diff)
    print(f"{args.slides} slides, {args.size_px} px wide, {n_tiles} tiles in all; scores agree")
    print(f"external cluster start (scheduler + 2 workers, imports warmed): {startup:.1f} s\n")
    print("| mode | wall s | slides/min |")
    print("| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {60 * args.slides / seconds:.1f} |")


if __name__ == "__main__":
    main()
