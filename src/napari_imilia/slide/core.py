"""The open slide every backend gives: lazy dask levels, MPP with its source, region reads.

Every pyramid level is a dask array (H, W, 3) uint8 over the backend's own tile reads
(tiffslide's zarr store, wsidicom's or OpenSlide's region reads); nothing reads a whole level
on open. When a slide has no (or too short a) pyramid, coarser levels are added as lazy dask
reductions of the finest one, so a viewer can still show an overview. Coordinates follow the
whole-slide convention: ``level0_xy`` is (x, y) in level-0 pixels.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from napari_imilia.errors import SlideError, SlideMPPError
from napari_imilia.slide.backends.base import SlideSource

#: Pixel sizes outside this range (µm/px) cannot come from a slide scanner.
PLAUSIBLE_MPP_RANGE: tuple[float, float] = (0.05, 20.0)
#: Target dask chunk side (px); native chunks are grouped to about this size.
TARGET_CHUNK_PX = 1024
#: Lazy levels are added until the coarsest level fits in this many pixels per side.
OVERVIEW_MAX_PX = 2048
#: At most this many files of a multi-file slide (DICOM folder, MIRAX) enter the quick hash.
HASH_MAX_FILES = 64
#: A whole-slide overview (lazy levels, tissue detection, thumbnail) decodes at most this many
#: megapixels of the coarsest stored level; environment variable ``IMILIA_MAX_OVERVIEW_MPX``.
MAX_OVERVIEW_MPX = 4096


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level: size in pixels, downsample from level 0, whether it is native."""

    index: int
    width_px: int
    height_px: int
    downsample: float
    native: bool


@dataclass
class Slide:
    """An open whole-slide image. Use :func:`~napari_imilia.slide.open_slide` to make one.

    ``format_name`` says what the file is ("Aperio SVS", "OME-TIFF", "DICOM WSI", "MIRAX"...),
    ``backend`` which library reads it ("tiffslide", "wsidicom", "openslide"); ``mpp_source``
    is "metadata", "override" or "missing" and ``mpp_origin`` where in the metadata the MPP
    was found (e.g. "OME-XML PhysicalSizeX = 500 nm").
    """

    path: Path
    levels: list[da.Array]
    level_info: list[LevelInfo]
    mpp: float | None
    mpp_source: str
    mpp_warning: str | None
    objective_power: float | None
    vendor: str | None
    properties: dict[str, Any]
    associated_image_names: tuple[str, ...]
    _source: SlideSource = field(repr=False)
    format_name: str = "unknown"
    backend: str = "unknown"
    mpp_origin: str | None = None

    # -- identity -----------------------------------------------------------------------
    @property
    def slide_id(self) -> str:
        """File name without its slide extension(s), e.g. ``CMU-1`` for ``CMU-1.svs``."""
        return slide_id_for(self.path)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_info[0].width_px, self.level_info[0].height_px

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        """(width, height) in pixels of every level, native and lazy."""
        return [(info.width_px, info.height_px) for info in self.level_info]

    @property
    def level_downsamples(self) -> list[float]:
        return [info.downsample for info in self.level_info]

    @property
    def native_level_count(self) -> int:
        return sum(info.native for info in self.level_info)

    def require_mpp(self) -> float:
        """Level-0 µm/px, or a ``SlideMPPError`` telling the user how to provide it."""
        if self.mpp is None:
            problem = self.mpp_warning or f"slide {self.path} has no MPP metadata"
            raise SlideMPPError(
                f"{problem}; pass the level-0 pixel size, e.g. --mpp 0.25 (40x) or --mpp 0.5 (20x)"
            )
        return self.mpp

    def level_mpp(self, level: int) -> float:
        """µm/px at ``level`` (requires a known MPP)."""
        return self.require_mpp() * self.level_info[level].downsample

    def quick_hash(self) -> str:
        """SHA-256 of the file size(s), level shapes and the first and last MiB of each file.

        Cheap to compute for any slide size; identifies the slide for cache keys. A single-file
        slide hashes as it always did; a multi-file one (DICOM folder, MIRAX) adds each file's
        name, size and ends, in name order (at most :data:`HASH_MAX_FILES` files).
        """
        files = list(self._source.files) or [self.path]
        digest = hashlib.sha256()
        if len(files) == 1:
            _hash_file(digest, files[0], levels=self.level_dimensions[: self.native_level_count])
            return digest.hexdigest()
        digest.update(repr(self.level_dimensions[: self.native_level_count]).encode())
        for path in sorted(files)[:HASH_MAX_FILES]:
            digest.update(path.name.encode())
            _hash_file(digest, path, levels=None)
        return digest.hexdigest()

    # -- pixels -------------------------------------------------------------------------
    def native_array(self, level: int) -> Any:
        """The backend's own (H, W, C) array of a native ``level`` (thread-safe slicing)."""
        if not self.level_info[level].native:
            raise SlideError(f"{self.path.name}: level {level} is not stored in the slide")
        return self._source.arrays[level]

    def best_level_for_downsample(self, downsample: float) -> int:
        """Finest native level whose downsample does not exceed ``downsample`` (+1 % slack)."""
        best = 0
        for info in self.level_info:
            if info.native and info.downsample <= downsample * 1.01:
                best = info.index if info.downsample >= self.level_info[best].downsample else best
        return best

    def read_region(
        self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]
    ) -> np.ndarray:
        """Read ``size_px`` = (width, height) pixels of ``level`` starting at level-0 ``(x, y)``.

        Like OpenSlide's ``read_region`` but RGB: areas outside the slide are white.
        """
        if not 0 <= level < len(self.levels):
            raise SlideError(f"{self.path.name}: level {level} does not exist")
        width, height = (int(v) for v in size_px)
        if width <= 0 or height <= 0:
            raise SlideError(f"region size must be positive, got {size_px}")
        ds = self.level_info[level].downsample
        x0 = math.floor(level0_xy[0] / ds)
        y0 = math.floor(level0_xy[1] / ds)
        array = self.levels[level]
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        ys, ye = max(y0, 0), min(y0 + height, array.shape[0])
        xs, xe = max(x0, 0), min(x0 + width, array.shape[1])
        if ys < ye and xs < xe:
            block = array[ys:ye, xs:xe].compute(scheduler="synchronous")
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = block
        return out

    def thumbnail(self, max_px: int = 1024) -> np.ndarray:
        """RGB thumbnail whose longer side is at most ``max_px``, from the coarsest fit level."""
        width, height = self.dimensions
        target_ds = max(width, height) / max_px
        level = len(self.levels) - 1
        for info in self.level_info:
            if info.downsample >= target_ds * 0.999:
                level = info.index
                break
        check_overview(self, level, "a thumbnail")
        # a local scheduler: inside a dask.distributed task the default one would be the
        # cluster's, which cannot receive this graph (it holds the open file)
        image = np.asarray(self.levels[level].compute(scheduler="threads"))
        scale = max(image.shape[:2]) / max_px
        if scale > 1:
            from skimage.transform import resize

            out_shape = (round(image.shape[0] / scale), round(image.shape[1] / scale))
            image = resize(image, out_shape, anti_aliasing=True, preserve_range=True) + 0.5
            image = image.astype(np.uint8)
        return image

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (``thumbnail``, ``label``, ``macro``) as RGB uint8."""
        if name not in self.associated_image_names:
            available = ", ".join(self.associated_image_names) or "none"
            raise SlideError(f"{self.path.name} has no {name!r} image (available: {available})")
        return np.asarray(self._source.read_associated(name))[..., :3]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description: format, backend, dimensions, levels, MPP, vendor."""
        return {
            "path": str(self.path),
            "slide_id": self.slide_id,
            "format": self.format_name,
            "backend": self.backend,
            "dimensions_px": list(self.dimensions),
            "level_dimensions_px": [list(dims) for dims in self.level_dimensions],
            "level_downsamples": self.level_downsamples,
            "native_levels": self.native_level_count,
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "mpp_origin": self.mpp_origin,
            "mpp_warning": self.mpp_warning,
            "objective_power": self.objective_power,
            "vendor": self.vendor,
            "associated_images": list(self.associated_image_names),
        }

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: File endings that are not part of a slide's id (``.ome.tif`` before ``.tif``).
_MULTI_SUFFIXES: tuple[str, ...] = (".ome.tiff", ".ome.tif")


