"""Whole-slide images opened lazily through tiffslide's zarr store.

Every pyramid level is a dask array (H, W, 3) uint8 over tiffslide's zarr group; nothing
reads a whole level on open. When a slide has no (or too short a) pyramid, coarser levels
are added as lazy dask reductions of the finest one, so a viewer can still show an overview.
Coordinates follow the whole-slide convention: ``level0_xy`` is (x, y) in level-0 pixels.
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

#: Pixel sizes outside this range (µm/px) cannot come from a slide scanner.
PLAUSIBLE_MPP_RANGE: tuple[float, float] = (0.05, 20.0)
#: Target dask chunk side (px); native chunks are grouped to about this size.
TARGET_CHUNK_PX = 1024
#: Lazy levels are added until the coarsest level fits in this many pixels per side.
OVERVIEW_MAX_PX = 2048


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
    """An open whole-slide image. Use :func:`open_slide` to make one."""

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
    _tiffslide: Any = field(repr=False)

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
        """SHA-256 of the file size, level shapes and the first and last MiB of the file.

        Cheap to compute for any slide size; identifies the slide for cache keys.
        """
        digest = hashlib.sha256()
        size = self.path.stat().st_size
        digest.update(str(size).encode())
        digest.update(repr(self.level_dimensions[: self.native_level_count]).encode())
        with open(self.path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
        return digest.hexdigest()

    # -- pixels -------------------------------------------------------------------------
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
        # a local scheduler: inside a dask.distributed task the default one would be the
        # cluster's, which cannot receive this graph (it holds the open file)
        image = np.asarray(self.levels[level].compute(scheduler="threads"))
        scale = max(image.shape[:2]) / max_px
        if scale > 1:
            from skimage.transform import resize

            out_shape = (round(image.shape[0] / scale), round(image.shape[1] / scale))
            image = (resize(image, out_shape, anti_aliasing=True, preserve_range=True) + 0.5)
            image = image.astype(np.uint8)
        return image

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (``thumbnail``, ``label``, ``macro``) as RGB uint8."""
        if name not in self.associated_image_names:
            available = ", ".join(self.associated_image_names) or "none"
            raise SlideError(f"{self.path.name} has no {name!r} image (available: {available})")
        return np.asarray(self._tiffslide.associated_images[name].convert("RGB"))

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description: dimensions, levels, MPP, objective, vendor."""
        return {
            "path": str(self.path),
            "slide_id": self.slide_id,
            "dimensions_px": list(self.dimensions),
            "level_dimensions_px": [list(dims) for dims in self.level_dimensions],
            "level_downsamples": self.level_downsamples,
            "native_levels": self.native_level_count,
            "mpp": self.mpp,
            "mpp_source": self.mpp_source,
            "mpp_warning": self.mpp_warning,
            "objective_power": self.objective_power,
            "vendor": self.vendor,
            "associated_images": list(self.associated_image_names),
        }

    def close(self) -> None:
        self._tiffslide.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def slide_id_for(path: str | os.PathLike[str]) -> str:
    """The ``slide_id`` a slide at ``path`` gets: its file name without slide extension(s)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def open_slide(path: str | os.PathLike[str], mpp: float | None = None) -> Slide:
    """Open a slide lazily. ``mpp`` (µm/px at level 0) overrides the slide's metadata.

    Raises ``SlideError`` with an actionable message for a missing, unreadable, truncated or
    non-slide file. A slide without usable MPP still opens (``slide.mpp is None``); use
    :meth:`Slide.require_mpp` where physical units are needed.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SlideError(f"slide not found: {path}")
    if path.is_dir():
        raise SlideError(f"{path} is a folder, not a slide file")
    if path.stat().st_size == 0:
        raise SlideError(f"{path} is empty (0 bytes); copy the slide again")
    if mpp is not None and not PLAUSIBLE_MPP_RANGE[0] <= mpp <= PLAUSIBLE_MPP_RANGE[1]:
        low, high = PLAUSIBLE_MPP_RANGE
        raise SlideMPPError(f"--mpp {mpp} is outside the plausible range {low}-{high} µm/px")

    import tiffslide

    try:
        handle = tiffslide.TiffSlide(path)
    except Exception as error:  # tifffile/PIL raise many types for non-slides
        raise SlideError(
            f"{path.name} is not a whole-slide image that tiffslide can read "
            f"(SVS, generic/OME pyramidal TIFF, NDPI, SCN, BIF...): {_one_line(error)}"
        ) from error
    try:
        _check_complete(handle, path)
        levels, infos = _dask_levels(handle)
        metadata_mpp, mpp_warning = _metadata_mpp(handle.properties, path)
        properties = {k: _plain(v) for k, v in handle.properties.items()}
        associated = tuple(handle.associated_images.keys())
    except SlideError:
        handle.close()
        raise
    except Exception as error:
        handle.close()
        raise SlideError(f"{path.name} could not be read: {_one_line(error)}") from error

    if mpp is not None:
        slide_mpp, source, mpp_warning = float(mpp), "override", None
    else:
        slide_mpp, source = metadata_mpp, "metadata" if metadata_mpp is not None else "missing"
    objective = handle.properties.get("tiffslide.objective-power")
    return Slide(
        path=path.resolve(),
        levels=levels,
        level_info=infos,
        mpp=slide_mpp,
        mpp_source=source,
        mpp_warning=mpp_warning,
        objective_power=float(objective) if objective else None,
        vendor=handle.properties.get("tiffslide.vendor"),
        properties=properties,
        associated_image_names=associated,
        _tiffslide=handle,
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 300 else text[:297] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _metadata_mpp(properties: Any, path: Path) -> tuple[float | None, str | None]:
    """Level-0 MPP from tiffslide's properties, with a warning when absent or implausible."""
    mpp_x = properties.get("tiffslide.mpp-x")
    mpp_y = properties.get("tiffslide.mpp-y")
    if not mpp_x:
        return None, f"slide {path.name} has no MPP (µm/px) metadata"
    mpp_x = float(mpp_x)
    mpp_y = float(mpp_y) if mpp_y else mpp_x
    low, high = PLAUSIBLE_MPP_RANGE
    if not (low <= mpp_x <= high and low <= mpp_y <= high):
        return None, (
            f"slide {path.name} reports {mpp_x:.4g} µm/px, which no scanner produces "
            f"(plausible: {low}-{high} µm/px); its resolution tags are probably wrong"
        )
    if abs(mpp_x - mpp_y) > 0.05 * mpp_x:
        return mpp_x, f"slide {path.name} has non-square pixels ({mpp_x} x {mpp_y} µm); using x"
    return mpp_x, None


