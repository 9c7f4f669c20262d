"""Deterministic HoVer-Net output maps for the HistoPLUS parity tests.

``synthetic_maps(seed)`` plants touching elliptical nuclei, computes their ideal HV maps and
adds noise, so that the post-processing meets split nuclei, thin fragments and ties. The maps
are float16 (nuclei probability, HV) and uint8 (per-pixel class), as HistoPLUS's segmentor
hands them to its post-processing. ``synthetic_scene`` encodes a larger scene as an RGB image
and ``scene_predictor`` turns any crop of it into maps, so windows that cut nuclei see only
their part of them (as a network would).
"""

from __future__ import annotations

import numpy as np

from napari_imilia.interpret.cells.cellvit.post import hv_targets

NUM_CLASSES = 6


def planted_labels(rng: np.random.Generator, size: tuple[int, int], count: int) -> np.ndarray:
    """(H, W) int32 instances: ``count`` ellipses 3-10 px in semi-axis, later ones on top."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    labels = np.zeros(size, dtype=np.int32)
    for index in range(1, count + 1):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        a, b = rng.uniform(3.0, 10.0, 2)
        angle = rng.uniform(0.0, np.pi)
        dy, dx = rows - cy, cols - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        labels[(u / a) ** 2 + (v / b) ** 2 <= 1.0] = index
    return labels


def maps_from_labels(
    labels: np.ndarray, classes: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy (nuclei prob float16 (H, W), HV float16 (2, H, W), class uint8 (H, W)) maps of
    an instance image; ``classes[label]`` is each nucleus's class."""
    inside = labels > 0
    prob = np.clip(0.8 * inside + 0.1 + rng.normal(0.0, 0.15, labels.shape), 0.0, 1.0)
    hv = hv_targets(labels) + rng.normal(0.0, 0.2, (2, *labels.shape))
    types = np.where(inside, classes[labels], 0)
    flip = rng.random(labels.shape) < 0.2
    types = np.where(flip, rng.integers(0, NUM_CLASSES, labels.shape), types)
    return prob.astype(np.float16), hv.astype(np.float16), types.astype(np.uint8)


def synthetic_maps(
    seed: int, size: int = 128, count: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maps of one window: see the module docstring."""
    rng = np.random.default_rng(seed)
    labels = planted_labels(rng, (size, size), count)
    classes = rng.integers(1, NUM_CLASSES, count + 1)
    return maps_from_labels(labels, classes, rng)


def synthetic_scene(seed: int, size: tuple[int, int], count: int) -> np.ndarray:
    """(H, W, 3) uint8 scene: R, G = label (low, high byte), B = class (0 background)."""
    rng = np.random.default_rng(seed)
    labels = planted_labels(rng, size, count)
    classes = rng.integers(1, NUM_CLASSES, count + 1)
    classes[0] = 0
    scene = np.zeros((*size, 3), dtype=np.uint8)
    scene[..., 0] = labels % 256
    scene[..., 1] = labels // 256
    scene[..., 2] = classes[labels]
    return scene


def scene_predictor(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, w, w, 3) crops of a ``synthetic_scene`` -> nuclei prob (B, w, w), HV (B, 2, w, w)
    and one-hot class probabilities (B, C, w, w), float32; noise seeded by the crop itself."""
    nuclei, hvs, types = [], [], []
    for window in windows:
        labels = window[..., 0].astype(np.int32) + 256 * window[..., 1].astype(np.int32)
        classes = np.zeros(int(labels.max()) + 1, dtype=np.int64)
        classes[labels.ravel()] = window[..., 2].ravel()
        rng = np.random.default_rng(int(labels.sum()) % (2**32))
        prob, hv, type_map = maps_from_labels(labels, classes, rng)
        nuclei.append(prob.astype(np.float32))
        hvs.append(hv.astype(np.float32))
        types.append(np.eye(NUM_CLASSES, dtype=np.float32)[type_map].transpose(2, 0, 1))
    return np.stack(nuclei), np.stack(hvs), np.stack(types)
