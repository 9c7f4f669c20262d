"""Synthetic whole-slide images: the cached sample slide and small slides for cohorts.

Slides are Aperio-like SVS files (what tiffslide and OpenSlide read with MPP and objective
power): level 0 tiled, a stripped thumbnail, then coarser tiled levels, JPEG (or zlib) tiles.
Beside each slide, ``<slide>.truth.json`` holds its ground truth (planted inflamed boxes in
level-0 pixels, inflamed yes/no, cell counts) and the slide's SHA-256, which is how a cached
file is known to be complete. Same arguments, byte-identical files.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.files import atomic_path, sha256_file, write_text_atomic
from napari_imilia.user_dirs import cache_dir

if TYPE_CHECKING:
    from napari_imilia.demo.synthetic.scene import Scene
    from napari_imilia.demo.synthetic.shapes import BlobTissue

#: Bump when the generator's output changes, so caches are regenerated under a new name.
GENERATOR_VERSION = 1
SAMPLE_SIZE_PX: tuple[int, int] = (6144, 4096)
SAMPLE_MPP = 0.5
OBJECTIVE_POWER = 20
TILE_PX = 256
JPEG_QUALITY = 90
THUMBNAIL_MAX_PX = 1024
#: Level 0 is drawn in strips of this many tile rows (memory: strip height x width x 3 bytes).
STRIP_TILES = 4
#: Layout of :func:`sample_slide_path` slides besides size, seed and inflammation.
_SAMPLE_LAYOUT: dict[str, Any] = {"mpp": SAMPLE_MPP, "n_inflamed_regions": 3, "n_pieces": 2}
_APERIO = "Aperio Image Library v12.0.15"


def default_cache_dir() -> Path:
    """Where the sample slide is generated: :func:`napari_imilia.user_dirs.cache_dir`
    (``$IMILIA_CACHE_DIR``, else the platform's user cache folder)."""
    return cache_dir()


def truth_path(slide_path: str | os.PathLike[str]) -> Path:
    """Where the ground truth of a synthetic slide lives: ``<slide>.truth.json``."""
    slide_path = Path(slide_path)
    return slide_path.with_name(slide_path.name + ".truth.json")


def read_truth(slide_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ground truth written beside a synthetic slide; raises ``DataError`` if unreadable."""
    path = truth_path(slide_path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(
            f"no readable ground truth {path}: regenerate the slide with write_synthetic_slide"
        ) from error


def sample_slide_path(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    inflamed: bool = True,
    seed: int = 0,
    size_px: tuple[int, int] = SAMPLE_SIZE_PX,
) -> Path:
    """Path of the sample slide (two colon biopsy pieces, 0.5 µm/px, 20x), made if needed.

    Generated once into ``cache_dir`` (default :func:`default_cache_dir`) and reused while its
    SHA-256 matches the truth file; a missing, partial or corrupt file is regenerated.
    ``inflamed`` plants three inflamed areas; ``size_px`` is (width, height) at level 0.
    """
    width_px, height_px = (int(v) for v in size_px)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    kind = "inflamed" if inflamed else "normal"
    path = folder / f"imilia_sample_v{GENERATOR_VERSION}_{kind}_s{seed}_{width_px}x{height_px}.svs"
    if is_complete_slide(path):
        return path
    try:
        write_synthetic_slide(
            path,
            width_px=width_px,
            height_px=height_px,
            seed=seed,
            inflamed_regions="random" if inflamed else (),
            **_SAMPLE_LAYOUT,
            levels=(1, 4, 16),
        )
    except OSError as error:
        raise ImiliaError(
            f"cannot write the sample slide to {folder} ({error.strerror or error}); "
            "set IMILIA_CACHE_DIR to a writable folder"
        ) from error
    return path


def sample_slide_scene(
    *, inflamed: bool = True, seed: int = 0, size_px: tuple[int, int] = SAMPLE_SIZE_PX
) -> Scene:
    """The scene :func:`sample_slide_path` draws with the same arguments (its ground truth,
    e.g. ``synthetic.truth.epithelium_truth``), without reading or writing the slide."""
    width_px, height_px = (int(v) for v in size_px)
    return slide_scene(
        width_px,
        height_px,
        seed=seed,
        inflamed_regions="random" if inflamed else (),
        **_SAMPLE_LAYOUT,
    )


def synthetic_slide_scene(
    slide_path: str | os.PathLike[str], *, n_pieces: int | None = None
) -> Scene:
    """The scene a synthetic slide was drawn from, rebuilt from its ``.truth.json``.

    ``n_pieces`` (tissue pieces) is read from the truth; truth files written before it was
    recorded need it given (2 for :func:`sample_slide_path` slides; ``write_synthetic_slide``
    draws 1 unless told otherwise).
    """
    truth = read_truth(slide_path)
    pieces = truth.get("tissue_pieces") if n_pieces is None else n_pieces
    if pieces is None:
        raise DataError(
            f"{truth_path(slide_path)} does not record its tissue pieces; pass n_pieces "
            "(2 for the sample slide) or regenerate the slide"
        )
    return slide_scene(
        int(truth["width_px"]),
        int(truth["height_px"]),
        float(truth["mpp"]),
        int(truth["seed"]),
        inflamed_regions=[tuple(box) for box in truth["inflamed_regions_level0_px"]],
        n_pieces=int(pieces),
    )


def is_complete_slide(path: Path, **expected: Any) -> bool:
    """Whether ``path`` is a fully written synthetic slide (SHA-256 as in its truth file)
    whose truth file has the ``expected`` values (e.g. ``seed=0``)."""
    if not path.is_file():
        return False
    try:
        truth = read_truth(path)
    except DataError:
        return False
    if any(truth.get(key) != value for key, value in expected.items()):
        return False
    return truth.get("sha256") == sha256_file(path)


def write_synthetic_slide(
    path: str | os.PathLike[str],
    *,
    width_px: int,
    height_px: int,
    mpp: float = SAMPLE_MPP,
    seed: int = 0,
    inflamed_regions: Sequence[tuple[float, float, float, float]] | str = (),
    n_inflamed_regions: int = 2,
    levels: Sequence[int] = (1, 4, 16),
    n_pieces: int = 1,
    compression: str = "jpeg",
) -> Path:
    """Write a synthetic pyramidal SVS slide and its ``.truth.json``; returns ``path``.

    ``inflamed_regions``: boxes (x, y, w, h) in level-0 pixels, or "random" for
    ``n_inflamed_regions`` boxes of 300-650 µm placed inside the tissue (seeded);
    ``levels``: downsample factors, the first 1; ``n_pieces``: tissue pieces side by side;
    ``compression``: "jpeg" (quality 90) or "zlib" (lossless).
    """
    levels = [int(v) for v in levels]
    if not levels or levels[0] != 1 or any(b <= a for a, b in itertools.pairwise(levels)):
        raise ValueError(f"levels must start at 1 and increase, got {levels}")
    if compression not in ("jpeg", "zlib"):
        raise ValueError(f"compression must be 'jpeg' or 'zlib', got {compression!r}")
    scene = slide_scene(
        width_px,
        height_px,
        mpp,
        seed,
        inflamed_regions=inflamed_regions,
        n_inflamed_regions=n_inflamed_regions,
        n_pieces=n_pieces,
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_svs(tmp, scene, levels, compression, path.stem)
        tmp.chmod(0o644)  # the temporary file was private; a slide is an ordinary file
    truth = _truth(scene, levels, path)
    write_text_atomic(truth_path(path), json.dumps(truth, indent=1) + "\n")
    return path


def slide_scene(
    width_px: int,
    height_px: int,
    mpp: float,
    seed: int,
    *,
    inflamed_regions: Sequence[tuple[float, float, float, float]] | str = (),
    n_inflamed_regions: int = 2,
    n_pieces: int = 1,
) -> Scene:
    """The scene :func:`write_synthetic_slide` draws (``synthetic.scene.Scene``); level 0 of
    the slide is ``synthetic.raster.rasterise(scene, x, y, w, h).rgb`` before compression."""
    from napari_imilia.demo.synthetic import make_scene, tissue_blobs

    tissue = tissue_blobs(width_px, height_px, seed, n_pieces=n_pieces)
    if isinstance(inflamed_regions, str):
        if inflamed_regions != "random":
            raise ValueError(
                f"inflamed_regions must be boxes or 'random', got {inflamed_regions!r}"
            )
        inflamed_regions = random_inflamed_regions(tissue, mpp, seed, n_inflamed_regions)
    boxes = [tuple(float(v) for v in box) for box in inflamed_regions]
    return make_scene(width_px, height_px, mpp, seed, inflamed_regions=boxes, tissue=tissue)


def random_inflamed_regions(
    tissue: BlobTissue, mpp: float, seed: int, n_regions: int
) -> list[tuple[float, float, float, float]]:
    """``n_regions`` boxes (x, y, w, h; px) of 300-650 µm centred inside tissue pieces
    (taken in turn), not overlapping each other where that can be helped."""
    rng = np.random.default_rng([seed, 9101])
    boxes: list[tuple[float, float, float, float]] = []
    for index in range(n_regions):
        piece = index % len(tissue.x)
        for _attempt in range(50):
            rho, phi = 0.5 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            cx = tissue.x[piece] + rho * tissue.rx[piece] * np.cos(phi)
            cy = tissue.y[piece] + rho * tissue.ry[piece] * np.sin(phi)
            w, h = rng.uniform(300, 650, 2) / mpp
            box = (round(cx - w / 2, 1), round(cy - h / 2, 1), round(w, 1), round(h, 1))
            if not any(_overlap(box, other) for other in boxes):
                break
        boxes.append(box)
    return boxes


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _write_svs(tmp: Path, scene: Scene, levels: list[int], compression: str, name: str) -> None:
    """Level 0 tile by tile (drawn in strips), a stripped thumbnail, then coarser levels."""
    import tifffile

    width, height = scene.width_px, scene.height_px
    thumb_ds = 1 << max(0, math.ceil(math.log2(max(width, height) / THUMBNAIL_MAX_PX)))
    factors = sorted(set(levels[1:]) | {thumb_ds})
    strip_px = math.lcm(STRIP_TILES * TILE_PX, *factors)
    small = {
        ds: np.zeros((max(height // ds, 1), max(width // ds, 1), 3), np.uint8) for ds in factors
    }
    common: dict[str, Any] = {
        "photometric": "rgb",
        "compression": compression,
        "metadata": None,
        "software": "napari-imilia",
    }
    if compression == "jpeg":
        common["compressionargs"] = {"level": JPEG_QUALITY}
    codec = f"JPEG/RGB Q={JPEG_QUALITY}" if compression == "jpeg" else "RGB"
    header = f"{_APERIO} \n{width}x{height} [0,0 {width}x{height}] ({TILE_PX}x{TILE_PX})"
    fields = f"|AppMag = {OBJECTIVE_POWER}|MPP = {scene.mpp}|Filename = {name}"
    with tifffile.TiffWriter(tmp, bigtiff=width * height * 3 > 2**31) as tif:
        tif.write(
            _level0_tiles(scene, small, strip_px),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(TILE_PX, TILE_PX),
            description=f"{header} {codec}{fields}",
            **common,
        )
        thumb = small[thumb_ds]
        size = f"{thumb.shape[1]}x{thumb.shape[0]}"
        tif.write(thumb, description=f"{header} -> {size} - thumbnail", **common)
        for ds in levels[1:]:
            image = small[ds]
            size = f"{image.shape[1]}x{image.shape[0]}"
            tif.write(
                image, tile=(TILE_PX, TILE_PX), description=f"{header} -> {size} {codec}", **common
            )


def _level0_tiles(
    scene: Scene, small: dict[int, np.ndarray], strip_px: int
) -> Iterator[np.ndarray]:
    """Level-0 tiles in row-major order; fills the downsampled images as strips go by.

    ``strip_px`` is a multiple of the tile size and of every downsample factor.
    """
    from napari_imilia.demo.synthetic.raster import rasterise

    width, height = scene.width_px, scene.height_px
    padded = np.full((strip_px, -(-width // TILE_PX) * TILE_PX, 3), 255, np.uint8)
    for top in range(0, height, strip_px):
        rows = min(strip_px, height - top)
        strip = rasterise(scene, 0, top, width, rows).rgb
        _block_means_into(small, strip, top)
        padded[:rows, :width] = strip
        for r in range(0, rows, TILE_PX):
            for c in range(0, width, TILE_PX):
                yield padded[r : r + TILE_PX, c : c + TILE_PX]


def _block_means_into(small: dict[int, np.ndarray], strip: np.ndarray, top: int) -> None:
    """Write exact ``ds`` x ``ds`` block means (rounded) of a level-0 strip starting at row
    ``top`` (a multiple of every ``ds``) into each downsampled image ``small[ds]``."""
    sums = {1: strip}
    factor, level = 1, strip
    powers = [ds for ds in small if ds & (ds - 1) == 0]
    while powers and factor < max(powers):  # 2 x 2 sums of sums: cheap and exact
        h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
        wide = level[0:h:2, 0:w:2].astype(np.uint32 if factor >= 8 else np.uint16)
        level = wide + level[1:h:2, 0:w:2] + level[0:h:2, 1:w:2] + level[1:h:2, 1:w:2]
        factor *= 2
        sums[factor] = level
    for ds, image in small.items():
        total = sums.get(ds)
        if total is None:
            h, w = strip.shape[0] // ds * ds, strip.shape[1] // ds * ds
            blocks = strip[:h, :w].reshape(h // ds, ds, w // ds, ds, 3)
            total = blocks.sum(axis=(1, 3), dtype=np.uint32)
        row = top // ds
        rows = min(total.shape[0], image.shape[0] - row)
        cols = min(total.shape[1], image.shape[1])
        if rows > 0 and cols > 0:
            image[row : row + rows, :cols] = np.rint(total[:rows, :cols] / (ds * ds))


def _truth(scene: Scene, levels: list[int], path: Path) -> dict[str, Any]:
    """Ground truth of a written slide (level-0 pixels), with the slide's SHA-256."""
    from napari_imilia.demo.synthetic.looks import LOOK_NAMES
    from napari_imilia.demo.synthetic.shapes import in_boxes

    cells = scene.cells
    inside = (cells.x >= 0) & (cells.x < scene.width_px) & (cells.y >= 0)
    inside &= cells.y < scene.height_px
    box_of = in_boxes(cells.x, cells.y, scene.inflamed_boxes)

    def counts(select: np.ndarray) -> dict[str, int]:
        found = np.bincount(cells.look[select], minlength=len(LOOK_NAMES))
        return {name: int(n) for name, n in zip(LOOK_NAMES, found, strict=True)}

    return {
        "slide": path.name,
        "sha256": sha256_file(path),
        "generator": f"napari_imilia.demo.synthetic v{GENERATOR_VERSION}",
        "seed": scene.seed,
        "mpp": scene.mpp,
        "objective_power": OBJECTIVE_POWER,
        "width_px": scene.width_px,
        "height_px": scene.height_px,
        "level_downsamples": levels,
        "inflamed": bool(scene.inflamed_boxes),
        "inflamed_regions_level0_px": [list(box) for box in scene.inflamed_boxes],
        "tissue_pieces": len(scene.tissue.x),
        "cell_counts": counts(inside),
        "cell_counts_in_inflamed_regions": counts(inside & (box_of >= 0)),
    }
