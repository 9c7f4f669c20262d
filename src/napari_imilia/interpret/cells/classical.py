"""The weight-free ``classical`` cell backend: colour deconvolution, watershed, rules.

Per tile, at ``analysis_mpp`` µm/px (default 0.5; lengths below are µm, areas µm²):

1. Optical density and hematoxylin/eosin amounts (Ruifrok vectors, ``cells.stain``); tissue =
   summed OD over 0.25 after 2 µm smoothing (or the given tissue mask). Under 1% tissue:
   flag ``no_tissue``, no cells.
2. Quality flags (``stain.tile_quality_flags``): ``out_of_focus`` when the normalised
   Laplacian-of-Gaussian sharpness is below ``focus_min``; ``not_he`` when more than
   ``not_he_fraction`` of the tissue has a non-H&E hue (ink, dye, debris) or the tissue has
   no stain colour (greyscale); ``ink`` for a patch of non-H&E colour of at least
   ``ink_min_area_um2`` (pen marks). Implausible pixels never become nuclei.
3. Nuclear foreground, two passes on hematoxylin smoothed over ``smooth_um``: dark nuclei above
   Otsu's threshold within the tissue, clamped to [``h_threshold_min``, ``h_threshold_max``]
   (so pure stroma or a blank tile gives no nuclei); pale (vesicular) nuclei exceeding the
   local non-nuclear background by ``pale_contrast`` x that threshold. Dense nuclei keep their
   dark outline (no cytoplasm rim); opening of ``open_um``, holes under ``hole_um2`` filled.
4. Splitting: watershed of the smoothed Euclidean distance map (µm) with one basin per
   maximum at least ``split_depth_um`` above its saddle (h-maxima markers).
5. Lobes: fragments under ``lobe_max_area_um2`` lying within ``lobe_gap_um`` of each other
   are one multi-lobed nucleus when their total is at most ``lobed_max_area_um2``;
   remaining objects outside [``min_area_um2``, ``max_area_um2``] are dropped.
6. Features and rules (``cells.classical_rules``) give each nucleus a class and a rule
   confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from napari_imilia.errors import DataError
from napari_imilia.interpret.cells.base import (
    check_mask,
    resample_tile,
    resize_nearest,
    segment_each,
)
from napari_imilia.interpret.cells.classical_rules import ClassicalRules, classify, nucleus_features
from napari_imilia.interpret.cells.classical_split import disk, group_lobes, split_nuclei
from napari_imilia.interpret.cells.measure import build_tile_cells, label_contours
from napari_imilia.interpret.cells.stain import (
    QualityParams,
    deconvolve_he,
    implausible_stain_mask,
    optical_density,
    tile_quality_flags,
    tissue_from_od,
    tissue_saturation,
)
from napari_imilia.interpret.cells.types import CellTile, TileCells


@dataclass(frozen=True)
class SegmentationParams:
    """Nucleus segmentation parameters; lengths in µm, areas in µm², OD in log10 units."""

    min_tissue_fraction: float = 0.01
    focus_min: float = 0.03
    not_he_fraction: float = 0.12
    min_tissue_saturation: float = 0.08
    ink_min_area_um2: float = 100.0
    smooth_um: float = 0.4
    h_threshold_min: float = 0.30
    h_threshold_max: float = 0.80
    pale_threshold_min: float = 0.18
    pale_contrast: float = 0.55
    background_um: float = 5.0
    halo_um: float = 1.0
    dense_ratio: float = 1.5
    open_um: float = 0.5
    hole_um2: float = 20.0
    split_depth_um: float = 0.7
    distance_smooth_um: float = 0.5
    lobe_max_area_um2: float = 12.0
    lobe_gap_um: float = 1.5
    lobed_max_area_um2: float = 42.0
    min_area_um2: float = 6.0
    max_area_um2: float = 250.0

    def quality(self) -> QualityParams:
        """The tile-quality thresholds (``stain.tile_quality_flags``)."""
        return QualityParams(
            focus_min=self.focus_min,
            not_he_fraction=self.not_he_fraction,
            min_tissue_saturation=self.min_tissue_saturation,
            ink_min_area_um2=self.ink_min_area_um2,
        )


@dataclass
class NucleusSegmentation:
    """Intermediate result: labels at ``mpp`` plus what the classifier needs."""

    labels: np.ndarray
    lobes: dict[int, int]
    foreground: np.ndarray
    tissue: np.ndarray
    her: np.ndarray
    flags: list[str] = field(default_factory=list)


def segment_nuclei(
    tile_rgb: np.ndarray,
    *,
    mpp: float,
    tissue_mask: np.ndarray | None = None,
    params: SegmentationParams | None = None,
) -> NucleusSegmentation:
    """Nucleus instance labels of an RGB tile at ``mpp`` µm/px (steps 1-5 of this module)."""
    p = params or SegmentationParams()
    od = optical_density(tile_rgb)
    her = deconvolve_he(od)
    tissue = tissue_from_od(od, mpp=mpp) if tissue_mask is None else tissue_mask.copy()
    empty = np.zeros(tissue.shape, dtype=np.int32)
    if tissue.mean() < p.min_tissue_fraction:
        return NucleusSegmentation(empty, {}, tissue & False, tissue, her, ["no_tissue"])
    implausible = implausible_stain_mask(tile_rgb) & tissue
    saturation = tissue_saturation(tile_rgb, tissue)
    flags = tile_quality_flags(
        tile_rgb,
        tissue,
        mpp=mpp,
        implausible=implausible,
        saturation=saturation,
        params=p.quality(),
    )
    usable = tissue & ~implausible
    if saturation < p.min_tissue_saturation:
        usable = usable & False  # greyscale / unstained: no stain to deconvolve
    hematoxylin = ndi.gaussian_filter(her[:, :, 0], p.smooth_um / mpp)
    values = hematoxylin[usable]
    if values.size < 16:
        return NucleusSegmentation(empty, {}, usable & False, tissue, her, flags)
    threshold = _otsu(values, p.h_threshold_min, p.h_threshold_max)
    dark = hematoxylin > threshold
    pale = _pale_nuclei(hematoxylin, usable, dark, threshold, mpp, p)
    foreground = _merge_passes(dark, pale, hematoxylin, threshold, p)
    foreground = _clean_foreground(foreground & usable, mpp, p)
    labels = split_nuclei(foreground, mpp, p.split_depth_um, p.distance_smooth_um)
    labels, lobes = group_lobes(labels, mpp, p)
    return NucleusSegmentation(labels, lobes, foreground, tissue, her, flags)


def _otsu(values: np.ndarray, low: float, high: float) -> float:
    """Otsu's threshold of ``values`` clipped to [low, high] (``high`` for constant values)."""
    if values.size < 16 or np.ptp(values) <= 0:
        return high
    return float(np.clip(threshold_otsu(values), low, high))


