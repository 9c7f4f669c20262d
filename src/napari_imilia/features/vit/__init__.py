"""Vision Transformers of the DINOv2 / timm family in plain torch, with timm parameter names.

- :mod:`.config`: :class:`ViTConfig` and the foundation-model configs.
- :mod:`.model`: :class:`VisionTransformer` (outputs class token, registers,
  patch tokens after the final norm).
- :mod:`.keys`: timm / DINOv2 / Hugging Face key conversion.
- :mod:`.checkpoint`: safe file reading and strict loading (:func:`load_vit`).
"""

from napari_imilia.features.vit.checkpoint import expected_shapes, load_vit, read_checkpoint
from napari_imilia.features.vit.config import (
    H0_MINI,
    H_OPTIMUS_0,
    PHIKON,
    PHIKON_V2,
    UNI,
    UNI2_H,
    ViTConfig,
    mlp_hidden_from_ratio,
)
from napari_imilia.features.vit.keys import describe_state_dict, to_timm_keys
from napari_imilia.features.vit.model import VisionTransformer, ViTOutput, resample_pos_embed

__all__ = [
    "H0_MINI",
    "H_OPTIMUS_0",
    "PHIKON",
    "PHIKON_V2",
    "UNI",
    "UNI2_H",
    "ViTConfig",
    "ViTOutput",
    "VisionTransformer",
    "describe_state_dict",
    "expected_shapes",
    "load_vit",
    "mlp_hidden_from_ratio",
    "read_checkpoint",
    "resample_pos_embed",
    "to_timm_keys",
]
