"""Reading ViT weight files safely and loading them into :class:`VisionTransformer` strictly.

Files: ``.safetensors`` (preferred) or a torch pickle (``.bin``/``.pt``/``.pth``) read only
with ``torch.load(weights_only=True)``, which refuses arbitrary Python objects. Every problem
is a :class:`~napari_imilia.errors.CheckpointError` that names the file and what to do.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from napari_imilia.errors import CheckpointError
from napari_imilia.features.vit.config import ViTConfig
from napari_imilia.features.vit.keys import describe_state_dict, to_timm_keys
from napari_imilia.features.vit.model import VisionTransformer
from napari_imilia.trust.checkpoints import CorruptWeightsError, check_weights_size

SAFETENSORS_SUFFIXES: tuple[str, ...] = (".safetensors",)
TORCH_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth")
_LISTED_KEYS = 6


def read_checkpoint(
    path: str | Path, expected: dict[str, torch.Size] | None = None, what: str = "the model"
) -> Any:
    """The object stored in a weights file (a tensor mapping, possibly nested).

    Before anything is allocated, a safetensors header is checked against the file, and the
    file's tensors against the ``expected`` shapes of ``what`` (or the size limit for a
    checkpoint of unknown architecture): see :mod:`napari_imilia.trust.checkpoints`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES + TORCH_SUFFIXES:
        try:
            check_weights_size(path, expected, what)
        except CorruptWeightsError as exc:
            raise CheckpointError(
                f"weights file {path} is not a readable safetensors file ({exc}); it may be "
                "truncated or corrupt: download it again"
            ) from exc
    try:
        return _read_checkpoint(path, suffix)
    except MemoryError as exc:
        raise CheckpointError(
            f"weights file {path} does not fit in memory ({path.stat().st_size / 1e9:.2f} GB); "
            "is it the right file?"
        ) from exc


def _read_checkpoint(path: Path, suffix: str) -> Any:
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"weights file {path} is not a readable safetensors file ({exc}); "
                "it may be truncated or corrupt: download it again"
            ) from exc
    if suffix in TORCH_SUFFIXES:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"weights file {path} was refused: it holds Python objects other than tensors "
                "and could run code when loaded. Only plain state dicts are read "
                "(torch.load weights_only=True); save model.state_dict() or convert it to "
                ".safetensors"
            ) from exc
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(
                f"weights file {path} is not a readable torch file ({exc}); it may be "
                "truncated or corrupt: download it again"
            ) from exc
    accepted = ", ".join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)
    raise CheckpointError(f"weights file {path} has suffix {suffix!r}; expected one of {accepted}")


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED_KEYS])
    more = len(keys) - _LISTED_KEYS
    return shown + (f" (+{more} more)" if more > 0 else "")


def mismatch_report(state: dict[str, torch.Tensor], expected: dict[str, torch.Size]) -> str:
    """Missing keys, unexpected keys and shape mismatches, '' when the state dict fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs expected {tuple(shape)}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != tuple(shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches: {_listing(shapes)}")
    return "; ".join(parts)


def expected_shapes(config: ViTConfig) -> dict[str, torch.Size]:
    """Every parameter name and shape of the trunk ``config`` describes (no memory used)."""
    with torch.device("meta"):
        model = VisionTransformer(config)
    return {name: param.shape for name, param in model.state_dict().items()}


def load_vit(
    path: str | Path, config: ViTConfig, *, model_name: str = "this extractor"
) -> VisionTransformer:
    """Build the trunk for ``config`` and load ``path`` into it with strict key/shape checks.

    Floating-point weights are converted to float32 (autocast lowers precision on CUDA).
    """
    path = Path(path)
    expected = expected_shapes(config)
    raw = read_checkpoint(path, expected, f"extractor {model_name}")
    state, fmt = to_timm_keys(raw, config, source=f"weights file {path}")
    if not state:
        raise CheckpointError(
            f"weights file {path} holds no tensors; pass the model's weights file"
        )
    report = mismatch_report(state, expected)
    if report:
        found = describe_state_dict(state)
        if found:
            arch, details = found.split(" ", 1)
            looks = f"it looks like a {arch} checkpoint {details}, {fmt} key names,"
        else:
            looks = "it does not look like a ViT checkpoint (no patch_embed.proj.weight)"
        raise CheckpointError(
            f"weights file {path} does not fit extractor {model_name}: {looks} but "
            f"{model_name} expects {config.describe()}. {report}. Pass the weights of "
            f"{model_name} (see docs/extractors.md) or choose the extractor that matches"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    with torch.device("meta"):
        model = VisionTransformer(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
