"""HoVer-Net post-processing: nuclei instances from the NP and HV maps, a class per instance.

Steps of :func:`hover_instances` (HistoPLUS's post-processing, reproduced to the pixel on
fixed maps by ``tests/interpret/test_histoplus_parity.py``; images (H, W)):

1. foreground = nuclei probability >= ``nuclei_threshold``; 4-connected parts under
   ``min_size_px`` pixels are removed;
2. each HV map is min-max scaled to [0, 1] (float32, as OpenCV's ``normalize``); its
   derivative across its own direction (Sobel of ``sobel_ksize``: x for the horizontal map,
   y for the vertical one; borders mirrored without repeating the edge pixel) is min-max
   scaled and inverted, so the strong negative steps between touching nuclei (+1 -> -1) and
   at nuclear borders become ~1; edges = the larger of the two, zero outside the foreground;
3. markers = foreground where edges < ``edge_threshold``, holes filled, opened with
   OpenCV's ``marker_open_px`` elliptical kernel (5 px: a 5x5 square without its four
   corner pairs; outside the image never erodes nor dilates: OpenCV's border rule), parts
   under ``min_size_px`` removed;
4. watershed of the smoothed (3x3 binomial) inverted ``(1 - edges) * foreground`` from the
   markers within the foreground.

Classes (:func:`vote_classes`): each instance takes the non-background class most of its
pixels vote for (per-pixel argmax of the type map, ties to the lower class); an instance
whose pixels all vote background is dropped (HistoPLUS does the same). Its probability is
the mean over its pixels of that class's softmax probability; HistoPLUS's ``confidence``
(:func:`vote_fractions`) is instead the fraction of its pixels voting for it. HistoPLUS also
drops instances whose OpenCV contour has fewer than 3 points (:func:`thin_instances`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.special import comb
from skimage.segmentation import relabel_sequential, watershed

from napari_imilia.interpret.cells.base import RESAMPLE_TOLERANCE


@dataclass(frozen=True)
class HoverParams:
    """Post-processing settings in pixels at the model's µm/px (HistoPLUS's at 0.25)."""

    nuclei_threshold: float = 0.5
    min_size_px: int = 10
    sobel_ksize: int = 21
    edge_threshold: float = 0.4
    marker_open_px: int = 5

    def __post_init__(self) -> None:
        if self.sobel_ksize < 3 or self.sobel_ksize % 2 == 0:
            raise ValueError(f"sobel_ksize must be odd and >= 3; got {self.sobel_ksize}")
        if self.min_size_px < 0 or self.marker_open_px < 1:
            raise ValueError("min_size_px must be >= 0 and marker_open_px >= 1")


def hover_params_for_mpp(mpp: float) -> HoverParams:
    """HistoPLUS's settings: 10 px / Sobel 21 at 0.25 µm/px, 5 px / Sobel 11 at 0.5; other
    µm/px scale them (min size 2.5 µm / mpp px, Sobel ~5.25 µm, odd, 3-31)."""
    for known, (size, ksize) in {0.25: (10, 21), 0.5: (5, 11)}.items():
        if abs(mpp / known - 1.0) <= RESAMPLE_TOLERANCE:
            return HoverParams(min_size_px=size, sobel_ksize=ksize)
    ksize = int(np.clip(2 * round((5.25 / mpp - 1) / 2) + 1, 3, 31))
    return HoverParams(min_size_px=max(1, round(2.5 / mpp)), sobel_ksize=ksize)


def minmax(image: np.ndarray) -> np.ndarray:
    """``image`` scaled to [0, 1] (float32) as OpenCV's ``normalize(NORM_MINMAX)`` does it:
    ``x * scale + shift`` with scale = 1 / (max - min), shift = -min * scale (both rounded to
    float32 for a float32 image); zeros when it is constant."""
    image = np.asarray(image)
    if image.size == 0:
        return np.zeros(image.shape, dtype=np.float32)
    low, high = float(image.min()), float(image.max())
    if high - low <= np.finfo(np.float64).eps:
        return np.zeros(image.shape, dtype=np.float32)
    scale = 1.0 / (high - low)
    shift = -low * scale
    if image.dtype != np.float64:
        scale, shift = float(np.float32(scale)), float(np.float32(shift))
    return (image.astype(np.float64) * scale + shift).astype(np.float32)


def sobel_kernels(ksize: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable Sobel of size ``ksize``: (smoothing, derivative) correlation weights.

    Smoothing: binomial coefficients of order ksize - 1; derivative: order ksize - 3 binomial
    convolved with a central difference, positive for values rising along the axis (for
    ksize 3: [1, 2, 1] and [-1, 0, 1]; for 5: [1, 4, 6, 4, 1] and [-1, -2, 0, 2, 1])."""
    smooth = comb(ksize - 1, np.arange(ksize))
    derivative = np.convolve(comb(ksize - 3, np.arange(ksize - 2)), [-1.0, 0.0, 1.0])
    return smooth, derivative