def _check_complete(handle: Any, path: Path) -> None:
    """Raise if any image tile or strip points beyond the end of the file (truncated copy)."""
    size = path.stat().st_size
    tiff = handle.ts_tifffile
    for page in tiff.pages:
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size and int((offsets + counts).max()) > size:
            raise SlideError(
                f"{path.name} is truncated or corrupt: its image data runs past the end of the "
                f"file ({size} bytes); copy the slide again"
            )


def _chunks_for(native: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Group native chunks to about ``TARGET_CHUNK_PX`` per side (strips become squares)."""
    out = []
    for axis in (0, 1):
        n = int(native[axis])
        if n >= 4 * TARGET_CHUNK_PX or n >= shape[axis]:
            size = min(TARGET_CHUNK_PX, int(shape[axis]))
        else:
            size = max(n, round(TARGET_CHUNK_PX / n) * n)
        out.append(min(size, int(shape[axis])))
    return out[0], out[1], 3


def _dask_levels(handle: Any) -> tuple[list[da.Array], list[LevelInfo]]:
    group = handle.zarr_group
    levels: list[da.Array] = []
    infos: list[LevelInfo] = []
    width0 = handle.level_dimensions[0][0]
    for index in range(handle.level_count):
        array = group[str(index)]
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise SlideError(f"level {index} has shape {array.shape}; expected an RGB(A) image")
        chunks = _chunks_for(array.chunks, array.shape)
        level = da.from_array(array, chunks=(*chunks[:2], array.shape[2]), lock=False)
        if array.shape[2] == 4:
            level = level[..., :3]
        if level.dtype != np.uint8:
            raise SlideError(f"level {index} has dtype {level.dtype}; only 8-bit RGB is supported")
        levels.append(level)
        infos.append(
            LevelInfo(
                index=index,
                width_px=int(array.shape[1]),
                height_px=int(array.shape[0]),
                downsample=float(handle.level_downsamples[index]),
                native=True,
            )
        )
    while max(levels[-1].shape[:2]) > OVERVIEW_MAX_PX:
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


def _coarsen2(level: da.Array) -> da.Array:
    """Lazy 2x mean-downsampling of an (H, W, 3) uint8 dask array (edges cropped)."""
    height, width = (level.shape[0] // 2) * 2, (level.shape[1] // 2) * 2
    cropped = level[:height, :width]
    chunk = TARGET_CHUNK_PX * 2
    cropped = cropped.rechunk((min(chunk, height), min(chunk, width), 3))
    reduced = da.coarsen(np.mean, cropped.astype(np.float32), {0: 2, 1: 2}, trim_excess=True)
    return (reduced + 0.5).astype(np.uint8)
