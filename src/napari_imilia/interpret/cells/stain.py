"""H&E colour deconvolution and tile-quality measures for cell backends.

Optical density (OD) is ``-log10((I + 1) / 256)`` per RGB channel of an 8-bit image, so
white glass is ~0 and saturated black ~2.4. Deconvolution uses Ruifrok & Johnston's fixed
H&E(-DAB) stain vectors (the ones in ``skimage.color``): OD = h * H + e * E + r * R, solved
per pixel; ``r`` is the amount along the third ("DAB") vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_imilia.errors import DataError

#: Ruifrok & Johnston OD vectors, rows: hematoxylin, eosin, residual (DAB), unit length.
STAIN_VECTORS = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64
)
STAIN_VECTORS /= np.linalg.norm(STAIN_VECTORS, axis=1, keepdims=True)
_OD_TO_HER = np.linalg.inv(STAIN_VECTORS).astype(np.float32)


def check_rgb(tile_rgb: np.ndarray, what: str = "tile") -> np.ndarray:
    """The (H, W, 3) uint8 RGB view of ``tile_rgb`` (an alpha channel is dropped).

    Raises ``DataError`` for other shapes, dtypes or an empty image.
    """
    rgb = np.asarray(tile_rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"{what} must be an (H, W, 3) RGB image; got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise DataError(f"{what} must be 8-bit RGB (uint8); got dtype {rgb.dtype}")
    return rgb[:, :, :3]


def optical_density(tile_rgb: np.ndarray) -> np.ndarray:
    """Per-channel optical density (H, W, 3) float32 of an 8-bit RGB tile."""
    rgb = check_rgb(tile_rgb)
    lut = (-np.log10((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)
    return lut[rgb]


def deconvolve_he(od: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 stain amounts (hematoxylin, eosin, residual) from (H, W, 3) OD."""
    return od @ _OD_TO_HER


def tissue_from_od(od: np.ndarray, *, mpp: float, min_od_sum: float = 0.25) -> np.ndarray:
    """(H, W) bool: summed OD, smoothed over 2 µm, above ``min_od_sum`` (glass is not)."""
    return ndi.gaussian_filter(od.sum(axis=2), 2.0 / mpp) > min_od_sum


def focus_measure(grey: np.ndarray, mask: np.ndarray, *, mpp: float) -> float:
    """Sharpness of a [0, 1] grey image over ``mask`` pixels: variance of its scale-normalised
    Laplacian of Gaussian (σ = 0.5 µm) divided by the variance of the grey values, so that
    pale and dark tiles compare. Sharp 20x H&E gives 0.045-0.18 (small_HE.svs tiles); a
    Gaussian blur of σ = 1 µm gives under 0.025. NaN when fewer than 64 mask pixels or flat.
    """
    if int(mask.sum()) < 64:
        return float("nan")
    grey = grey.astype(np.float32)
    spread = float(np.var(grey[mask]))
    if spread <= 1e-8:
        return float("nan")
    sigma_px = max(0.5 / mpp, 0.5)
    response = ndi.gaussian_laplace(grey, sigma_px) * sigma_px**2
    return float(np.var(response[mask])) / spread


