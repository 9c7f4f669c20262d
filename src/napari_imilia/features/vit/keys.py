"""State-dict key conversion to timm names, and a description of what a state dict holds.

Accepted layouts (see docs/extractors.md for the full table):

- **timm** (``patch_embed.proj``, ``blocks.{i}.attn.qkv``, ...): used as is. DINOv2's fused
  SwiGLU names ``mlp.w12``/``mlp.w3`` are renamed ``mlp.fc1``/``mlp.fc2`` (same packing).
- **DINOv2 original** (``register_tokens``, chunked ``blocks.{c}.{i}``): registers become
  ``reg_token``; when the model keeps no class position (timm ``no_embed_class``), the class
  position row is folded into ``cls_token``, as timm's own converter does.
- **Hugging Face** ``ViTModel`` (Phikon) and ``Dinov2Model`` (Phikon-v2): renamed, with the
  separate ``query``/``key``/``value`` projections concatenated into ``qkv`` (q, k, v order).

Wrappers are removed first: nested ``state_dict``/``model``/``teacher`` dicts, prefixes shared
by every key (``module.``, ``model.``, ``backbone.``, ...), and heads that are not part of the
trunk (``head``, ``classifier``, ``pooler``, ``mask_token``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from napari_imilia.features.vit.config import ViTConfig, describe_shape
from napari_imilia.features.vit.model import resample_pos_embed

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "teacher", "module")
_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "trunk.", "vit.", "dinov2.")
_HEAD_PREFIXES = ("head.", "head_dist.", "classifier.", "pooler.", "dino_head.", "ibot_head.")
_DROPPED_KEYS = ("mask_token", "embeddings.mask_token")

_HF_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
    ("layernorm_before.", "norm1."),  # HF ViT
    ("layernorm_after.", "norm2."),  # HF ViT
    ("intermediate.dense.", "mlp.fc1."),  # HF ViT
    ("output.dense.", "mlp.fc2."),  # HF ViT (after attention.output.dense is handled)
    ("attention.output.dense.", "attn.proj."),
    ("layer_scale1.lambda1", "ls1.gamma"),  # HF Dinov2
    ("layer_scale2.lambda1", "ls2.gamma"),  # HF Dinov2
    ("mlp.weights_in.", "mlp.fc1."),  # HF Dinov2 SwiGLU
    ("mlp.weights_out.", "mlp.fc2."),  # HF Dinov2 SwiGLU
)
_HF_TOP_RENAMES: dict[str, str] = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "reg_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Any]:
    """The tensor mapping inside a checkpoint object (nested ``state_dict``/``model``/...);
    ``CheckpointError`` (naming ``source``) for a dict containing itself or nested too deep."""
    from napari_imilia.trust.checkpoints import unwrap_nested

    obj = unwrap_nested(obj, _NESTED_KEYS, source)
    if not isinstance(obj, Mapping):
        return {}
    return {str(k): v for k, v in obj.items()}


def strip_wrappers(state: dict[str, Any]) -> dict[str, Any]:
    """Drop non-trunk heads, then every prefix shared by all keys (``module.``, ``model.`` ...)."""
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed and state:
        changed = False
        state = {
            k: v
            for k, v in state.items()
            if k not in _DROPPED_KEYS and not k.startswith(_HEAD_PREFIXES)
        }
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def detect_format(state: Mapping[str, Any]) -> str:
    """``hf_vit``, ``hf_dinov2``, ``dinov2`` (original) or ``timm`` (anything else)."""
    if any(k.startswith("encoder.layer.") for k in state):
        return "hf_vit" if any(".layernorm_before." in k for k in state) else "hf_dinov2"
    if "register_tokens" in state or any(re.match(r"blocks\.\d+\.\d+\.", k) for k in state):
        return "dinov2"
    return "timm"


def _hf_block_key(rest: str) -> str:
    for old, new in _HF_BLOCK_RENAMES:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def hf_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Hugging Face ``ViTModel``/``Dinov2Model`` keys; q/k/v are concatenated to qkv."""
    out: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in _HF_TOP_RENAMES:
            out[_HF_TOP_RENAMES[key]] = value
            continue
        match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", key)
        if match is None:
            out[key] = value  # left for the strict check to report
            continue
        block, rest = match.groups()
        qkv = re.fullmatch(r"attention\.attention\.(query|key|value)\.(weight|bias)", rest)
        if qkv is not None:
            qkv_parts.setdefault((block, qkv.group(2)), {})[qkv.group(1)] = value
            continue
        out[f"blocks.{block}.{_hf_block_key(rest)}"] = value
    for (block, kind), parts in qkv_parts.items():
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            for name, tensor in parts.items():
                out[f"encoder.layer.{block}.attention.attention.{name}.{kind}"] = tensor
            continue
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    return out


