"""CellViT weight files: HistoPLUS key names, architecture read off tensor shapes, strict loads.

Accepted files (local only): ``.safetensors`` or a torch ``.pt``/``.pth``/``.bin`` state dict
read with ``torch.load(weights_only=True)`` (pickled objects are refused), optionally with a
JSON config of the same stem (``model.safetensors`` -> ``model.json``, written by
:func:`save_cellvit`). Without a config the architecture is read off the shapes
(:func:`infer_config`); what shapes cannot tell (attention heads, encoder blocks fed to the
decoder, µm/px) takes HistoPLUS's values.

Key layouts read: HistoPLUS's (``backbone.feature_extractor.model.*``, ``neck.necks.*``,
``{np,hv,tp}_branch.*``, encoder MLP ``mlp.w12``/``mlp.w3``), its older one without
``.model.`` (whose unused final ``norm.*`` is dropped, as HistoPLUS does), unpacked
``mlp.w1``/``mlp.w2``, and wrappers (``state_dict``/``model`` nesting, ``module.`` prefixes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from napari_imilia import __version__
from napari_imilia.errors import CheckpointError
from napari_imilia.features.vit.checkpoint import mismatch_report, read_checkpoint
from napari_imilia.features.vit.config import ViTConfig
from napari_imilia.features.vit.keys import describe_state_dict, unwrap_state_dict
from napari_imilia.files import write_safetensors_atomic, write_text_atomic
from napari_imilia.interpret.cells.cellvit.config import (
    BIOPTIMUS_MEAN,
    BIOPTIMUS_STD,
    HISTOPLUS_BY_TRAIN_PX,
    CellViTConfig,
    default_encoder_layers,
)
from napari_imilia.interpret.cells.cellvit.model import CellViT
from napari_imilia.interpret.cells.types import CELL_CLASSES
from napari_imilia.trust.checkpoints import check_config_numbers

CONFIG_FORMAT = "napari-imilia-cellvit"
CONFIG_VERSION = 1
ENCODER_PREFIX = "backbone.feature_extractor.model."
_OLD_ENCODER_PREFIX = "backbone.feature_extractor."
_UNUSED_ENCODER = ("norm.", "fc_norm.", "head.")
_WRAPPERS = ("module.", "_orig_mod.")
#: Keys without which a state dict is not a CellViT (architecture is read from them).
_REQUIRED = (
    ENCODER_PREFIX + "patch_embed.proj.weight",
    ENCODER_PREFIX + "pos_embed",
    ENCODER_PREFIX + "blocks.0.mlp.fc1.weight",
    ENCODER_PREFIX + "blocks.0.mlp.fc2.weight",
    "neck.necks.0.0.block.0.weight",
    "neck.necks.0.1.block.0.weight",
    "neck.necks.1.0.block.0.weight",
    "neck.necks.1.1.block.0.weight",
    "neck.necks.1.2.block.0.weight",
    "neck.necks.2.1.block.0.weight",
    "neck.necks.3.0.block.0.weight",
    "np_branch.decoder1_upsampler.2.weight",
    "tp_branch.decoder0_header.2.weight",
)
TYPE_HEAD_KEY = "tp_branch.decoder0_header.2.weight"


def to_model_keys(raw: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A checkpoint object (any accepted layout) -> state dict with this package's names."""
    unwrapped = unwrap_state_dict(raw, source)
    state = {k: v for k, v in unwrapped.items() if isinstance(v, torch.Tensor)}
    for prefix in _WRAPPERS:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    unpacked: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.startswith(_OLD_ENCODER_PREFIX) and not key.startswith(ENCODER_PREFIX):
            key = ENCODER_PREFIX + key[len(_OLD_ENCODER_PREFIX) :]
        if key.startswith(ENCODER_PREFIX):
            rest = key[len(ENCODER_PREFIX) :]
            if rest.startswith(_UNUSED_ENCODER):
                continue
            rest = re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", rest)
            rest = re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", rest)
            split = re.fullmatch(r"(.*\.mlp)\.(w1|w2)\.(weight|bias)", rest)
            if split:
                unpacked.setdefault(f"{split[1]}.fc1.{split[3]}", {})[split[2]] = value
                continue
            key = ENCODER_PREFIX + rest
        out[key] = value
    for rest, parts in unpacked.items():  # SwiGLU halves: w1 (gated by SiLU) first
        if set(parts) == {"w1", "w2"}:
            out[ENCODER_PREFIX + rest] = torch.cat([parts["w1"], parts["w2"]], dim=0)
        else:
            for name, tensor in parts.items():
                out[ENCODER_PREFIX + rest.replace(".fc1.", f".{name}.")] = tensor
    return out