def hsv_of(tile_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hue in degrees [0, 360), saturation [0, 1], value [0, 1]) float32 (H, W) maps of an
    8-bit RGB tile; the same values as ``skimage.color.rgb2hsv`` (ties between channels
    resolved as it does), a few times faster."""
    rgb = check_rgb(tile_rgb).astype(np.int16)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    delta = (high - low).astype(np.float32)
    safe = np.where(delta > 0, delta, np.float32(1.0))
    hue = np.where(red == high, (green - blue) / safe, 0.0)
    hue = np.where(green == high, 2.0 + (blue - red) / safe, hue)
    hue = np.where(blue == high, 4.0 + (red - green) / safe, hue)
    hue = np.where(delta > 0, (hue / 6.0) % 1.0, 0.0).astype(np.float32) * np.float32(360.0)
    saturation = np.where(high > 0, delta / np.maximum(high, 1), 0.0).astype(np.float32)
    return hue, saturation, (high / np.float32(255.0)).astype(np.float32)


def implausible_stain_mask(
    tile_rgb: np.ndarray,
    *,
    hue_range_deg: tuple[float, float] = (235.0, 20.0),
    min_saturation: float = 0.12,
    dark_grey_value: float = 0.4,
) -> np.ndarray:
    """(H, W) bool: pixels whose colour is not an H&E hue.

    H&E runs from blue-purple hematoxylin through magenta and pink to orange-red eosin:
    hues from ``hue_range_deg[0]`` through 360 to ``hue_range_deg[1]`` degrees. A pixel is
    implausible when it is saturated (>= ``min_saturation``) with a hue outside that range
    (green, cyan, blue ink, yellow-brown), or grey and dark (saturation below
    ``min_saturation``, value below ``dark_grey_value``: black ink, debris). The fixed
    Ruifrok vectors are not used here: they fit real eosin poorly (pink lies ~20° off).
    """
    hue, saturation, value = hsv_of(tile_rgb)
    low, high = hue_range_deg
    he_hue = (hue >= low) | (hue <= high)
    return ((saturation >= min_saturation) & ~he_hue) | (
        (saturation < min_saturation) & (value < dark_grey_value)
    )


def tissue_saturation(tile_rgb: np.ndarray, tissue: np.ndarray) -> float:
    """Median HSV saturation of the tissue pixels (NaN without tissue): 0 for a greyscale
    image, 0.24-0.45 for H&E tissue (small_HE.svs and synthetic tiles)."""
    tissue = np.asarray(tissue, dtype=bool)
    if not tissue.any():
        return float("nan")
    rgb = check_rgb(tile_rgb)[tissue].astype(np.int16)  # (N, 3): the tissue pixels only
    high, low = rgb.max(axis=1), rgb.min(axis=1)
    return float(np.median(np.where(high > 0, (high - low) / np.maximum(high, 1), 0.0)))


#: The flags ``tile_quality_flags`` may set.
QUALITY_FLAGS: tuple[str, ...] = ("out_of_focus", "not_he", "ink")


@dataclass(frozen=True)
class QualityParams:
    """Thresholds of ``tile_quality_flags``; areas in µm², fractions of the tissue area."""

    focus_min: float = 0.03
    not_he_fraction: float = 0.12
    min_tissue_saturation: float = 0.08
    ink_min_area_um2: float = 100.0


def tile_quality_flags(
    tile_rgb: np.ndarray,
    tissue: np.ndarray,
    *,
    mpp: float,
    implausible: np.ndarray | None = None,
    saturation: float | None = None,
    params: QualityParams | None = None,
) -> list[str]:
    """``CELL_FLAGS`` of a tile with tissue (bool (H, W) ``tissue``), in a fixed order:

    - ``out_of_focus``: ``focus_measure`` over the tissue below ``focus_min``;
    - ``not_he``: more than ``not_he_fraction`` of the tissue has a non-H&E colour
      (``implausible_stain_mask``), or the tissue's median saturation is under
      ``min_tissue_saturation`` (greyscale, unstained; real H&E tissue: 0.24-0.45);
    - ``ink``: a connected patch of non-H&E colour of at least ``ink_min_area_um2`` (pen
      marks, tissue-marking dye), when the tile is not ``not_he`` already.

    ``implausible`` / ``saturation``: the tile's ``implausible_stain_mask`` and
    ``tissue_saturation`` when already computed.
    """
    p = params or QualityParams()
    rgb = check_rgb(tile_rgb)
    tissue = np.asarray(tissue, dtype=bool)
    if not tissue.any():
        return []
    flags = []
    grey = rgb.mean(axis=2) / 255.0
    sharpness = focus_measure(grey, tissue, mpp=mpp)
    if np.isfinite(sharpness) and sharpness < p.focus_min:
        flags.append("out_of_focus")
    odd = (implausible_stain_mask(rgb) if implausible is None else implausible) & tissue
    if saturation is None:
        saturation = tissue_saturation(rgb, tissue)
    colourless = saturation < p.min_tissue_saturation
    if odd.sum() > p.not_he_fraction * tissue.sum() or colourless:
        flags.append("not_he")
    elif odd.any():
        patches, n = ndi.label(ndi.binary_opening(odd, np.ones((3, 3), bool)))
        largest_px = int(np.bincount(patches.ravel())[1:].max()) if n else 0
        if largest_px * mpp * mpp >= p.ink_min_area_um2:
            flags.append("ink")
    return flags
