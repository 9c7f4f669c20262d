"""A weight-free epithelium heuristic from H&E stain colours ("stain-heuristic").

What it computes, per tile (all lengths in µm, converted with the tile's ``mpp``):

1. Optical density ``OD = -log10((I + 1) / 256)`` per channel (``cells.stain``); tissue =
   pixels whose OD summed over channels, smoothed over 2 µm, exceeds 0.25 (white lumina and
   background are not tissue).
2. Colour deconvolution (Ruifrok & Johnston H&E vectors, ``skimage.color.rgb2hed``):
   hematoxylin (nuclei) and eosin (cytoplasm, stroma) optical densities.
3. Nuclei = tissue pixels whose hematoxylin, smoothed over 0.5 µm, is above Otsu's threshold
   within the tissue (and at least ``MIN_NUCLEAR_HEMATOXYLIN``); nuclei of 8-150 µm² are kept
   and those with eccentricity >= 0.8 (columnar, elongated) marked.
4. Evidence maps, Gaussian-weighted over ``neighbourhood_um`` (default 8 µm, about one crypt
   wall's thickness): density of nuclear pixels, density of elongated nuclear pixels, and
   "purple-pink cytoplasm" (non-nuclear tissue with hematoxylin/eosin ratio above the
   stroma's, i.e. mixed H&E rather than pure pink collagen); and closeness to a lumen /
   tissue border: ``exp(-d / 15 µm)``, d = distance to the nearest non-tissue pixel.
5. Score = weighted mean of the four evidence maps, each scaled to [0, 1]; epithelium =
   score >= ``threshold`` within tissue, then closing (2 µm), opening (1 µm), holes below
   50 µm² filled, regions below ``min_area_um2`` removed.

It is a demo fallback with no learned weights: it confuses dense lymphoid aggregates and
tangentially cut crypts with epithelium and misses flat surface epithelium. Use the EpiSeg
probe for analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_imilia.cells.stain import optical_density, tissue_from_od
from napari_imilia.errors import DataError

MIN_NUCLEAR_HEMATOXYLIN = 0.03
TISSUE_OD_SUM = 0.25


@dataclass(frozen=True)
class StainHeuristicParams:
    """Parameters of the stain heuristic; lengths in µm, areas in µm²."""

    neighbourhood_um: float = 8.0
    lumen_decay_um: float = 15.0
    elongated_eccentricity: float = 0.8
    nucleus_min_area_um2: float = 8.0
    nucleus_max_area_um2: float = 150.0
    weight_nuclear_density: float = 0.3
    weight_elongated_density: float = 0.3
    weight_cytoplasm: float = 0.2
    weight_lumen: float = 0.2
    threshold: float = 0.5
    min_area_um2: float = 100.0
    max_hole_um2: float = 50.0


def tissue_from_rgb(tile_rgb: np.ndarray, *, mpp: float) -> np.ndarray:
    """(H, W) bool: pixels with summed optical density > 0.25 after 2 µm smoothing (the
    cell backends' tissue, ``cells.stain.tissue_from_od``)."""
    return tissue_from_od(optical_density(tile_rgb), mpp=mpp, min_od_sum=TISSUE_OD_SUM)


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, round(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx * xx + yy * yy <= r * r


def _scaled(values: np.ndarray, high: float) -> np.ndarray:
    """Values divided by ``high`` and clipped to [0, 1] (0 everywhere when ``high`` <= 0)."""
    if high <= 0:
        return np.zeros_like(values)
    return np.clip(values / high, 0.0, 1.0)


def nuclei_from_hematoxylin(
    hematoxylin: np.ndarray, tissue: np.ndarray, *, mpp: float
) -> np.ndarray:
    """(H, W) bool nuclear pixels: smoothed hematoxylin above Otsu within tissue."""
    from skimage.filters import threshold_otsu

    smooth = ndi.gaussian_filter(hematoxylin, 0.5 / mpp)
    values = smooth[tissue]
    if values.size < 16 or np.ptp(values) <= 0:
        return np.zeros(hematoxylin.shape, dtype=bool)
    level = max(float(threshold_otsu(values)), MIN_NUCLEAR_HEMATOXYLIN)
    return (smooth > level) & tissue


def stain_epithelium_score(
    tile_rgb: np.ndarray,
    *,
    mpp: float,
    tissue_mask: np.ndarray | None = None,
    params: StainHeuristicParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Epithelium score (H, W) float32 in [0, 1] and the tissue mask used, at tile resolution."""
    from skimage.color import rgb2hed
    from skimage.measure import label, regionprops

    p = params or StainHeuristicParams()
    if not mpp > 0:
        raise DataError(f"tile µm/px must be positive; got {mpp}")
    rgb = np.asarray(tile_rgb)[:, :, :3]
    tissue = tissue_from_rgb(rgb, mpp=mpp) if tissue_mask is None else np.asarray(tissue_mask)
    if tissue.shape != rgb.shape[:2]:
        raise DataError(f"tissue mask shape {tissue.shape} differs from the tile's {rgb.shape[:2]}")
    tissue = tissue.astype(bool)
    if not tissue.any():
        return np.zeros(rgb.shape[:2], dtype=np.float32), tissue

    hed = rgb2hed(rgb).astype(np.float32)
    hematoxylin, eosin = np.clip(hed[:, :, 0], 0, None), np.clip(hed[:, :, 1], 0, None)
    nuclei = nuclei_from_hematoxylin(hematoxylin, tissue, mpp=mpp)

    px_um2 = mpp * mpp
    kept = np.zeros_like(nuclei)
    elongated = np.zeros_like(nuclei)
    labels = label(nuclei, connectivity=1)
    for region in regionprops(labels):
        area_um2 = region.area * px_um2
        if not p.nucleus_min_area_um2 <= area_um2 <= p.nucleus_max_area_um2:
            continue
        rows, cols = region.coords[:, 0], region.coords[:, 1]
        kept[rows, cols] = True
        if region.eccentricity >= p.elongated_eccentricity:
            elongated[rows, cols] = True

    sigma_px = p.neighbourhood_um / mpp
    nuclear_density = ndi.gaussian_filter(kept.astype(np.float32), sigma_px)
    elongated_density = ndi.gaussian_filter(elongated.astype(np.float32), sigma_px)

    cytoplasm_px = tissue & ~nuclei
    ratio = hematoxylin / (eosin + 1e-3)
    if cytoplasm_px.any():
        stroma_ratio = float(np.median(ratio[cytoplasm_px]))
        purple = cytoplasm_px & (ratio > stroma_ratio)
    else:
        purple = cytoplasm_px
    cytoplasm = ndi.gaussian_filter(purple.astype(np.float32), sigma_px)

    if tissue.all():
        lumen = np.zeros(tissue.shape, dtype=np.float32)
    else:
        distance_um = ndi.distance_transform_edt(tissue) * mpp
        lumen = np.exp(-distance_um / p.lumen_decay_um).astype(np.float32)

    weights = (
        p.weight_nuclear_density,
        p.weight_elongated_density,
        p.weight_cytoplasm,
        p.weight_lumen,
    )
    maps = (
        _scaled(nuclear_density, 0.5),
        _scaled(elongated_density, 0.35),
        _scaled(cytoplasm, 0.5),
        lumen,
    )
    score = sum(w * m for w, m in zip(weights, maps, strict=True)) / sum(weights)
    score = np.where(tissue, score, 0.0).astype(np.float32)
    return score, tissue


def stain_epithelium_mask(
    score: np.ndarray,
    tissue: np.ndarray,
    *,
    mpp: float,
    params: StainHeuristicParams | None = None,
) -> np.ndarray:
    """Threshold and clean a heuristic score map into an (H, W) bool epithelium mask."""
    p = params or StainHeuristicParams()
    mask = (score >= p.threshold) & tissue
    if not mask.any():
        return mask
    mask = ndi.binary_closing(mask, structure=_disk(2.0 / mpp), border_value=0)
    mask = ndi.binary_opening(mask, structure=_disk(1.0 / mpp))
    px_um2 = mpp * mpp
    mask |= ~_drop_small(~mask, p.max_hole_um2 / px_um2)
    mask = _drop_small(mask, p.min_area_um2 / px_um2)
    return mask & tissue


def _drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without its 4-connected components of fewer than ``min_px`` pixels."""
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[labels]