def slide_id_for(path: str | os.PathLike[str]) -> str:
    """The ``slide_id`` a slide at ``path`` gets: its file name without slide extension(s),
    made a safe folder name (:func:`~napari_imilia.trust.paths.safe_name`: ``CMU-1.svs`` gives
    ``CMU-1``; ``...svs``, a name with control characters or one over 100 bytes gives a
    cleaned, shortened name ending in ``-<8 hex>`` of the original).

    A DICOM file stands for its series, the folder it is in: ``case1/level0.dcm`` -> ``case1``.
    """
    from napari_imilia.trust.paths import safe_name

    path = Path(path)
    name = path.name
    if name.lower().endswith(".dcm") and path.parent.name:
        return slide_id_for(path.parent)
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return safe_name(name[: -len(suffix)])
    return safe_name(path.stem)


def check_mpp(
    mpp_xy: tuple[float, float] | None, name: str, what: str = "MPP (µm/px) metadata"
) -> tuple[float | None, str | None]:
    """Level-0 MPP from a backend's (x, y) µm/px, with a warning when absent or implausible."""
    if mpp_xy is None or not mpp_xy[0]:
        return None, f"slide {name} has no {what}"
    mpp_x, mpp_y = float(mpp_xy[0]), float(mpp_xy[1] or mpp_xy[0])
    low, high = PLAUSIBLE_MPP_RANGE
    if not (low <= mpp_x <= high and low <= mpp_y <= high):
        return None, (
            f"slide {name} reports {mpp_x:.4g} µm/px, which no scanner produces "
            f"(plausible: {low}-{high} µm/px); its resolution tags are probably wrong"
        )
    if abs(mpp_x - mpp_y) > 0.05 * mpp_x:
        return mpp_x, f"slide {name} has non-square pixels ({mpp_x} x {mpp_y} µm); using x"
    return mpp_x, None