def _pale_nuclei(
    hematoxylin: np.ndarray,
    usable: np.ndarray,
    dark: np.ndarray,
    threshold: float,
    mpp: float,
    p: SegmentationParams,
) -> np.ndarray:
    """Second pass for pale (vesicular) nuclei: pixels whose hematoxylin exceeds the local
    non-nuclear background (Gaussian-weighted mean over ``background_um`` of the tissue
    outside the dark nuclei and a ``halo_um`` margin) by ``pale_contrast`` x the first
    threshold, and ``pale_threshold_min`` absolutely. The relative contrast keeps the
    basophilic cytoplasm of plasma cells (half that contrast) out."""
    margin = ndi.binary_dilation(dark, disk(p.halo_um / mpp)) if dark.any() else dark
    weight = (usable & ~margin).astype(np.float32)
    sigma = p.background_um / mpp
    total = ndi.gaussian_filter(weight, sigma)
    background = ndi.gaussian_filter(hematoxylin * weight, sigma) / np.maximum(total, 1e-3)
    background = np.where(total > 0.05, background, hematoxylin.max())
    contrast = hematoxylin - background
    return (contrast > p.pale_contrast * threshold) & (hematoxylin > p.pale_threshold_min)


def _merge_passes(
    dark: np.ndarray,
    pale: np.ndarray,
    hematoxylin: np.ndarray,
    threshold: float,
    p: SegmentationParams,
) -> np.ndarray:
    """Union of both passes, except for dense nuclei (mean hematoxylin of their dark part at
    least ``dense_ratio`` x the first threshold): those keep their dark outline, so the
    pale pass does not add a rim of cytoplasm (a lymphocyte's, a plasma cell's) to them."""
    union = dark | pale
    objects, n = ndi.label(union)
    if n == 0 or not dark.any():
        return union
    dark_index = np.where(dark, objects, 0).ravel()
    count = np.bincount(dark_index, minlength=n + 1)
    mean = np.bincount(dark_index, hematoxylin.ravel(), minlength=n + 1) / np.maximum(count, 1)
    dense = (count > 0) & (mean >= p.dense_ratio * threshold)
    dense[0] = False
    return np.where(dense[objects], dark, union)


