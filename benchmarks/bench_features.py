"""Feature and whole-slide benchmark: features/s of the extractors, predict_slide wall time.

Run as ``python benchmarks/bench_features.py [--batches 3] [--skip-vit]``; on a GPU machine
``python benchmarks/bench_features.py --device cuda --vit uni --batch-size 128 --vit-slide``
(a ViT-L/16 in bf16 autocast, then the whole sample slide through it). In one run:

1. ``imilia-stain-stats`` (builtin) ``embed`` on batches of ``--batch-size`` (32) tiles
   already in memory (real tiles of the generated sample slide);
2. a full-size ViT extractor (``--vit``, default H0-mini: ViT-B/14, 4 registers, 768-d) with
   seeded random weights, through the real extractor path (``create_extractor(name,
   weights_path=...)``: resize check, normalisation, plain-torch ViT, class token) on
   ``--device`` (bf16 autocast on CUDA), same batches; the random weights are written to a
   temporary ``.safetensors`` first (343 MB for H0-mini, 1.2 GB for UNI) and deleted afterwards;
3. ``predict_slide`` on the whole sample slide (6144 x 4096 px, 0.5 µm/px) with the builtin
   extractor and a small ABMIL model: cold (no feature cache) and warm (cache reused);
4. with ``--vit-slide``: ``predict_slide`` cold on the sample slide with the ViT extractor of
   step 2 and an IMILIA-shaped Chowder (5 channels, top/bottom 25) on ``--device``.

Each measurement is repeated ``--repeats`` times after one warm-up (the ViT: ``--batches``
timed batches after one warm-up batch); the median and best wall times are shown, and the
cores the process really got (its CPU seconds / wall seconds; at most the CPU count) to show
how much a shared machine took away. Prints markdown; nothing asserts. Figures go to
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _times_s(run: Callable[[], object], repeats: int, *, warm_up: bool = True) -> list[float]:
    """Wall seconds of ``repeats`` runs; the CPU seconds this process used go to ``_CPU``."""
    if warm_up:
        run()
    times = []
    _CPU.clear()
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        run()
        times.append(time.perf_counter() - start)
        _CPU.append(time.process_time() - cpu)
    return times


_CPU: list[float] = []


def _sample_tiles(n: int) -> tuple[Path, np.ndarray]:
    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.grid import TileReader, make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    path = sample_slide_path()
    with open_slide(path) as slide:
        grid = make_tile_grid(slide, detect_tissue(slide))
        reader = TileReader(slide, grid)
        rows = np.resize(np.arange(grid.n_tiles), n)  # repeat tiles when the slide has few
        return path, np.stack([reader(int(i)) for i in rows])


def _row(label: str, n_tiles: int, times: list[float]) -> str:
    """Markdown row: median and best wall s, tiles/s of both, cores used (CPU s / wall s),
    tiles per CPU second."""
    median, best = statistics.median(times), min(times)
    cores = sum(_CPU) / sum(times)
    per_cpu_s = n_tiles * len(times) / sum(_CPU)
    return (
        f"| {label} | {median:.3f} | {best:.3f} | {n_tiles / median:,.1f} | "
        f"{n_tiles / best:,.1f} | {cores:.2f} | {per_cpu_s:,.1f} |"
    )


def _vit_weights(folder: Path, name: str) -> Path:
    from safetensors.torch import save_file

    from napari_imilia.features.extractors import FOUNDATION_SPECS
    from napari_imilia.features.vit import VisionTransformer

    spec = next(s for s in FOUNDATION_SPECS if s.name == name)
    model = VisionTransformer(spec.vit).init_random(seed=0)
    path = folder / f"{name}_random.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="timed ViT batches (3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-vit", action="store_true")
    parser.add_argument("--vit", default="h0-mini", help="ViT extractor to time (h0-mini)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (bf16 autocast)")
    parser.add_argument(
        "--vit-slide", action="store_true", help="also predict the whole slide with the ViT"
    )
    args = parser.parse_args(argv)

    import torch

    from napari_imilia.features.extractors import FOUNDATION_SPECS, create_extractor
    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(load average {load} at start), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), CUDA {'yes' if torch.cuda.is_available() else 'no'}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    if args.vit not in {spec.name for spec in FOUNDATION_SPECS}:
        parser.error(f"--vit must be one of {', '.join(s.name for s in FOUNDATION_SPECS)}")
    slide_path, tiles = _sample_tiles(args.batch_size * max(args.batches, 4))
    batches = [tiles[i : i + args.batch_size] for i in range(0, len(tiles), args.batch_size)]
    print(f"tiles: {tiles.shape[1]} px from {slide_path.name}; batches of {args.batch_size}")
    print()
    print(
        "| what | median s | best s | tiles/s (median) | tiles/s (best) | cores used "
        "| tiles per CPU-s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")

    builtin = create_extractor("imilia-stain-stats", device="cpu", batch_size=args.batch_size)
    times = _times_s(lambda: [builtin.embed(b) for b in batches], args.repeats)
    print(_row(f"imilia-stain-stats embed, {len(tiles)} tiles", len(tiles), times), flush=True)

    work = Path(tempfile.mkdtemp(prefix="imilia_bench_"))
    try:
        vit = None
        if not args.skip_vit or args.vit_slide:
            vit = create_extractor(
                args.vit,
                weights_path=_vit_weights(work, args.vit),
                device=args.device,
                batch_size=args.batch_size,
            )
        if not args.skip_vit:
            vit.embed(batches[0])  # warm-up
            timed = iter(batches[: args.batches])
            vit_times = _times_s(lambda: vit.embed(next(timed)), args.batches, warm_up=False)
            precision = "bf16 autocast" if vit.device.type == "cuda" else "float32"
            label = (
                f"{args.vit} {vit.spec.vit.describe().split(' (')[0]} (random weights, "
                f"{vit.device.type}, {precision}) embed, 1 batch of {args.batch_size}"
            )
            print(_row(label, args.batch_size, vit_times), flush=True)

        torch.manual_seed(0)
        model = create_model("abmil", builtin.dim, embed_dim=128, attn_dim=64)
        model_path = save_model(
            model, work / "abmil.safetensors", extractor=builtin.name, mpp=0.5, tile_px=224
        )
        options = {"model_path": model_path, "device": "cpu", "progress": False}
        n_tiles = 0

        def cold() -> None:
            nonlocal n_tiles
            shutil.rmtree(work / "out", ignore_errors=True)
            n_tiles = predict_slide(slide_path, work / "out", **options).info["n_tiles"]

        times = _times_s(cold, args.repeats)
        print(_row(f"predict_slide, sample slide, cold ({n_tiles} tiles)", n_tiles, times))

        def warm() -> None:
            predict_slide(slide_path, work / "out", **options)

        times = _times_s(warm, args.repeats)
        print(_row("predict_slide, sample slide, warm (feature cache)", n_tiles, times))

        if args.vit_slide:
            torch.manual_seed(0)
            chowder = create_model("imilia-chowder", vit.dim)  # IMILIA's head shape
            chowder_path = save_model(
                chowder, work / "chowder.safetensors", extractor=vit.name, mpp=0.5, tile_px=224
            )
            vit_options = {"model_path": chowder_path, "extractor": vit, "device": args.device}
            vit_options.update(progress=False, batch_size=args.batch_size)

            def vit_cold() -> None:
                shutil.rmtree(work / "out_vit", ignore_errors=True)
                predict_slide(slide_path, work / "out_vit", **vit_options)

            times = _times_s(vit_cold, args.repeats, warm_up=False)  # the first run counts
            label = f"predict_slide with {args.vit} on {vit.device.type}, cold ({n_tiles} tiles)"
            print(_row(label, n_tiles, times))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
