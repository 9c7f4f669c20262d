"""EpiSeg as IMILIA trains and evaluates it: the IBDColEpi patch dataset, 1022 px images.

IBDColEpi's patch dataset (``patch-dataset-HE/{Trainset,Testset}/{Images_tif,Labels_tif}``)
holds H&E patches and epithelium labels of the same file names. IMILIA (owkin/imilia,
``IBDColEPIDataLoader``) resizes each image to 1022 x 1022 px (PIL's default filter, bicubic)
and each label with nearest neighbour, binarises the label (> 0), embeds the image with
H0-mini (73 x 73 patch tokens of 14 px), labels each patch by the mean of its 14 x 14 label
pixels, trains a logistic regression on the clear patches (mean < 0.01 or > 0.99) and
evaluates on the test set the average precision and the precision-recall curve of the patch
probabilities against patch labels mean > 0.5. Masks are the patch probabilities > 0.75.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from napari_imilia.errors import DataError
from napari_imilia.interpret.epithelium.probe import (
    PATCH_PX,
    EpiSegProbe,
    patch_fractions_from_mask,
)

#: IMILIA's EpiSeg image size: 73 patches of 14 px.
IMILIA_IMAGE_PX = 1022
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


@dataclass
class PatchDataset:
    """One split: file names, (N, S, S, 3) uint8 images and (N, S, S) bool labels."""

    names: list[str]
    images: np.ndarray
    labels: np.ndarray


def split_folders(root: str | Path, split: str) -> tuple[Path, Path]:
    """``root/<split>/Images_tif`` and ``Labels_tif`` (``root`` may be ``patch-dataset-HE``
    or its parent); ``DataError`` naming the expected layout when absent."""
    root = Path(root)
    for base in (root, root / "patch-dataset-HE"):
        images, labels = base / split / "Images_tif", base / split / "Labels_tif"
        if images.is_dir() and labels.is_dir():
            return images, labels
    raise DataError(
        f"{root} is not IBDColEpi's patch dataset: no {split}/Images_tif and "
        f"{split}/Labels_tif (expected patch-dataset-HE/{{Trainset,Testset}}/"
        "{Images_tif,Labels_tif}, images and labels of the same names)"
    )


def _listing(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def load_patch_dataset(
    root: str | Path, split: str = "Trainset", image_px: int = IMILIA_IMAGE_PX
) -> PatchDataset:
    """Images and labels of one split, resized to ``image_px`` square as IMILIA does."""
    if image_px < PATCH_PX or image_px % PATCH_PX:
        raise DataError(f"image size must be a multiple of {PATCH_PX} px; got {image_px}")
    image_dir, label_dir = split_folders(root, split)
    names, label_names = _listing(image_dir), _listing(label_dir)
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    if names != label_names:
        missing = sorted(set(names) ^ set(label_names))[:5]
        raise DataError(
            f"{image_dir} and {label_dir} must hold files of the same names; unmatched: {missing}"
        )
    images = np.empty((len(names), image_px, image_px, 3), np.uint8)
    labels = np.empty((len(names), image_px, image_px), bool)
    size = (image_px, image_px)
    for k, name in enumerate(names):
        try:
            with Image.open(image_dir / name) as image:
                images[k] = np.asarray(image.convert("RGB").resize(size))
            with Image.open(label_dir / name) as label:
                labels[k] = np.asarray(label.convert("L").resize(size, Image.Resampling.NEAREST))
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {name} of {split} ({error})") from error
    return PatchDataset(names, images, labels > 0)


def evaluate_on_patches(
    probe: EpiSegProbe, tokens: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Average precision and precision-recall curve of ``probe`` on (N, h, w, D) tokens
    against (N, H, W) bool labels, per patch (label: mean of its pixels > 0.5), with the
    mask's precision and recall at the probe's threshold."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    n, rows, cols, _ = tokens.shape
    truth = np.concatenate(
        [patch_fractions_from_mask(m, (rows, cols)).ravel() > 0.5 for m in labels]
    )
    scores = np.concatenate([probe.predict_proba(t).ravel() for t in tokens])
    if truth.all() or not truth.any():
        raise DataError("the test set's patches are all epithelium or all not: no AP to report")
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    predicted = scores > probe.threshold
    hits = int((predicted & truth).sum())
    return {
        "n_images": int(n),
        "n_patches": int(truth.size),
        "epithelium_fraction": float(truth.mean()),
        "average_precision": float(average_precision_score(truth, scores)),
        "threshold": float(probe.threshold),
        "precision_at_threshold": hits / max(int(predicted.sum()), 1),
        "recall_at_threshold": hits / int(truth.sum()),
        "pr_curve": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "thresholds": thresholds.tolist(),
        },
    }