def sobel(image: np.ndarray, axis: int, ksize: int) -> np.ndarray:
    """Derivative along ``axis`` (0 rows / y, 1 columns / x), smoothed along the other;
    borders mirrored without repeating the edge pixel."""
    smooth, derivative = sobel_kernels(ksize)
    out = ndi.correlate1d(np.asarray(image, np.float64), derivative, axis=axis, mode="mirror")
    return ndi.correlate1d(out, smooth, axis=1 - axis, mode="mirror")


def ellipse_footprint(size_px: int) -> np.ndarray:
    """(size, size) bool ellipse as OpenCV's ``getStructuringElement(MORPH_ELLIPSE)`` draws
    it: row i spans the centre column +- round(c * sqrt(1 - ((i - r) / r)^2)), r = c =
    size // 2 (5 px: rows of 1, 5, 5, 5, 1 pixels)."""
    half = size_px // 2
    footprint = np.zeros((size_px, size_px), dtype=bool)
    for row in range(size_px):
        dy = row - half
        if half == 0:
            footprint[row] = True
            continue
        if abs(dy) > half:
            continue
        dx = int(np.rint(half * np.sqrt((half * half - dy * dy) / (half * half))))
        footprint[row, max(half - dx, 0) : min(half + dx + 1, size_px)] = True
    return footprint


def open_markers(markers: np.ndarray, size_px: int) -> np.ndarray:
    """Morphological opening by :func:`ellipse_footprint` with OpenCV's border rule: pixels
    outside the image count as foreground for the erosion and background for the dilation,
    so markers touching the border are not eaten by it."""
    footprint = ellipse_footprint(size_px)
    eroded = ndi.binary_erosion(markers, structure=footprint, border_value=1)
    return ndi.binary_dilation(eroded, structure=footprint, border_value=0)


def remove_small(mask: np.ndarray, min_size_px: int) -> np.ndarray:
    """``mask`` without its 4-connected parts of fewer than ``min_size_px`` pixels."""
    parts, _ = ndi.label(mask)
    sizes = np.bincount(parts.ravel())
    keep = sizes >= min_size_px
    keep[0] = False
    return keep[parts]


def hover_instances(
    nuclei_prob: np.ndarray, hv: np.ndarray, params: HoverParams | None = None
) -> np.ndarray:
    """(H, W) int32 nuclei instances (0 background, 1..n) from the nuclei probability (H, W)
    and the horizontal/vertical distance maps (2, H, W); see the module docstring."""
    p = params or HoverParams()
    nuclei_prob = np.asarray(nuclei_prob)
    hv = np.asarray(hv)
    if hv.shape != (2, *nuclei_prob.shape):
        raise ValueError(f"hv must be (2, {nuclei_prob.shape}); got {hv.shape}")
    foreground = remove_small(nuclei_prob >= p.nuclei_threshold, p.min_size_px)
    if not foreground.any():
        return np.zeros(nuclei_prob.shape, dtype=np.int32)
    edge_x = 1.0 - minmax(sobel(minmax(hv[0]), axis=1, ksize=p.sobel_ksize))
    edge_y = 1.0 - minmax(sobel(minmax(hv[1]), axis=0, ksize=p.sobel_ksize))
    edges = np.where(foreground, np.maximum(edge_x, edge_y), 0.0)
    binomial = np.array([0.25, 0.5, 0.25])
    height = (1.0 - edges.astype(np.float64)) * foreground
    for axis in (0, 1):
        height = ndi.correlate1d(height, binomial, axis=axis, mode="mirror")
    height = -height
    markers = foreground & (edges.astype(np.float64) < p.edge_threshold)
    markers = ndi.binary_fill_holes(markers)
    markers = open_markers(markers, p.marker_open_px)
    markers = remove_small(markers, p.min_size_px)
    marker_labels, _ = ndi.label(markers)
    labels = watershed(height, markers=marker_labels, mask=foreground)
    return relabel_sequential(labels.astype(np.int32))[0]


