"""Epithelium segmentation of H&E tiles, and epithelium polygons in level-0 coordinates.

Two methods, both returning an ``EpitheliumResult`` at tile resolution:

- ``"episeg"``: IMILIA's EpiSeg probe (``probe.py``, trained by ``train.py``), a logistic
  regression on a ViT foundation model's 14 px patch tokens; needs a probe and its extractor.
- ``"stain-heuristic"``: a weight-free colour-deconvolution heuristic (``stain.py``) for the
  demo and for tiles without a probe; coarse, see its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.interpret.epithelium.geojson import (
    EPITHELIUM_CLASS,
    EPITHELIUM_COLOR,
    epithelium_to_features,
)
from napari_imilia.interpret.epithelium.polygons import epithelium_polygons
from napari_imilia.interpret.epithelium.probe import (
    DEFAULT_THRESHOLD,
    PATCH_PX,
    EpiSegProbe,
    load_episeg_probe,
    patch_fractions_from_mask,
    patch_labels_from_mask,
    upsample_patch_probabilities,
)
from napari_imilia.interpret.epithelium.stain import (
    StainHeuristicParams,
    stain_epithelium_mask,
    stain_epithelium_score,
    tissue_from_rgb,
)
from napari_imilia.interpret.epithelium.train import DEFAULT_C_VALUES, train_episeg_probe

METHODS: tuple[str, ...] = ("stain-heuristic", "episeg")
#: Relative difference between tile and probe µm/px above which a result is flagged.
MPP_TOLERANCE = 0.1

__all__ = [
    "DEFAULT_C_VALUES",
    "DEFAULT_THRESHOLD",
    "EPITHELIUM_CLASS",
    "EPITHELIUM_COLOR",
    "METHODS",
    "PATCH_PX",
    "EpiSegProbe",
    "EpitheliumResult",
    "StainHeuristicParams",
    "epithelium_polygons",
    "epithelium_to_features",
    "load_episeg_probe",
    "patch_fractions_from_mask",
    "patch_labels_from_mask",
    "patch_tokens_of",
    "segment_epithelium",
    "tissue_from_rgb",
    "train_episeg_probe",
    "upsample_patch_probabilities",
]


@dataclass
class EpitheliumResult:
    """Epithelium of one tile, at tile resolution (``mpp`` µm/px).

    ``probability``: (H, W) float32 in [0, 1], the probe's upsampled probability for
    ``"episeg"``, an uncalibrated evidence score for ``"stain-heuristic"``. ``mask``: (H, W)
    bool. ``flags``: caveats a reviewer should see (e.g. µm/px differs from the probe's).
    """

    mask: np.ndarray
    probability: np.ndarray
    method: str
    mpp: float
    flags: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float:
        """Fraction of the tile's pixels that are epithelium."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def patch_tokens_of(
    extractor: Any, tiles_uint8: np.ndarray, *, native_size: bool = False
) -> np.ndarray:
    """(B, h, w, D) float32 patch tokens of (B, H, W, 3) uint8 tiles from a ViT extractor;
    ``native_size``: at the tiles' own size (IMILIA's 1022 px EpiSeg images), not resized."""
    if not callable(getattr(extractor, "patch_tokens", None)):
        raise ImiliaError(
            f"extractor '{getattr(extractor, 'name', extractor)}' gives no patch tokens, and "
            "EpiSeg needs one embedding per 14 px patch; use a ViT extractor "
            "(see `imilia extractors`)"
        )
    tiles_uint8 = np.ascontiguousarray(tiles_uint8, dtype=np.uint8)
    if native_size:
        tokens = extractor.patch_tokens(tiles_uint8, native_size=True)
    else:
        tokens = extractor.patch_tokens(tiles_uint8)
    if hasattr(tokens, "detach"):
        tokens = tokens.detach().cpu().numpy()
    tokens = np.asarray(tokens, dtype=np.float32)
    if tokens.ndim != 4 or tokens.shape[0] != len(tiles_uint8):
        raise ImiliaError(
            f"extractor '{extractor.name}' returned patch tokens of shape {tokens.shape}; "
            f"expected ({len(tiles_uint8)}, h, w, D)"
        )
    return tokens


def segment_epithelium(
    tile_rgb: np.ndarray,
    *,
    mpp: float,
    method: str = "stain-heuristic",
    probe: EpiSegProbe | None = None,
    extractor: Any | None = None,
    tissue_mask: np.ndarray | None = None,
    params: StainHeuristicParams | None = None,
) -> EpitheliumResult:
    """Segment the epithelium of one (H, W, 3) uint8 tile at ``mpp`` µm/px.

    ``method="episeg"`` needs ``probe`` and the ``extractor`` it was trained with (checked);
    ``"stain-heuristic"`` needs nothing. ``tissue_mask`` ((H, W) bool), when given, bounds the
    result; otherwise the heuristic finds tissue itself and EpiSeg uses the whole tile.
    """
    tile = np.asarray(tile_rgb)
    if tile.ndim != 3 or tile.shape[2] < 3:
        raise DataError(f"tile must be an (H, W, 3) RGB image; got shape {tile.shape}")
    tile = tile[:, :, :3]
    if tile.dtype != np.uint8:
        raise DataError(f"tile must be 8-bit RGB (uint8); got {tile.dtype}")
    if not mpp > 0:
        raise DataError(f"tile µm/px must be positive; got {mpp}")
    if tissue_mask is not None:
        tissue_mask = np.asarray(tissue_mask).astype(bool)
        if tissue_mask.shape != tile.shape[:2]:
            raise DataError(
                f"tissue mask shape {tissue_mask.shape} differs from the tile's {tile.shape[:2]}"
            )
    if method == "stain-heuristic":
        score, tissue = stain_epithelium_score(
            tile, mpp=mpp, tissue_mask=tissue_mask, params=params
        )
        mask = stain_epithelium_mask(score, tissue, mpp=mpp, params=params)
        return EpitheliumResult(mask=mask, probability=score, method=method, mpp=mpp)
    if method == "episeg":
        return _segment_episeg(tile, mpp, probe, extractor, tissue_mask)
    raise ImiliaError(f"unknown epithelium method '{method}'; choose one of {', '.join(METHODS)}")


def _segment_episeg(
    tile: np.ndarray,
    mpp: float,
    probe: EpiSegProbe | None,
    extractor: Any | None,
    tissue_mask: np.ndarray | None,
) -> EpitheliumResult:
    if probe is None or extractor is None:
        raise ImiliaError(
            "epithelium method 'episeg' needs a trained probe (load_episeg_probe) and the "
            "extractor it was trained with; or use method 'stain-heuristic'"
        )
    probe.check_extractor(extractor)
    flags: list[str] = []
    if abs(mpp - probe.mpp) > MPP_TOLERANCE * probe.mpp:
        flags.append(
            f"tile is at {mpp:g} µm/px but the EpiSeg probe was trained at {probe.mpp:g} µm/px"
        )
    tokens = patch_tokens_of(extractor, tile[None])[0]
    probability = upsample_patch_probabilities(probe.predict_proba(tokens), tile.shape[:2])
    mask = probability > probe.threshold
    if tissue_mask is not None:
        mask &= tissue_mask
    return EpitheliumResult(
        mask=mask,
        probability=probability.astype(np.float32),
        method="episeg",
        mpp=mpp,
        flags=flags,
    )