def dask_levels(source: SlideSource) -> tuple[list[da.Array], list[LevelInfo]]:
    """Dask arrays over a backend's native levels, plus lazy 2x levels down to an overview."""
    levels: list[da.Array] = []
    infos: list[LevelInfo] = []
    width0 = int(source.arrays[0].shape[1])
    for index, array in enumerate(source.arrays):
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise SlideError(f"level {index} has shape {array.shape}; expected an RGB(A) image")
        if np.dtype(array.dtype) != np.uint8:
            raise SlideError(f"level {index} has dtype {array.dtype}; only 8-bit RGB is supported")
        chunks = chunks_for(source.tile_shapes[index], array.shape)
        level = da.from_array(
            array,
            chunks=(*chunks[:2], array.shape[2]),
            lock=False,
            name=source.level_name(index),
            meta=np.empty((0, 0, array.shape[2]), np.uint8),
        )
        if array.shape[2] == 4:
            level = level[..., :3]
        levels.append(level)
        infos.append(
            LevelInfo(
                index=index,
                width_px=int(array.shape[1]),
                height_px=int(array.shape[0]),
                downsample=float(source.downsamples[index]),
                native=True,
            )
        )
    # lazy levels reduce the coarsest stored level: not from one too big to ever decode
    overview = overview_budget_px() >= levels[-1].shape[0] * levels[-1].shape[1]
    while overview and max(levels[-1].shape[:2]) > OVERVIEW_MAX_PX:
        coarser = _coarsen2(levels[-1])
        levels.append(coarser)
        infos.append(
            LevelInfo(
                index=len(infos),
                width_px=int(coarser.shape[1]),
                height_px=int(coarser.shape[0]),
                downsample=width0 / coarser.shape[1],
                native=False,
            )
        )
    return levels, infos


def overview_budget_px() -> int:
    """Pixels an overview may decode (:data:`MAX_OVERVIEW_MPX`, or ``IMILIA_MAX_OVERVIEW_MPX``)."""
    text = os.environ.get("IMILIA_MAX_OVERVIEW_MPX", "").strip()
    try:
        mpx = float(text) if text else MAX_OVERVIEW_MPX
    except ValueError:
        raise SlideError(
            f"IMILIA_MAX_OVERVIEW_MPX must be a number of megapixels, got {text!r}"
        ) from None
    return int(max(mpx, 0.0) * 1e6)


def check_overview(slide: Slide, level: int, what: str) -> None:
    """Raise ``SlideError`` when making ``what`` from ``level`` would decode more than
    :func:`overview_budget_px` pixels of a stored level (a lazy level reduces the coarsest
    stored one: a slide without a pyramid decodes all of level 0)."""
    info = slide.level_info[level]
    source = info if info.native else slide.level_info[slide.native_level_count - 1]
    pixels = source.width_px * source.height_px
    budget = overview_budget_px()
    if pixels <= budget:
        return
    width, height = slide.dimensions
    raise SlideError(
        f"{slide.path.name} is {width} x {height} px and its coarsest stored level is "
        f"{source.width_px} x {source.height_px} px: {what} would decode {pixels / 1e6:,.0f} "
        f"megapixels, above the limit of {budget / 1e6:,.0f} megapixels (IMILIA_MAX_OVERVIEW_MPX "
        "raises it); save the slide as a pyramidal TIFF (e.g. vips tiffsave SLIDE out.tif --tile "
        "--pyramid --compression jpeg) and use that"
    )


def chunks_for(native: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Group native (h, w) chunks to about ``TARGET_CHUNK_PX`` per side (strips: squares)."""
    out = []
    for axis in (0, 1):
        n = max(1, int(native[axis]))
        if n >= 4 * TARGET_CHUNK_PX or n >= shape[axis]:
            size = min(TARGET_CHUNK_PX, int(shape[axis]))
        else:
            size = max(n, round(TARGET_CHUNK_PX / n) * n)
        out.append(min(size, int(shape[axis])))
    return out[0], out[1], 3


def _coarsen2(level: da.Array) -> da.Array:
    """Lazy 2x mean-downsampling of an (H, W, 3) uint8 dask array (edges cropped)."""
    height, width = (level.shape[0] // 2) * 2, (level.shape[1] // 2) * 2
    cropped = level[:height, :width]
    chunk = TARGET_CHUNK_PX * 2
    cropped = cropped.rechunk((min(chunk, height), min(chunk, width), 3))
    reduced = da.coarsen(np.mean, cropped.astype(np.float32), {0: 2, 1: 2}, trim_excess=True)
    return (reduced + 0.5).astype(np.uint8)


def _hash_file(digest: Any, path: Path, levels: list[tuple[int, int]] | None) -> None:
    """Size, (level shapes), first and last MiB of ``path`` into ``digest``."""
    size = path.stat().st_size
    digest.update(str(size).encode())
    if levels is not None:
        digest.update(repr(levels).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