def vote_classes(labels: np.ndarray, type_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label value (arrays indexed by label, entry 0 unused): the winning type channel
    (0 when every pixel votes background) and its mean softmax probability over the cell.

    ``labels``: (H, W) instances; ``type_prob``: (C, H, W) per-pixel class probabilities.
    """
    n_labels = int(labels.max(initial=0)) + 1
    n_classes = type_prob.shape[0]
    votes = np.argmax(type_prob, axis=0)
    flat = labels.ravel().astype(np.int64)
    counts = np.bincount(flat * n_classes + votes.ravel(), minlength=n_labels * n_classes)
    counts = counts.reshape(n_labels, n_classes)
    winner = np.where(counts[:, 1:].any(axis=1), 1 + np.argmax(counts[:, 1:], axis=1), 0)
    winner[0] = 0
    chosen = np.take_along_axis(type_prob.reshape(n_classes, -1), winner[flat][None, :], axis=0)[0]
    area = np.maximum(np.bincount(flat, minlength=n_labels), 1)
    probability = np.bincount(flat, weights=chosen, minlength=n_labels) / area
    return winner.astype(np.int64), probability


def vote_fractions(labels: np.ndarray, type_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HistoPLUS's class vote, per label value (entry 0 unused): the non-background class
    most pixels of the instance carry in ``type_map`` ((H, W) ints, 0 background; ties to
    the lower class; 0 when all are background) and the fraction of its pixels carrying it
    (count / (area + 1e-6), HistoPLUS's ``confidence``)."""
    n_labels = int(labels.max(initial=0)) + 1
    n_classes = int(type_map.max(initial=0)) + 1
    flat = labels.ravel().astype(np.int64)
    counts = np.bincount(
        flat * n_classes + type_map.ravel().astype(np.int64), minlength=n_labels * n_classes
    ).reshape(n_labels, n_classes)
    if n_classes == 1:
        return np.zeros(n_labels, np.int64), np.zeros(n_labels)
    winner = np.where(counts[:, 1:].any(axis=1), 1 + np.argmax(counts[:, 1:], axis=1), 0)
    winner[0] = 0
    area = counts.sum(axis=1)
    fraction = counts[np.arange(n_labels), winner] / (area + 1.0e-6)
    return winner.astype(np.int64), np.where(winner > 0, fraction, 0.0)


def thin_instances(labels: np.ndarray) -> np.ndarray:
    """Per label value (entry 0 False): True for an instance one pixel high or one pixel
    wide, whose OpenCV contour (``CHAIN_APPROX_SIMPLE``) has fewer than 3 points, so
    HistoPLUS drops it. Instances from :func:`hover_instances` are 4-connected, so these are
    exactly the single pixels and straight one-pixel runs."""
    thin = np.zeros(int(labels.max(initial=0)) + 1, dtype=bool)
    for index, region in enumerate(ndi.find_objects(labels), start=1):
        if region is not None:
            rows, cols = region
            thin[index] = rows.stop - rows.start == 1 or cols.stop - cols.start == 1
    return thin


def hv_targets(labels: np.ndarray) -> np.ndarray:
    """HoVer-Net's training targets for an instance image: (2, H, W) float32 horizontal and
    vertical offsets of each pixel from its nucleus's centre of mass, scaled per nucleus and
    side to [-1, 0] and [0, 1] (0 outside nuclei). Used to plant ideal maps in tests."""
    hv = np.zeros((2, *labels.shape), dtype=np.float32)
    for index, region in enumerate(ndi.find_objects(labels), start=1):
        if region is None:
            continue
        inside = labels[region] == index
        rows, cols = np.nonzero(inside)
        for axis, offsets in ((0, cols - cols.mean()), (1, rows - rows.mean())):
            scaled = offsets.astype(np.float64)
            if (scaled < 0).any():
                scaled[scaled < 0] /= -scaled.min()
            if (scaled > 0).any():
                scaled[scaled > 0] /= scaled.max()
            crop = hv[axis][region]
            crop[rows, cols] = scaled
    return hv
