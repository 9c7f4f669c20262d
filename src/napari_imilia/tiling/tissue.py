"""Tissue detection on a low-resolution level of a slide.

The mask is computed at about ``mask_mpp`` µm/px (8 by default) from the coarsest pyramid
level that is at least that fine, block-averaged by an integer factor, so a big slide is never
read at level 0. Steps, all on that small image:

1. Smooth (3 x 3 median) the HSV saturation and the mean optical density
   ``OD = -log10((I + 1) / 256)`` over R, G, B.
2. Pen marks (``remove_pen``): blue/green ink absorbs red more than green (``OD_R - OD_G``
   above ``PEN_OD_MARGIN``, grown by hysteresis to ``PEN_OD_MARGIN_LOW``), which H&E never does
   (eosin and hematoxylin both absorb green most); black ink is dark and neutral (mean OD above
   ``BLACK_MIN_OD``, channel ODs within ``BLACK_MAX_OD_SPREAD`` of each other). Ink pixels,
   dilated by ``PEN_DILATION_UM``, are excluded. Ink lying over eosin-rich tissue is kept.
3. Tissue = saturation above ``saturation_threshold`` and mean OD above ``min_od``. Either
   left as None is Otsu's threshold over the non-ink pixels, clipped to ``SATURATION_BOUNDS`` /
   ``OD_BOUNDS`` so a blank slide (Otsu splits noise) or a slide filled with tissue (Otsu splits
   eosin from hematoxylin) still gets a sane cut.
4. Closing (``CLOSING_UM``) then opening (``OPENING_UM``) with disks; holes smaller than
   ``fill_holes_um2`` are filled and pieces smaller than ``min_tissue_area_um2`` dropped.

A blank slide gives an empty mask; :func:`napari_imilia.tiling.grid.make_tile_grid` then raises
:class:`NoTissueError` naming the slide and :meth:`TissueMask.describe`'s thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask.array as da
import numpy as np
from scipy import ndimage as ndi

from napari_imilia.errors import ImiliaError
from napari_imilia.slide import Slide
from napari_imilia.slide.core import check_overview

#: Otsu thresholds are clipped into these ranges (saturation in [0, 1], mean OD).
SATURATION_BOUNDS: tuple[float, float] = (0.05, 0.15)
OD_BOUNDS: tuple[float, float] = (0.05, 0.15)
#: Blue/green ink: ``OD_R - OD_G`` above the high margin, grown down to the low one.
PEN_OD_MARGIN = 0.08
PEN_OD_MARGIN_LOW = 0.03
#: Black ink: mean OD above this and (max - min) channel OD at most this fraction of the max.
BLACK_MIN_OD = 0.6
BLACK_MAX_OD_SPREAD = 0.3
#: Ink masks are dilated by this many µm to catch stroke edges.
PEN_DILATION_UM = 16.0
#: Morphology radii (µm).
CLOSING_UM = 16.0
OPENING_UM = 8.0


class NoTissueError(ImiliaError):
    """A slide has no tissue under the detection thresholds."""


@dataclass(frozen=True)
class TissueMask:
    """Tissue mask of a slide: ``mask[row, col]`` covers level-0 pixels
    ``[col * level0_per_px, (col + 1) * level0_per_px)`` (and the same for rows).

    ``mpp`` is µm per mask pixel. The thresholds actually used are kept for messages.
    """

    mask: np.ndarray
    mpp: float
    level0_per_px: float
    saturation_threshold: float
    min_od: float
    min_tissue_area_um2: float
    pen_fraction: float = 0.0

    @property
    def is_empty(self) -> bool:
        return not bool(self.mask.any())

    @property
    def tissue_fraction(self) -> float:
        """Fraction of the slide area that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    @property
    def area_um2(self) -> float:
        """Tissue area in µm²."""
        return float(self.mask.sum()) * self.mpp**2

    def describe(self) -> str:
        """The thresholds, for error messages and logs."""
        return (
            f"saturation > {self.saturation_threshold:.3f}, mean optical density > "
            f"{self.min_od:.3f}, pieces >= {self.min_tissue_area_um2:g} µm², "
            f"mask at {self.mpp:.3g} µm/px"
        )