def histoplus_state_dict(model: CellViT) -> dict[str, torch.Tensor]:
    """``model``'s tensors under HistoPLUS's key names (encoder MLP ``w12``/``w3``), on CPU."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith(ENCODER_PREFIX):
            key = re.sub(r"\.mlp\.fc1\.", ".mlp.w12.", key)
            key = re.sub(r"\.mlp\.fc2\.", ".mlp.w3.", key)
        out[key] = value.detach().to("cpu").contiguous()
    return out


def expected_shapes(config: CellViTConfig) -> dict[str, torch.Size]:
    """Every tensor name and shape of the network ``config`` describes (no memory used)."""
    with torch.device("meta"):
        model = CellViT(config)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def _square_side(n: int) -> int | None:
    side = round(max(n, 0) ** 0.5)
    return side if n > 0 and side * side == n else None


def infer_config(
    state: Mapping[str, torch.Tensor], *, mpp: float | None = None, where: str = "checkpoint"
) -> CellViTConfig:
    """The architecture of a model-key state dict, read off its shapes.

    Not in the shapes, hence assumed: 64-d attention heads (12 for ViT-B, as HistoPLUS),
    the encoder blocks fed to the decoder (HistoPLUS's 3, 5, 7, 11 for 12 blocks), LayerNorm
    eps 1e-6, Bioptimus normalisation, and µm/px from the training tile size of HistoPLUS's
    releases (448 px -> 0.25, 224 px -> 0.5) unless ``mpp`` is given.
    """
    _check_cellvit_keys(state, where)
    encoder = _encoder_config(state, where)
    train_px = encoder.img_size_px
    if mpp is None:
        if train_px not in HISTOPLUS_BY_TRAIN_PX:
            raise CheckpointError(
                f"{where}: trained on {train_px} px tiles, not a HistoPLUS release (448 px at "
                "0.25 µm/px, 224 px at 0.5): its µm/px is unknown; pass mpp= (imilia inspect "
                "--analysis-mpp) or a JSON config"
            )
        mpp = HISTOPLUS_BY_TRAIN_PX[train_px].mpp

    def width(key: str, axis: int = 1) -> int:
        return int(state[key].shape[axis])

    config = CellViTConfig(
        encoder=encoder,
        encoder_layers=default_encoder_layers(encoder.depth),
        skip_dims=(width("neck.necks.1.0.block.0.weight"), width("neck.necks.1.1.block.0.weight")),
        bottleneck_dim=width("neck.necks.3.0.block.0.weight"),
        decoder_dims=(
            width("neck.necks.2.1.block.0.weight"),
            width("neck.necks.1.2.block.0.weight"),
            width("np_branch.decoder1_upsampler.2.weight"),
        ),
        stem_dims=(
            width("neck.necks.0.0.block.0.weight", 0),
            width("neck.necks.0.1.block.0.weight", 0),
        ),
        mpp=float(mpp),
        mean=BIOPTIMUS_MEAN,
        std=BIOPTIMUS_STD,
    )
    return _named_release(config, train_px)


def _check_cellvit_keys(state: Mapping[str, torch.Tensor], where: str) -> None:
    """``CheckpointError`` unless ``state`` has CellViT's keys and HistoPLUS's class count."""
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(not_cellvit_message(state, where, missing))
    n_classes = int(state[TYPE_HEAD_KEY].shape[0])
    if n_classes != len(CELL_CLASSES):
        raise CheckpointError(
            f"{where} predicts {n_classes} cell types ({TYPE_HEAD_KEY} "
            f"{tuple(state[TYPE_HEAD_KEY].shape)}) but HistoPLUS's taxonomy has "
            f"{len(CELL_CLASSES)} (Background + {len(CELL_CLASSES) - 1} types): pass a JSON "
            "config whose class_names name each channel"
        )


def _encoder_config(state: Mapping[str, torch.Tensor], where: str) -> ViTConfig:
    """The ViT encoder read off the shapes; ``img_size_px`` is the training tile size."""
    proj = state[ENCODER_PREFIX + "patch_embed.proj.weight"]
    dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    blocks = {int(m[1]) for k in state if (m := re.match(rf"{ENCODER_PREFIX}blocks\.(\d+)\.", k))}
    reg = state.get(ENCODER_PREFIX + "reg_token")
    n_reg = int(reg.shape[1]) if reg is not None and reg.ndim == 3 else 0
    has_cls = ENCODER_PREFIX + "cls_token" in state
    rows = int(state[ENCODER_PREFIX + "pos_embed"].shape[1])
    grid, with_prefix = _square_side(rows), False
    if grid is None:
        grid, with_prefix = _square_side(rows - n_reg - int(has_cls)), True
    if grid is None:
        raise CheckpointError(f"{where}: pos_embed has {rows} rows, not a square patch grid")
    fc1 = state[ENCODER_PREFIX + "blocks.0.mlp.fc1.weight"]
    fc2 = state[ENCODER_PREFIX + "blocks.0.mlp.fc2.weight"]
    swiglu = int(fc1.shape[0]) == 2 * int(fc2.shape[1])
    return ViTConfig(
        img_size_px=grid * patch,
        patch_size_px=patch,
        embed_dim=dim,
        depth=max(blocks) + 1,
        num_heads=dim // 64 if dim % 64 == 0 else 1,
        mlp_hidden_dim=int(fc1.shape[0]),
        mlp_kind="swiglu_packed" if swiglu else "gelu",
        num_reg_tokens=n_reg,
        class_token=has_cls,
        pos_embed_includes_prefix=with_prefix,
        layer_scale_init=1e-5 if ENCODER_PREFIX + "blocks.0.ls1.gamma" in state else None,
        qkv_bias=ENCODER_PREFIX + "blocks.0.attn.qkv.bias" in state,
    )


def _named_release(config: CellViTConfig, train_px: int) -> CellViTConfig:
    """``config`` named as the HistoPLUS release it equals (µm/px aside), else as is."""
    release = HISTOPLUS_BY_TRAIN_PX.get(train_px)
    if release is not None:
        named = replace(
            config,
            encoder=replace(config.encoder, arch_name=release.encoder.arch_name),
            name=release.name,
        )
        if replace(named, mpp=release.mpp) == release:
            return named
    return config


def not_cellvit_message(state: Mapping[str, torch.Tensor], where: str, missing: list[str]) -> str:
    """Why ``state`` is not a CellViT, naming what it looks like instead."""
    if not state:
        return f"{where} holds no tensors; pass the CellViT (HistoPLUS) weights file"
    trunk = {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items()}
    vit = describe_state_dict(trunk)
    heads = ("neck.", "np_branch.", "hv_branch.", "tp_branch.")
    has_decoder = any(k.startswith(heads) for k in state)
    if vit is not None and not has_decoder:
        looks = f"it holds a ViT encoder alone ({vit}), no CellViT neck or decoders"
    else:
        shown = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(state.items())[:4])
        looks = f"it lacks {', '.join(missing[:3])}; it holds {len(state)} tensors like {shown}"
    return (
        f"{where} is not a CellViT (HistoPLUS) checkpoint: {looks}. Pass a HistoPLUS "
        "cell segmentor (histoplus_cellvit_segmentor_40x.pt / _20x.pt) or a file saved by "
        "napari_imilia.interpret.cells.cellvit.save_cellvit"
    )


def config_path_for(weights_path: str | Path) -> Path:
    """``model.safetensors`` -> ``model.json`` (same folder, same stem)."""
    return Path(weights_path).with_suffix(".json")


def read_config(path: str | Path) -> CellViTConfig:
    """The ``CellViTConfig`` in a JSON file written by :func:`save_cellvit`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"CellViT config {path} is not readable JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
        raise CheckpointError(
            f"{path} is not a CellViT config (its 'format' is not {CONFIG_FORMAT!r}); "
            "remove it to let the architecture be read off the weights"
        )
    check_config_numbers(data.get("config", {}), f"CellViT config {path}: config")
    try:
        return CellViTConfig.from_dict(data.get("config", {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"CellViT config {path} is invalid: {error}") from error


def load_cellvit(
    path: str | Path,
    *,
    config: CellViTConfig | str | Path | None = None,
    mpp: float | None = None,
) -> CellViT:
    """The CellViT in ``path`` (eval mode, float32, CPU), checked key by key and shape by shape.

    ``config``: a ``CellViTConfig``, a JSON path, or None for the same-stem ``.json`` beside
    the weights, else :func:`infer_config`. ``mpp`` overrides the config's µm/px.
    """
    path = Path(path)
    if isinstance(config, str | Path):
        config = read_config(config)
    elif config is None and config_path_for(path).is_file():
        config = read_config(config_path_for(path))
    expected = None if config is None else expected_shapes(config)
    raw = read_checkpoint(path, expected, "the CellViT its config describes")
    state = to_model_keys(raw, source=f"weights file {path}")
    if config is None:
        config = infer_config(state, mpp=mpp, where=f"weights file {path}")
    else:
        missing = [k for k in _REQUIRED if k not in state]
        if missing:
            raise CheckpointError(not_cellvit_message(state, f"weights file {path}", missing))
    if mpp is not None:
        config = replace(config, mpp=float(mpp))
    head = state.get(TYPE_HEAD_KEY)
    if head is not None and int(head.shape[0]) != config.num_classes:
        raise CheckpointError(
            f"weights file {path} predicts {int(head.shape[0])} cell types ({TYPE_HEAD_KEY} "
            f"{tuple(head.shape)}) but its config names {config.num_classes} "
            f"({', '.join(config.class_names)}); pass the config that belongs to these weights"
        )
    report = mismatch_report(state, expected_shapes(config))
    if report:
        raise CheckpointError(
            f"weights file {path} does not fit {config.describe()}: {report}. Pass the "
            "JSON config saved with these weights, or a HistoPLUS cell segmentor file"
        )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    with torch.device("meta"):
        model = CellViT(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def save_cellvit(model: CellViT, path: str | Path, *, name: str | None = None) -> Path:
    """Write ``path`` (``.safetensors``, HistoPLUS key names, float32) and its ``.json``
    config atomically; returns ``path``."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"save a CellViT as a .safetensors file, not {path.name}")
    config = model.config if name is None else replace(model.config, name=name)
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in histoplus_state_dict(model).items()
    }
    metadata = {"format": CONFIG_FORMAT, "name": config.name}
    weights_sha256 = write_safetensors_atomic(path, save(state, metadata=metadata))
    record = {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "config": config.to_dict(),
        "weights_file": path.name,
        "weights_sha256": weights_sha256,
        "software": f"napari-imilia {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_text_atomic(config_path_for(path), json.dumps(record, indent=2) + "\n")
    return path
