"""Open-time benchmark: how long until napari has a layer for a whole-slide image.

Run as ``python benchmarks/bench_open.py``. Generates (once, cached) two Aperio-like pyramidal
SVS files with JPEG tiles: about 1 gigapixel (32768 x 32768 px) and 16 megapixels
(4096 x 4096 px), 0.5 µm/px, written tile by tile so generation needs little memory. Then it
measures the median wall time of opening each (no pixel reads unless said), by:

- napari-imilia: ``open_slide`` + ``slide_layer_data`` (what the reader returns);
- napari-imilia reader: ``napari_get_reader`` (opens and closes once to check) + reading;
- ``open_slide`` + layer data + napari's ``Image`` layer, which reads the coarsest level to
  make the layer thumbnail (a pixel read, unlike the other rows);
- tiffslide: ``TiffSlide(path)`` + ``zarr_group`` (the store our levels wrap);
- napari-wsi (openslide backend; reads one 1x1 region on open), when importable
  (``--extra-path`` may point at a folder holding it, e.g. from ``pip install --target``).

and prints a markdown table. Nothing here asserts; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

TILE_PX = 512
MPP = 0.5
#: name -> level-0 side (px); each file has levels at downsample 1, 4, 16 down to <= 2048 px.
SLIDES: dict[str, int] = {"16 MP (4096²)": 4096, "1 GP (32768²)": 32768}
DESCRIPTION = (
    "Aperio Image Library v12.0.15 \n{w}x{h} [0,0 {w}x{h}] ({t}x{t}) JPEG/RGB Q=80"
    "|AppMag = 20|MPP = {mpp}|Filename = bench_{w}"
)


# -- synthetic slide -----------------------------------------------------------------------


def _tissue(ys: np.ndarray, xs: np.ndarray, side: int) -> np.ndarray:
    """H&E-like RGB at level-0 coordinates: pink tissue ellipses with purple dots, on white."""
    u, v = xs / side, ys / side
    inside = ((u - 0.45) / 0.3) ** 2 + ((v - 0.5) / 0.2) ** 2 < 1
    inside |= ((u - 0.75) / 0.12) ** 2 + ((v - 0.3) / 0.1) ** 2 < 1
    image = np.full((*ys.shape, 3), 245, np.uint8)
    if not inside.any():
        return image
    texture = (np.sin(xs * 0.21) * np.cos(ys * 0.17) * 20).astype(np.int16)
    nuclei = (np.sin(xs * 0.05 + ys * 0.031) * np.sin(ys * 0.047 - xs * 0.013)) > 0.8
    pink = np.stack([225 + texture // 2, 150 + texture, 190 + texture // 2], axis=-1)
    pink[nuclei] = (110, 70, 150)
    image[inside] = np.clip(pink[inside], 0, 255).astype(np.uint8)
    return image


def _level_tiles(side: int, downsample: int) -> Iterator[np.ndarray]:
    """Tiles (row-major) of the level at ``downsample``; all-background tiles are reused."""
    level_side = side // downsample
    background = np.full((TILE_PX, TILE_PX, 3), 245, np.uint8)
    for y0 in range(0, level_side, TILE_PX):
        for x0 in range(0, level_side, TILE_PX):
            ys, xs = np.mgrid[y0 : y0 + TILE_PX, x0 : x0 + TILE_PX] * downsample
            tile = _tissue(ys, xs, side)
            yield background if (tile == 245).all() else tile


def write_bench_svs(path: Path, side: int) -> Path:
    """Write an Aperio-like SVS: tiled JPEG levels at 1, 4, 16... and a stripped thumbnail."""
    import tifffile

    downsamples = [1]
    while side // downsamples[-1] > 2048:
        downsamples.append(downsamples[-1] * 4)
    thumb_ds = max(1, side // 768)
    ys, xs = np.mgrid[0 : side // thumb_ds, 0 : side // thumb_ds] * thumb_ds
    thumbnail = _tissue(ys, xs, side)
    tmp = path.with_suffix(".partial")
    common = {
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": 80},
        "metadata": None,
    }
    with tifffile.TiffWriter(tmp, bigtiff=side > 16384) as tif:
        for index, ds in enumerate(downsamples):
            level_side = side // ds
            tif.write(
                _level_tiles(side, ds),
                shape=(level_side, level_side, 3),
                dtype=np.uint8,
                tile=(TILE_PX, TILE_PX),
                description=DESCRIPTION.format(w=level_side, h=level_side, t=TILE_PX, mpp=MPP)
                if index == 0
                else f"Aperio Image Library v12.0.15 \n{side}x{side} -> {level_side}x{level_side}",
                **common,
            )
            if index == 0:
                tif.write(
                    thumbnail, description="Aperio Image Library v12.0.15 \nthumbnail", **common
                )
    tmp.replace(path)
    return path


def bench_slides(cache_dir: Path) -> dict[str, Path]:
    """Generate the benchmark slides into ``cache_dir`` unless already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, side in SLIDES.items():
        path = cache_dir / f"bench_{side}.svs"
        if not path.exists():
            print(f"generating {path} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            write_bench_svs(path, side)
            print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)
        paths[name] = path
    return paths


