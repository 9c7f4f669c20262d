"""Open time of every slide backend at 16 Mpx and 1 Gpx: opening must not grow with the slide.

Run as ``python benchmarks/bench_open_formats.py``. Generates (once, cached) constant-tile
pyramids cheaply: tifffile writes the same JPEG-compressed 512 px tile over and over, as a
generic pyramidal TIFF (resolution tags) and as an OME-TIFF (sub-IFD levels, physical size in
OME-XML); wsidicomizer converts the generic TIFF to a DICOM WSI folder. Sizes: 4096² px
(16 Mpx) and 32768² px (1 Gpx), levels at downsample 1, 4, 16... down to <= 2048 px.

Then it measures the median wall time of ``open_slide(path, backend=...)`` + the layer data
napari gets (:func:`napari_imilia._napari.reader.slide_layer_data`), for each (format, backend)
pair, and prints a markdown table. Nothing here asserts; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

TILE_PX = 512
MPP = 0.5
SIDES: dict[str, int] = {"16 Mpx (4096²)": 4096, "1 Gpx (32768²)": 32768}
#: (row label, file kind, backend)
CASES: tuple[tuple[str, str, str], ...] = (
    ("pyramidal TIFF, tiffslide", "tiff", "tiffslide"),
    ("OME-TIFF, tiffslide (+ OME-XML)", "ome", "tiffslide"),
    ("DICOM WSI folder, wsidicom", "dicom", "wsidicom"),
    ("pyramidal TIFF, openslide", "tiff", "openslide"),
    ("DICOM WSI folder, openslide", "dicom", "openslide"),
)


def _tile() -> np.ndarray:
    """One H&E-pink tile with some texture (so JPEG has work to do)."""
    ys, xs = np.mgrid[0:TILE_PX, 0:TILE_PX]
    texture = (np.sin(xs * 0.21) * np.cos(ys * 0.17) * 20).astype(np.int16)
    pink = np.stack([225 + texture // 2, 150 + texture, 190 + texture // 2], axis=-1)
    return np.clip(pink, 0, 255).astype(np.uint8)


def _downsamples(side: int) -> list[int]:
    out = [1]
    while side // out[-1] > 2048:
        out.append(out[-1] * 4)
    return out


def _tiles(side: int) -> Iterator[np.ndarray]:
    tile = _tile()
    for _ in range((side // TILE_PX) ** 2):
        yield tile


def write_constant_pyramid(path: Path, side: int, *, ome: bool) -> Path:
    """A pyramid whose every tile is the same JPEG tile: generic TIFF or OME-TIFF."""
    import tifffile

    levels = [side // ds for ds in _downsamples(side)]
    opts = {
        "dtype": np.uint8,
        "tile": (TILE_PX, TILE_PX),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": 80},
    }
    tmp = path.with_name(path.name + ".partial")
    with tifffile.TiffWriter(tmp, bigtiff=side > 16384, ome=ome) as tif:
        for index, level in enumerate(levels):
            shape = (level, level, 3)
            if ome and index == 0:
                metadata = {"axes": "YXS", "PhysicalSizeX": MPP, "PhysicalSizeY": MPP}
                subifds = len(levels) - 1
                tif.write(_tiles(level), shape=shape, subifds=subifds, metadata=metadata, **opts)
            elif ome:
                tif.write(_tiles(level), shape=shape, subfiletype=1, **opts)
            else:
                mpp = MPP * side / level
                tif.write(
                    _tiles(level),
                    shape=shape,
                    subfiletype=1 if index else 0,
                    resolution=(1e4 / mpp, 1e4 / mpp),
                    resolutionunit="CENTIMETER",
                    metadata=None,
                    **opts,
                )
    tmp.replace(path)
    return path


def write_dicom(folder: Path, source: Path) -> Path:
    """``source`` converted to a DICOM WSI folder by wsidicomizer (tiffslide source)."""
    import shutil

    from wsidicomizer import WsiDicomizer
    from wsidicomizer.sources import TiffSlideSource

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    WsiDicomizer.convert(source, tmp, preferred_source=TiffSlideSource, workers=2)
    tmp.replace(folder)
    return folder


def bench_files(cache_dir: Path) -> dict[tuple[str, str], Path]:
    """{(size label, kind): path}, generated into ``cache_dir`` unless already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for label, side in SIDES.items():
        for kind in ("tiff", "ome", "dicom"):
            name = {"tiff": f"const_{side}.tiff", "ome": f"const_{side}.ome.tif"}.get(
                kind, f"const_{side}_dicom"
            )
            path = cache_dir / name
            if not path.exists():
                print(f"generating {path} ...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                if kind == "dicom":
                    write_dicom(path, files[(label, "tiff")])
                else:
                    write_constant_pyramid(path, side, ome=kind == "ome")
                print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)
            files[(label, kind)] = path
    return files


def median_open_ms(path: Path, backend: str, repeats: int) -> float:
    """Median ms of ``open_slide`` + layer data over ``repeats`` runs after one warm-up."""
    from napari_imilia._napari.reader import slide_layer_data
    from napari_imilia.slide import open_slide

    def once() -> float:
        start = time.perf_counter()
        slide = open_slide(path, backend=backend)
        data, kwargs, _ = slide_layer_data(slide)
        elapsed = time.perf_counter() - start
        assert len(data) >= 2 and kwargs["scale"] == (MPP, MPP), (path, backend)
        slide.close()
        return elapsed

    once()
    return statistics.median(once() for _ in range(repeats)) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "napari_imilia_bench_formats",
        help="where the generated slides are kept between runs",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per cell")
    args = parser.parse_args(argv)
    files = bench_files(args.cache_dir)
    labels = list(SIDES)
    print(
        f"Median open_slide + layer data (ms) over {args.repeats} runs after a warm-up; "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    print()
    print("| format, backend | " + " | ".join(labels) + " | ratio |")
    print("| --- | " + " | ".join("---:" for _ in labels) + " | ---: |")
    for row, kind, backend in CASES:
        times = [median_open_ms(files[(label, kind)], backend, args.repeats) for label in labels]
        cells = " | ".join(f"{t:.1f}" for t in times)
        print(f"| {row} | {cells} | {times[-1] / times[0]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