def _rename_dinov2(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)
        key = re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", key)
        key = re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", key)
        out[key] = value
    return out


def fit_positions(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """Fold a class position row into ``cls_token`` when ``config`` keeps none (timm
    ``no_embed_class``), as for DINOv2-original checkpoints with registers. This is exact: the
    class token is the only token that ever receives that row.
    """
    pos = state.get("pos_embed")
    if pos is None or pos.ndim != 3 or pos.shape[-1] != config.embed_dim:
        return state
    rows = pos.shape[1]
    if (
        not config.pos_embed_includes_prefix
        and config.class_token
        and "cls_token" in state
        and _is_square(rows - 1)
        and not _is_square(rows)
    ):
        state["cls_token"] = state["cls_token"] + pos[:, :1]
        state["pos_embed"] = pos[:, 1:]
    return state


def _is_square(n: int) -> bool:
    root = round(max(n, 0) ** 0.5)
    return n > 0 and root * root == n


def resample_grid(state: dict[str, torch.Tensor], config: ViTConfig) -> dict[str, torch.Tensor]:
    """Resample a square ``pos_embed`` patch grid of another size to ``config.grid_size``.

    Used for Hugging Face files only, which resample at run time anyway (bicubic; antialiased
    here, which is identical when upsampling).
    """
    pos = state.get("pos_embed")
    if pos is None or pos.ndim != 3 or pos.shape[-1] != config.embed_dim:
        return state
    n_prefix = config.num_prefix_tokens if config.pos_embed_includes_prefix else 0
    n_patch = pos.shape[1] - n_prefix
    if not _is_square(n_patch) or n_patch == config.num_patches:
        return state
    side = round(n_patch**0.5)
    patch = resample_pos_embed(pos[:, n_prefix:], (side, side), (config.grid_size,) * 2)
    state["pos_embed"] = torch.cat([pos[:, :n_prefix], patch], dim=1)
    return state


def to_timm_keys(
    raw: Any, config: ViTConfig, source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], str]:
    """Any accepted checkpoint object -> (timm-named trunk state dict, detected format)."""
    state = strip_wrappers(unwrap_state_dict(raw, source))
    fmt = detect_format(state)
    if fmt in ("hf_vit", "hf_dinov2"):
        state = hf_to_timm(state)
    if "register_tokens" in state:
        state["reg_token"] = state.pop("register_tokens")
    state = fit_positions(_rename_dinov2(state), config)
    if fmt in ("hf_vit", "hf_dinov2"):
        state = resample_grid(state, config)
    return state, fmt


def describe_state_dict(state: Mapping[str, torch.Tensor]) -> str | None:
    """Describe a timm-named state dict like :meth:`ViTConfig.describe`; None if not a ViT."""
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.ndim != 4:
        return None
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else 0
    reg = state.get("reg_token")
    n_reg = int(reg.shape[1]) if reg is not None and reg.ndim == 3 else 0
    fc1, fc2 = state.get("blocks.0.mlp.fc1.weight"), state.get("blocks.0.mlp.fc2.weight")
    mlp = "unknown MLP"
    if fc1 is not None and fc2 is not None:
        kind = "SwiGLU" if fc1.shape[0] == 2 * fc2.shape[1] else "GELU"
        mlp = f"{kind} MLP {int(fc1.shape[0])}"
    return (
        f"{describe_shape(embed_dim, patch)} ({embed_dim}-d, {depth} blocks, "
        f"{n_reg} register tokens, {mlp})"
    )