# -- openers ------------------------------------------------------------------------------


def _open_imilia(path: Path) -> Callable[[], None]:
    from napari_imilia._napari.reader import slide_layer_data
    from napari_imilia.slide import open_slide

    slide = open_slide(path)
    data, _, _ = slide_layer_data(slide)
    assert len(data) >= 2
    return slide.close


def _open_imilia_reader(path: Path) -> Callable[[], None]:
    from napari_imilia._napari.reader import SLIDE_OBJECT_KEY, napari_get_reader

    reader = napari_get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    return layers[0][1]["metadata"][SLIDE_OBJECT_KEY].close


def _open_napari_layer(path: Path) -> Callable[[], None]:
    from napari.layers import Image

    from napari_imilia._napari.reader import slide_layer_data
    from napari_imilia.slide import open_slide

    slide = open_slide(path)
    data, kwargs, _ = slide_layer_data(slide)
    layer = Image(data, **kwargs)
    assert layer.multiscale
    return slide.close


def _open_tiffslide(path: Path) -> Callable[[], None]:
    import tiffslide

    handle = tiffslide.TiffSlide(path)
    group = handle.zarr_group
    assert len(group) >= 2
    return handle.close


def _open_napari_wsi(path: Path) -> Callable[[], None]:
    from napari_wsi.reader import wsi_reader_openslide

    layers = wsi_reader_openslide(str(path))(str(path))
    assert len(layers[0][0]) >= 2
    return lambda: None


OPENERS: dict[str, Callable[[Path], Callable[[], None]]] = {
    "napari-imilia open_slide + layer data": _open_imilia,
    "napari-imilia reader (check + read)": _open_imilia_reader,
    "napari-imilia + napari Image layer (reads coarsest level)": _open_napari_layer,
    "tiffslide TiffSlide + zarr_group": _open_tiffslide,
    "napari-wsi 1.3 (openslide)": _open_napari_wsi,
}


def median_open_s(opener: Callable[[Path], Callable[[], None]], path: Path, repeats: int) -> float:
    """Median seconds of ``opener(path)`` over ``repeats`` runs after one warm-up run."""
    opener(path)()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        close = opener(path)
        times.append(time.perf_counter() - start)
        close()
    return statistics.median(times)


def napari_wsi_available() -> str | None:
    """None if napari-wsi and openslide import, else why not."""
    try:
        import napari_wsi.reader  # noqa: F401
        import openslide  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "napari_imilia_bench",
        help="where the generated slides are kept between runs",
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per cell")
    parser.add_argument(
        "--extra-path", action="append", default=[], help="folder to add to sys.path"
    )
    args = parser.parse_args(argv)
    sys.path[:0] = args.extra_path

    slides = bench_slides(args.cache_dir)
    openers = dict(OPENERS)
    skipped = napari_wsi_available()
    if skipped:
        openers.pop("napari-wsi 1.3 (openslide)")
    names = list(slides)
    print(
        f"Median open time (ms) over {args.repeats} runs after a warm-up; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print()
    print("| opener | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---:" for _ in names) + " |")
    for label, opener in openers.items():
        cells = [f"{median_open_s(opener, slides[n], args.repeats) * 1e3:.1f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if skipped:
        print(f"\nnapari-wsi not measured: {skipped}")
    sizes = ", ".join(f"{n}: {slides[n].stat().st_size / 1e6:.0f} MB" for n in names)
    print(f"\nfiles: {sizes} (JPEG tiles {TILE_PX} px, levels 1/4/16x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
