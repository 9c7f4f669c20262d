"""EpiSeg: IMILIA's epithelium probe, a logistic regression on ViT patch-token embeddings.

Following owkin/imilia (``episeg/train.py``, ``engine/episeg_trainer.py``): each 14 px ViT patch
gets the fraction of its pixels inside the epithelium mask (mean pooling); only clear patches
(fraction < 0.01 or > 0.99) are used to train and cross-validate; C is chosen from
``logspace(-2, 1, 4)`` by mean average precision over folds (the smallest C within 1e-3 of the
best); the final model is refit on all clear patches; a patch is epithelium when its probability
exceeds 0.75. Folds here are grouped by tile, so patches of one tile never sit on both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import CheckpointError, DataError
from napari_imilia.files import write_safetensors_atomic

#: Side of one ViT patch in tile pixels (H0-mini / DINOv2 ViT-S/14 and friends).
PATCH_PX = 14
#: Probability above which a patch is epithelium (reference ``episeg/infer.py``).
DEFAULT_THRESHOLD = 0.75
#: Patches whose epithelium fraction is within this of 0 or 1 are "clear" and used to train.
CLEAR_PATCH_TOLERANCE = 0.01
PROBE_FORMAT = "napari-imilia/episeg-probe/1"
_METADATA_KEY = "imilia_episeg"


def _block_edges(n_px: int, n_blocks: int) -> np.ndarray:
    """Start index of each of ``n_blocks`` near-equal blocks covering ``n_px`` pixels."""
    return np.round(np.arange(n_blocks) * (n_px / n_blocks)).astype(np.int64)


def patch_fractions_from_mask(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Fraction (0-1) of each patch's pixels inside ``mask``, as (h, w) float64.

    ``mask`` is (H, W) at tile resolution; ``grid`` = (h, w) patches. Patch (i, j) covers rows
    ``[round(i H / h), round((i + 1) H / h))`` and the same for columns, i.e. exactly
    ``H / h`` = 14 px blocks when the tile is a multiple of the patch size.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DataError(f"epithelium mask must be a 2-D array; got shape {mask.shape}")
    n_rows, n_cols = (int(v) for v in grid)
    if not (0 < n_rows <= mask.shape[0] and 0 < n_cols <= mask.shape[1]):
        raise DataError(f"patch grid {grid} does not fit a mask of shape {mask.shape}")
    row_edges = _block_edges(mask.shape[0], n_rows)
    col_edges = _block_edges(mask.shape[1], n_cols)
    values = mask.astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(values, row_edges, axis=0), col_edges, axis=1)
    heights = np.diff(np.append(row_edges, mask.shape[0]))
    widths = np.diff(np.append(col_edges, mask.shape[1]))
    return sums / np.outer(heights, widths)


def patch_labels_from_mask(
    mask: np.ndarray, grid: tuple[int, int], *, tolerance: float = CLEAR_PATCH_TOLERANCE
) -> np.ndarray:
    """Per-patch training label as (h, w) int8: 1 epithelium, 0 not, -1 mixed (left out).

    The reference's rule: a patch is 1 when more than ``1 - tolerance`` of its pixels are
    epithelium, 0 when fewer than ``tolerance`` are, and otherwise excluded from training.
    """
    fractions = patch_fractions_from_mask(mask, grid)
    labels = np.full(fractions.shape, -1, dtype=np.int8)
    labels[fractions < tolerance] = 0
    labels[fractions > 1.0 - tolerance] = 1
    return labels


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp_logits = np.exp(logits[~positive])
    out[~positive] = exp_logits / (1.0 + exp_logits)
    return out


@dataclass
class EpiSegProbe:
    """A trained EpiSeg probe: ``p = sigmoid(token · weights + bias)`` per ViT patch.

    ``mpp`` is the µm/px of the tiles it was trained on, ``patch_px`` the ViT patch side in
    tile pixels; ``extractor_name`` / ``extractor_weights_sha256`` name the foundation model
    whose patch tokens it reads (tokens of any other model are meaningless to it).
    """

    weights: np.ndarray
    bias: float
    threshold: float
    extractor_name: str
    extractor_weights_sha256: str
    patch_px: int = PATCH_PX
    mpp: float = 0.5
    c: float = 1.0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def check_extractor(self, extractor: Any) -> None:
        """Raise ``CheckpointError`` unless ``extractor`` is the model this probe was trained on."""
        name = getattr(extractor, "name", None)
        sha = getattr(extractor, "weights_sha256", None) or ""
        dim = getattr(extractor, "dim", None)
        if name != self.extractor_name or (
            self.extractor_weights_sha256 and sha != self.extractor_weights_sha256
        ):
            trained_sha = self.extractor_weights_sha256[:12] or "-"
            raise CheckpointError(
                "this EpiSeg probe was trained on patch tokens of extractor "
                f"'{self.extractor_name}' (weights sha256 {trained_sha}); "
                f"got '{name}' (weights sha256 {sha[:12] or '-'}). Use the same extractor, or "
                "train a probe for this one with `imilia train-episeg`"
            )
        if dim is not None and int(dim) != self.dim:
            raise CheckpointError(
                f"extractor '{name}' gives {dim}-d tokens but the EpiSeg probe expects {self.dim}"
            )

    def _check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 3 or tokens.shape[-1] != self.dim:
            raise CheckpointError(
                f"EpiSeg probe expects patch tokens of shape (h, w, {self.dim}) from extractor "
                f"'{self.extractor_name}'; got shape {tokens.shape}"
            )
        return tokens

    def predict_proba(self, tokens: np.ndarray) -> np.ndarray:
        """Epithelium probability per patch, (h, w) float64, from tokens (h, w, D)."""
        tokens = self._check_tokens(tokens)
        logits = tokens.astype(np.float64) @ self.weights.astype(np.float64) + float(self.bias)
        return _sigmoid(logits)

    def predict_mask(self, tokens: np.ndarray, tile_shape: tuple[int, int]) -> np.ndarray:
        """Epithelium mask (H, W) bool at tile resolution: bilinear upsampling, then threshold."""
        probability = upsample_patch_probabilities(self.predict_proba(tokens), tile_shape)
        return probability > self.threshold

    def save(self, path: str | Path) -> Path:
        """Write the probe as one small safetensors file (weights + JSON metadata), atomically."""
        from safetensors.numpy import save

        metadata = {
            "format": PROBE_FORMAT,
            "bias": float(self.bias),
            "threshold": float(self.threshold),
            "extractor_name": self.extractor_name,
            "extractor_weights_sha256": self.extractor_weights_sha256,
            "patch_px": int(self.patch_px),
            "mpp": float(self.mpp),
            "c": float(self.c),
            "dim": self.dim,
            "provenance": self.provenance,
        }
        tensors = {
            "weights": np.ascontiguousarray(self.weights, dtype=np.float64),
            "bias": np.array([self.bias], dtype=np.float64),
        }
        blob = save(tensors, metadata={_METADATA_KEY: json.dumps(metadata, sort_keys=True)})
        write_safetensors_atomic(path, blob)
        return Path(path)


def upsample_patch_probabilities(
    probability: np.ndarray, tile_shape: tuple[int, int]
) -> np.ndarray:
    """Bilinear upsampling of a (h, w) patch map to (H, W), patch centres on block centres.

    Pixel-centre aligned (like ``align_corners=False``); values beyond the outer patch centres
    are held constant. Returns float64 in the input's range.
    """
    from skimage.transform import resize

    probability = np.asarray(probability, dtype=np.float64)
    height, width = (int(v) for v in tile_shape)
    return resize(probability, (height, width), order=1, mode="edge", anti_aliasing=False)


def load_episeg_probe(path: str | Path) -> EpiSegProbe:
    """Read a probe written by ``EpiSegProbe.save``; ``CheckpointError`` if unusable."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"EpiSeg probe {path} does not exist; train one with `imilia train-episeg`"
        )
    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = json.loads(header[_METADATA_KEY])
    except Exception as error:  # safetensors raises its own types for any corruption
        raise CheckpointError(
            f"{path} is not a readable EpiSeg probe ({type(error).__name__}: {error}); "
            "re-create it with `imilia train-episeg`"
        ) from error
    if metadata.get("format") != PROBE_FORMAT:
        raise CheckpointError(f"{path} is not an EpiSeg probe (format {metadata.get('format')!r})")
    weights = tensors.get("weights")
    if weights is None or weights.ndim != 1 or weights.shape[0] != int(metadata.get("dim", -1)):
        shape = None if weights is None else weights.shape
        raise CheckpointError(
            f"{path}: probe weights have shape {shape}, expected ({metadata.get('dim')},); "
            "the file is damaged, re-create it with `imilia train-episeg`"
        )
    if not np.all(np.isfinite(weights)):
        raise CheckpointError(f"{path}: probe weights contain NaN or infinity")
    return EpiSegProbe(
        weights=weights.astype(np.float64),
        bias=float(metadata["bias"]),
        threshold=float(metadata["threshold"]),
        extractor_name=str(metadata["extractor_name"]),
        extractor_weights_sha256=str(metadata["extractor_weights_sha256"]),
        patch_px=int(metadata["patch_px"]),
        mpp=float(metadata["mpp"]),
        c=float(metadata["c"]),
        provenance=dict(metadata.get("provenance", {})),
    )
