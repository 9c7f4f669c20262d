"""GPU benchmark: can the tile feed keep an H0-mini busy, and how fast is a clicked CellViT tile.

Run on a GPU machine as ``python benchmarks/bench_gpu.py`` (a few minutes); on any machine as
``python benchmarks/bench_gpu.py --smoke`` (tiny models, a 4096² slide, 2 workers, CPU: a
check that the script runs, not a measurement). Full run:

- slide: a generated 1-gigapixel Aperio-like SVS (32768² px, 0.5 µm/px, JPEG tiles of 512 px;
  ``bench_open.write_bench_svs``, made once into ``--cache-dir``), its tissue tiled at
  0.5 µm/px with 224 px tiles;
- model: the full-size H0-mini architecture (ViT-B/14, 4 registers) with seeded random weights
  saved to a temporary safetensors file and loaded through ``create_extractor("h0-mini")``,
  so the real extractor path runs (bf16 autocast on CUDA);
- **feed tiles/s**: ``TileFeed`` with ``--workers`` (16) decode processes and pinned memory,
  each batch copied to the GPU non-blocking, no model;
- **model tiles/s**: the extractor's forward on tiles already on the GPU (no decoding);
- **whole slide**: ``extract_slide_features`` over every tile (decoding, copies and model
  overlapped), seconds and tiles/s;
- **compute bound**: FLOPs per tile counted by ``torch.utils.flop_counter`` times tiles/s,
  against ``--peak-tflops`` (bf16 dense; 790 as assumed in issue 15; give the datasheet
  figure of the GPU at hand);
- **CellViT ms per clicked tile**: the HistoPLUS 40x CellViT architecture, random weights,
  segmenting one 224 px tile at 0.5 µm/px (read at 0.25 µm/px: 448 px, 9 windows), median of
  ``--clicks`` (5) after a warm-up.

Prints a markdown table; nothing asserts. Figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def _extractor(smoke: bool, device: str, batch_size: int, folder: Path):
    """``create_extractor``-equivalent H0-mini (or a tiny one) with random weights on file."""
    from safetensors.torch import save_file

    from napari_imilia.features.extractors.foundation import FOUNDATION_SPECS, ViTExtractor
    from napari_imilia.features.vit.config import scaled_down
    from napari_imilia.features.vit.model import VisionTransformer

    spec = next(s for s in FOUNDATION_SPECS if s.name == "h0-mini")
    if smoke:
        spec = dataclasses.replace(spec, vit=scaled_down(spec.vit, embed_dim=32, grid=16))
    model = VisionTransformer(spec.vit).init_random(seed=0)
    path = folder / "h0_mini_random.safetensors"
    save_file(model.state_dict(), str(path))
    return ViTExtractor(spec, path, device=device, batch_size=batch_size)


def _flops_per_tile(extractor) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tile = torch.zeros((1, 3, extractor.tile_px, extractor.tile_px))
    model = extractor.model.to("cpu")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(tile)
    extractor.model.to(extractor.device)
    return float(counter.get_total_flops())


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _feed_rate(slide, grid, workers: int, batch: int, device) -> float:
    import torch

    from napari_imilia.tiling.feed import TileFeed

    pin = device.type == "cuda"
    start = time.perf_counter()
    with TileFeed(slide, grid, batch_size=batch, decode_workers=workers, pin_memory=pin) as feed:
        for item in feed:
            torch.from_numpy(item.tiles).to(device, non_blocking=True)
    _sync(device)
    return grid.n_tiles / (time.perf_counter() - start)


def _model_rate(extractor, batch: int, n_batches: int) -> float:
    import torch

    from napari_imilia.device import inference_context

    side = extractor.tile_px
    images = torch.rand((batch, 3, side, side), device=extractor.device)
    with inference_context(extractor.device):
        extractor.model(images)  # warm-up
        _sync(extractor.device)
        start = time.perf_counter()
        for _ in range(n_batches):
            extractor.model(images)
        _sync(extractor.device)
    return batch * n_batches / (time.perf_counter() - start)


def _cellvit_ms(smoke: bool, device: str, tile_rgb: np.ndarray, clicks: int) -> float:
    from napari_imilia.interpret.cells.cellvit import (
        HISTOPLUS_40X,
        CellViT,
        CellViTBackend,
        scaled_down,
    )

    config = scaled_down(HISTOPLUS_40X) if smoke else HISTOPLUS_40X
    backend = CellViTBackend(CellViT(config).init_random(seed=0), device=device)

    def click() -> None:
        backend.segment(tile_rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)

    click()
    times = []
    for _ in range(clicks):
        start = time.perf_counter()
        click()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings on the CPU")
    parser.add_argument("--slide", type=Path, default=None, help="slide (default: generated)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "imilia")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=16, help="decode processes")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="bf16 dense peak")
    parser.add_argument("--clicks", type=int, default=5)
    args = parser.parse_args(argv)
    side = 4096 if args.smoke else 32768
    if args.smoke:
        args.device, args.workers, args.batch_size, args.clicks = "cpu", 2, 16, 1

    import torch

    from napari_imilia.device import resolve_device
    from napari_imilia.features.extract import extract_slide_features
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.feed import usable_cores, warm_up
    from napari_imilia.tiling.grid import TileReader, make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    warm_up()
    device = resolve_device(args.device)
    path = args.slide
    if path is None:
        from bench_open import write_bench_svs

        path = args.cache_dir / f"bench_{side}.svs"
        if not path.exists():
            args.cache_dir.mkdir(parents=True, exist_ok=True)
            print(f"generating {path} ...", file=sys.stderr, flush=True)
            write_bench_svs(path, side)
    slide = open_slide(path)
    grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=224)
    if args.smoke:
        grid = grid.take(slice(0, min(64, grid.n_tiles)))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    print(
        f"slide {path.name}: {slide.dimensions[0]} x {slide.dimensions[1]} px, {grid.n_tiles} "
        f"tiles of 224 px at 0.5 µm/px; device {device} ({gpu}); {usable_cores()} usable "
        f"cores, {args.workers} decode processes, batches of {args.batch_size}; torch "
        f"{torch.__version__}{'; SMOKE settings: not a measurement' if args.smoke else ''}"
    )
    with tempfile.TemporaryDirectory() as folder:
        extractor = _extractor(args.smoke, str(device), args.batch_size, Path(folder))
    flops = _flops_per_tile(extractor)
    feed_rate = _feed_rate(slide, grid, args.workers, args.batch_size, device)
    model_rate = _model_rate(extractor, args.batch_size, 3 if args.smoke else 20)
    start = time.perf_counter()
    extract_slide_features(
        slide, grid, extractor, cache_dir=None, batch_size=args.batch_size,
        decode_workers=args.workers, progress=False,
    )  # fmt: skip
    whole_s = time.perf_counter() - start
    clicked = TileReader(slide, grid)(grid.n_tiles // 2)
    cellvit_ms = _cellvit_ms(args.smoke, str(device), clicked, args.clicks)
    bound = args.peak_tflops * 1e12 / flops
    print()
    print("| what | value |")
    print("| --- | ---: |")
    print(f"| FLOPs per tile (H0-mini forward) | {flops / 1e9:.1f} G |")
    print(f"| bf16 compute bound at {args.peak_tflops:g} TFLOP/s | {bound:,.0f} tiles/s |")
    pinned = ", pinned" if device.type == "cuda" else ""
    print(f"| feed tiles/s ({args.workers} processes{pinned}, copied to {device.type}) "
          f"| {feed_rate:,.0f} |")  # fmt: skip
    print(f"| model tiles/s (tiles already on {device.type}) | {model_rate:,.0f} "
          f"({model_rate / bound:.0%} of the bound) |")  # fmt: skip
    whole_rate = grid.n_tiles / whole_s
    print(f"| whole slide: extract_slide_features, {grid.n_tiles} tiles | {whole_s:.1f} s = "
          f"{whole_rate:,.0f} tiles/s ({whole_rate / bound:.0%} of the bound) |")  # fmt: skip
    print(f"| CellViT (HistoPLUS 40x), one clicked tile (9 windows) | {cellvit_ms:,.0f} ms |")
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    slide.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