def detect_tissue(
    slide: Slide,
    *,
    mask_mpp: float = 8.0,
    saturation_threshold: float | None = None,
    min_od: float | None = None,
    min_tissue_area_um2: float = 20_000.0,
    fill_holes_um2: float = 20_000.0,
    remove_pen: bool = True,
) -> TissueMask:
    """Tissue mask at about ``mask_mpp`` µm/px (see the module docstring for the method).

    ``saturation_threshold`` (HSV saturation, 0-1) and ``min_od`` (mean optical density)
    default to bounded Otsu thresholds. Areas are µm². Raises ``SlideMPPError`` when the slide
    has no pixel size.
    """
    rgb, level0_per_px = low_resolution_rgb(slide, mask_mpp)
    mpp = slide.require_mpp() * level0_per_px
    return tissue_mask_from_rgb(
        rgb,
        mpp=mpp,
        level0_per_px=level0_per_px,
        saturation_threshold=saturation_threshold,
        min_od=min_od,
        min_tissue_area_um2=min_tissue_area_um2,
        fill_holes_um2=fill_holes_um2,
        remove_pen=remove_pen,
    )


def low_resolution_rgb(slide: Slide, mask_mpp: float) -> tuple[np.ndarray, float]:
    """RGB image at about ``mask_mpp`` µm/px (never coarser) and its level-0 px per pixel.

    Uses the coarsest level at least as fine as ``mask_mpp`` and block-averages it by the
    largest integer factor that keeps the result at or below ``mask_mpp``. Refused
    (``SlideError``) when that would decode more than ``IMILIA_MAX_OVERVIEW_MPX`` megapixels
    (a giant slide without a pyramid: :func:`~napari_imilia.slide.core.check_overview`).
    """
    if mask_mpp <= 0:
        raise ImiliaError(f"mask_mpp must be positive, got {mask_mpp}")
    slide_mpp = slide.require_mpp()
    fine_enough = [
        info for info in slide.level_info if slide_mpp * info.downsample <= mask_mpp * 1.001
    ]
    info = max(fine_enough, key=lambda i: i.downsample) if fine_enough else slide.level_info[0]
    check_overview(slide, info.index, "finding its tissue")
    level = slide.levels[info.index]
    factor = max(1, math.floor(mask_mpp / (slide_mpp * info.downsample) + 1e-6))
    factor = min(factor, int(level.shape[0]), int(level.shape[1]))
    if factor > 1:
        height = (level.shape[0] // factor) * factor
        width = (level.shape[1] // factor) * factor
        chunk = factor * max(1, 2048 // factor)
        level = level[:height, :width].rechunk((min(chunk, height), min(chunk, width), 3))
        level = da.coarsen(np.mean, level.astype(np.float32), {0: factor, 1: factor})
        level = (level + 0.5).astype(np.uint8)
    rgb = np.asarray(level.compute(scheduler="threads"))
    return rgb, info.downsample * factor


def tissue_mask_from_rgb(
    rgb: np.ndarray,
    *,
    mpp: float,
    level0_per_px: float = 1.0,
    saturation_threshold: float | None = None,
    min_od: float | None = None,
    min_tissue_area_um2: float = 20_000.0,
    fill_holes_um2: float = 20_000.0,
    remove_pen: bool = True,
) -> TissueMask:
    """Tissue mask of an (H, W, 3) uint8 image at ``mpp`` µm/px (the steps of the module)."""
    rgb = np.asarray(rgb)[..., :3]
    od = -np.log10((rgb.astype(np.float32) + 1.0) / 256.0)
    od = np.stack([ndi.median_filter(od[..., c], size=3) for c in range(3)], axis=-1)
    saturation = ndi.median_filter(_saturation(rgb), size=3)
    od_mean = od.mean(axis=-1)

    pen = pen_mask(od, mpp=mpp) if remove_pen else np.zeros(rgb.shape[:2], dtype=bool)
    usable = ~pen
    sat_cut = _bounded_otsu(saturation[usable], saturation_threshold, SATURATION_BOUNDS)
    od_cut = _bounded_otsu(od_mean[usable], min_od, OD_BOUNDS)
    mask = (saturation > sat_cut) & (od_mean > od_cut) & usable

    mask = _close_open(mask, closing_px=round(CLOSING_UM / mpp), opening_px=round(OPENING_UM / mpp))
    mask &= usable
    mask = fill_small_holes(mask, max_hole_px=fill_holes_um2 / mpp**2)
    mask = remove_small_pieces(mask, min_piece_px=min_tissue_area_um2 / mpp**2)
    return TissueMask(
        mask=mask,
        mpp=float(mpp),
        level0_per_px=float(level0_per_px),
        saturation_threshold=float(sat_cut),
        min_od=float(od_cut),
        min_tissue_area_um2=float(min_tissue_area_um2),
        pen_fraction=float(pen.mean()) if pen.size else 0.0,
    )


def pen_mask(od: np.ndarray, *, mpp: float) -> np.ndarray:
    """(H, W) bool ink pixels from per-channel optical density ``od`` (H, W, 3)."""
    from skimage.filters import apply_hysteresis_threshold

    red_over_green = od[..., 0] - od[..., 1]
    colored = apply_hysteresis_threshold(red_over_green, PEN_OD_MARGIN_LOW, PEN_OD_MARGIN)
    od_max = od.max(axis=-1)
    spread = od_max - od.min(axis=-1)
    black = (od.mean(axis=-1) > BLACK_MIN_OD) & (spread <= BLACK_MAX_OD_SPREAD * od_max)
    ink = colored | black
    radius = round(PEN_DILATION_UM / mpp)
    if radius > 0 and ink.any():
        ink = ndi.binary_dilation(ink, structure=_disk(radius))
    return ink


def fill_small_holes(mask: np.ndarray, *, max_hole_px: float) -> np.ndarray:
    """Fill background regions enclosed by ``mask`` whose area is below ``max_hole_px``."""
    labels, count = ndi.label(~mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = sizes < max_hole_px
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def remove_small_pieces(mask: np.ndarray, *, min_piece_px: float) -> np.ndarray:
    """Drop 8-connected pieces of ``mask`` smaller than ``min_piece_px`` pixels."""
    labels, count = ndi.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_piece_px
    keep[0] = False
    return keep[labels]


def _saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1]: (max - min) / max, 0 for black."""
    high = rgb.max(axis=-1).astype(np.float32)
    low = rgb.min(axis=-1).astype(np.float32)
    return np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)


def _bounded_otsu(values: np.ndarray, given: float | None, bounds: tuple[float, float]) -> float:
    if given is not None:
        return float(given)
    if values.size == 0 or float(values.min()) == float(values.max()):
        return bounds[1]
    from skimage.filters import threshold_otsu

    return float(np.clip(float(threshold_otsu(values)), *bounds))


def _disk(radius_px: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return (yy**2 + xx**2) <= radius_px**2


def _close_open(mask: np.ndarray, *, closing_px: int, opening_px: int) -> np.ndarray:
    """Closing then opening with disks; edges are padded so tissue at the border survives."""
    pad = max(closing_px, opening_px, 0)
    if pad == 0 or not mask.any():
        return mask
    padded = np.pad(mask, pad, mode="edge")
    if closing_px > 0:
        padded = ndi.binary_closing(padded, structure=_disk(closing_px))
    if opening_px > 0:
        padded = ndi.binary_opening(padded, structure=_disk(opening_px))
    return padded[pad:-pad, pad:-pad]