def _clean_foreground(mask: np.ndarray, mpp: float, p: SegmentationParams) -> np.ndarray:
    radius = p.open_um / mpp
    if radius >= 0.75:
        mask = ndi.binary_opening(mask, disk(radius))
    holes = ndi.binary_fill_holes(mask) & ~mask
    hole_labels, n = ndi.label(holes)
    if n:
        sizes = np.bincount(hole_labels.ravel())
        small = sizes * mpp * mpp <= p.hole_um2
        small[0] = False
        mask = mask | small[hole_labels]
    return mask


class ClassicalBackend:
    """Weight-free nucleus segmentation and rule-based classification (module docstring).

    ``analysis_mpp``: µm/px the tile is resampled to (None: analyse at the given µm/px).
    ``probability`` is the rule confidence of ``classical_rules.classify``, not a calibrated
    probability.
    """

    name = "classical"

    def __init__(
        self,
        analysis_mpp: float | None = 0.5,
        *,
        params: SegmentationParams | None = None,
        rules: ClassicalRules | None = None,
    ) -> None:
        if analysis_mpp is not None and not analysis_mpp > 0:
            raise DataError(f"analysis_mpp must be positive µm/px; got {analysis_mpp}")
        self._analysis_mpp = analysis_mpp
        self.params = params or SegmentationParams()
        self.rules = rules or ClassicalRules()

    @property
    def analysis_mpp(self) -> float:
        return float("nan") if self._analysis_mpp is None else float(self._analysis_mpp)

    def segment(
        self,
        tile_rgb: np.ndarray,
        *,
        mpp: float,
        level0_xy: tuple[int, int],
        level0_per_px: float,
        tissue_mask: np.ndarray | None = None,
        epithelium_mask: np.ndarray | None = None,
    ) -> TileCells:
        """Cells of one tile; ``epithelium_mask`` (bool, same shape as the tile) if given
        marks nuclei as epithelial context."""
        rgb, tissue, mpp_a, per_px = resample_tile(
            tile_rgb,
            tissue_mask,
            mpp=mpp,
            level0_per_px=level0_per_px,
            analysis_mpp=self._analysis_mpp,
        )
        epithelium = None
        if epithelium_mask is not None:
            given = check_mask(epithelium_mask, np.shape(tile_rgb)[:2], "epithelium mask")
            epithelium = resize_nearest(given, rgb.shape[:2])
        nuclei = segment_nuclei(rgb, mpp=mpp_a, tissue_mask=tissue, params=self.params)
        values = np.arange(1, int(nuclei.labels.max()) + 1)
        class_ids = np.zeros(len(values) + 1, dtype=np.int64)
        probabilities = np.full(len(values) + 1, np.nan)
        rings_px = label_contours(nuclei.labels, values, level0_xy=(0, 0), level0_per_px=1.0)
        if len(values):
            features = nucleus_features(
                nuclei.labels,
                nuclei.lobes,
                nuclei.her,
                nuclei.foreground,
                nuclei.tissue,
                rgb,
                mpp=mpp_a,
                epithelium_mask=epithelium,
                rules=self.rules,
                rings_px=rings_px,
            )
            class_ids[1:], probabilities[1:] = classify(features, self.rules)
        x0, y0 = level0_xy
        return build_tile_cells(
            nuclei.labels,
            class_ids,
            probabilities,
            None,
            mpp=mpp_a,
            level0_xy=level0_xy,
            level0_per_px=per_px,
            backend=self.name,
            flags=nuclei.flags,
            contours=dict(
                zip(values.tolist(), [r * per_px + (x0, y0) for r in rings_px], strict=True)
            ),
            hematoxylin=nuclei.her[:, :, 0],
        )

    def segment_many(self, tiles: Sequence[CellTile]) -> list[TileCells]:
        return segment_each(self, tiles)
