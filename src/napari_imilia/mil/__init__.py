"""Multiple-instance learning heads: architectures by name, checkpoints, cross-validated training.

>>> from napari_imilia.mil import create_model, list_models, load_model
>>> model = create_model("abmil", in_dim=768)          # an nn.Module: forward(x, mask) -> MILOutput
>>> imilia = load_model("path/to/imilia_chowder/")     # 5 released folds -> ensemble
>>> prediction = imilia.predict(features)              # features: N x 768 float32 (H0-mini)

Architectures (see docs/mil_models.md): ``imilia-chowder`` (IMILIA's multi-channel Chowder,
loads the released weights), ``abmil`` (gated attention) and ``max-mil`` (presence-based).
``channels`` reads a multi-channel Chowder's per-channel tile scores.
"""

from typing import TYPE_CHECKING

from napari_imilia._lazy import lazy_exports

if TYPE_CHECKING:
    from napari_imilia.mil.base import MILModel, MILOutput
    from napari_imilia.mil.checkpoint import (
        CheckpointMember,
        config_path_for,
        read_state_dict,
        save_model,
    )
    from napari_imilia.mil.predictor import LoadedModel, SlidePrediction, load_model
    from napari_imilia.mil.registry import create_model, list_models, model_class
    from napari_imilia.mil.training import (
        CVResult,
        FoldMetrics,
        train_cross_validation,
        train_model,
    )

# Imported on first use: napari_imilia.mil.channels (numpy only) must not import torch.
_EXPORTS = {
    "MILModel": "base",
    "MILOutput": "base",
    "CheckpointMember": "checkpoint",
    "config_path_for": "checkpoint",
    "read_state_dict": "checkpoint",
    "save_model": "checkpoint",
    "LoadedModel": "predictor",
    "SlidePrediction": "predictor",
    "load_model": "predictor",
    "create_model": "registry",
    "list_models": "registry",
    "model_class": "registry",
    "CVResult": "training",
    "FoldMetrics": "training",
    "train_cross_validation": "training",
    "train_model": "training",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CVResult",
    "CheckpointMember",
    "FoldMetrics",
    "LoadedModel",
    "MILModel",
    "MILOutput",
    "SlidePrediction",
    "config_path_for",
    "create_model",
    "list_models",
    "load_model",
    "model_class",
    "read_state_dict",
    "save_model",
    "train_cross_validation",
    "train_model",
]
