"""MIL checkpoint files: our ``model.safetensors`` + ``model.json``, and bare state dicts.

Our format is a safetensors state dict with a JSON config of the same stem beside it
(``model.safetensors`` → ``model.json``) saying how to rebuild the module and what it expects
(see docs/mil_models.md). ``load_model`` also accepts bare torch ``.pt``/``.pth`` state dicts,
read only with ``torch.load(weights_only=True)`` (pickled code is refused), whose architecture
must then be read off the tensor shapes (IMILIA's released Chowder folds). Ensembles of
several files are built in ``napari_imilia.mil.predictor``.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from napari_imilia import __version__
from napari_imilia.errors import CheckpointError, DataError
from napari_imilia.files import sha256_file, write_json_atomic, write_safetensors_atomic
from napari_imilia.mil.base import MILModel
from napari_imilia.mil.chowder import infer_chowder_hparams, is_imilia_release_shape
from napari_imilia.mil.chowder import looks_like_chowder as _looks_like_chowder
from napari_imilia.mil.registry import create_model
from napari_imilia.trust.checkpoints import (
    MAX_CONFIG_INT,
    CorruptWeightsError,
    check_config_numbers,
    check_weights_fit_config,
    check_weights_size,
)
from napari_imilia.trust.results import read_results_json

CONFIG_FORMAT = "napari-imilia-mil"
CONFIG_VERSION = 1
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth")
#: What IMILIA's release expects (H0-mini CLS features of 224 px tiles); not stored in it.
IMILIA_RELEASE_INPUT: dict[str, Any] = {"extractor": "h0-mini", "mpp": 0.5, "tile_px": 224}
IMILIA_RELEASE_NOTE = (
    "IMILIA released weights (owkin/imilia, CC-BY-NC-ND-4.0); architecture read off the "
    "state dict; extractor/MPP/tile size from the IMILIA paper, not stored in the file"
)


@dataclass
class CheckpointMember:
    """One loaded checkpoint file: the module on its device and where it came from."""

    path: Path
    sha256: str
    config: dict[str, Any]
    module: MILModel


def config_path_for(weights_path: str | Path) -> Path:
    """``model.safetensors`` → ``model.json`` (same folder, same stem)."""
    return Path(weights_path).with_suffix(".json")


def save_model(
    model: MILModel,
    path: str | Path,
    *,
    extractor: str | None = None,
    mpp: float | None = None,
    tile_px: int | None = None,
    training: Mapping[str, Any] | None = None,
    demo: bool = False,
    name: str | None = None,
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` config atomically; returns ``path``.

    ``extractor``/``mpp``/``tile_px`` say which tile features the model expects; ``training``
    is the provenance record (data, labels hash, folds, seed, epochs, metrics...); ``demo``
    marks a model that is not fit for scientific use.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"save a model as a .safetensors file, not {path.name}")
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    metadata = {"format": CONFIG_FORMAT, "architecture": model.arch_name}
    weights_sha256 = write_safetensors_atomic(path, save(state, metadata=metadata))
    config = {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "name": name or path.stem,
        "architecture": model.arch_name,
        "hparams": model.hparams,
        "in_dim": model.in_dim,
        "extractor": extractor,
        "mpp": None if mpp is None else float(mpp),
        "tile_px": None if tile_px is None else int(tile_px),
        "demo": bool(demo),
        "weights_file": path.name,
        "weights_sha256": weights_sha256,
        "training": dict(training) if training is not None else None,
        "software": f"napari-imilia {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(config_path_for(path), config)
    return path


def read_state_dict(
    path: str | Path, expected: Mapping[str, torch.Size] | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pt``/``.pth`` file, never unpickling code; the
    file is first checked against the ``expected`` shapes (or the size limit of a checkpoint
    of unknown architecture, :mod:`napari_imilia.trust.checkpoints`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".pt", ".pth"):
        try:
            check_weights_size(path, expected, "the architecture in its config")
        except CorruptWeightsError as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): {error}"
            ) from error
    try:
        return _read_state_dict(path, suffix)
    except MemoryError as error:
        raise CheckpointError(f"{path} does not fit in memory; is it the right file?") from error


def _read_state_dict(path: Path, suffix: str) -> dict[str, torch.Tensor]:
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as error:  # SafetensorError and friends
            raise CheckpointError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): {error}"
            ) from error
    if suffix not in (".pt", ".pth"):
        raise CheckpointError(
            f"unsupported checkpoint {path.name}: use .safetensors (+ .json) or a torch "
            ".pt/.pth state dict"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(
                f"{path} contains pickled Python objects, not just tensors; napari-imilia "
                "refuses to unpickle them (that can run arbitrary code). Re-save the state "
                "dict alone (torch.save(model.state_dict(), ...)) or as safetensors"
            ) from error
        raise CheckpointError(f"{path} is corrupt or truncated ({error})") from error
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (corrupt or truncated?): "
            f"{type(error).__name__}: {str(error)[:200]}"
        ) from error
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries {bad[:5]} are not tensors; not a state dict")
    state = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def describe_state_dict(state: Mapping[str, torch.Tensor], limit: int = 12) -> str:
    """``key (shape), ...`` for an error message, at most ``limit`` entries."""
    items = [f"{k} {tuple(v.shape)}" for k, v in list(state.items())[:limit]]
    more = len(state) - limit
    return ", ".join(items) + (f", ... and {more} more" if more > 0 else "")


def _build(arch: str, in_dim: int, hparams: Mapping[str, Any], state: Mapping, path: Path):
    module = create_model(arch, in_dim, **hparams)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path.name}: weights do not fit architecture {arch} (in_dim={in_dim}, "
            f"hparams={dict(hparams)}): {str(error).splitlines()[-1].strip()}; "
            f"found: {describe_state_dict(state)}"
        ) from error
    check_finite_weights(module.state_dict(), path)
    return module.eval()


def check_finite_weights(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """``CheckpointError`` when a floating-point weight is NaN or infinite as loaded (a
    float64 value too large for float32 included): a degenerate model is refused at load,
    before it scores a slide."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path.name}: weight {name!r} holds NaN or infinite values; the model is "
                "degenerate (training diverged, or the file is damaged) and is refused"
            )


def read_model_config(path: str | Path) -> dict[str, Any] | None:
    """The checked ``.json`` config beside weights file ``path`` (:func:`check_model_config`),
    or None when there is none; ``CheckpointError`` when it is unreadable or ill-typed."""
    config_path = config_path_for(path)
    if not os.path.lexists(config_path):
        return None
    try:
        config = read_results_json(config_path, None)
    except (DataError, OSError) as error:
        raise CheckpointError(f"{config_path} is not a readable JSON file: {error}") from error
    return check_model_config(config, config_path)


def check_model_config(config: Any, config_path: Path) -> dict[str, Any]:
    """``model.json`` checked field by field (``CheckpointError`` naming the field): the
    architecture a name, ``in_dim`` an integer 1-65536, ``hparams`` an object of finite
    bounded numbers, ``mpp`` a positive finite number (µm/px) or null, ``tile_px`` an integer
    or null, ``extractor``/``name``/``weights_sha256`` text or null, ``demo`` true/false."""
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        raise CheckpointError(f"{config_path} is not a napari-imilia model config")
    in_dim = config.get("in_dim")
    if isinstance(in_dim, bool) or not isinstance(in_dim, int) or not 1 <= in_dim <= MAX_CONFIG_INT:
        raise CheckpointError(
            f"{config_path}: in_dim must be a feature width 1-{MAX_CONFIG_INT}; got {in_dim!r}"
        )
    hparams = config.get("hparams") or {}
    if not isinstance(hparams, dict):
        raise CheckpointError(f"{config_path}: hparams must be a JSON object")
    check_config_numbers(hparams, f"{config_path}: hparams")
    bad = _bad_field(config)
    if bad is not None:
        key, wanted = bad
        raise CheckpointError(
            f"{config_path}: {key} must be {wanted}; got {str(config[key])[:60]!r}"
        )
    return config


def _bad_field(config: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what it must be) of the first ill-typed field of a model config, or None."""
    for key in ("extractor", "name", "weights_sha256"):
        if config.get(key) is not None and not isinstance(config[key], str):
            return key, "text or null"
    mpp = config.get("mpp")
    if mpp is not None and (
        isinstance(mpp, bool)
        or not isinstance(mpp, int | float)
        or not (math.isfinite(mpp) and 0 < mpp <= MAX_CONFIG_INT)
    ):
        return "mpp", "a positive number of µm per pixel, or null"
    tile_px = config.get("tile_px")
    if tile_px is not None and (
        isinstance(tile_px, bool)
        or not isinstance(tile_px, int)
        or not 1 <= tile_px <= MAX_CONFIG_INT
    ):
        return "tile_px", f"a tile size in pixels 1-{MAX_CONFIG_INT}, or null"
    if "demo" in config and not isinstance(config["demo"], bool):
        return "demo", "true or false (a JSON boolean, not text)"
    return None


def _meta_shapes(
    arch: str, in_dim: int, hparams: Mapping[str, Any], weights_path: Path
) -> dict[str, torch.Size]:
    """Parameter shapes of the configured model, built on the meta device (no memory), and
    checked against the size of the weights file."""
    with torch.device("meta"):
        module = create_model(arch, in_dim, **hparams)
    shapes = {name: tensor.shape for name, tensor in module.state_dict().items()}
    if weights_path.is_file():
        n_parameters = sum(math.prod(shape) for shape in shapes.values())
        what = str(config_path_for(weights_path))
        try:
            check_weights_fit_config(weights_path, n_parameters, what)
        except CorruptWeightsError as error:
            raise CheckpointError(
                f"{weights_path} is not a readable safetensors file (corrupt or truncated?): "
                f"{error}"
            ) from error
    return shapes


def load_member(path: str | Path, hparams: Mapping[str, Any] | None = None) -> CheckpointMember:
    """Load one checkpoint file on the CPU (with its ``.json`` config when there is one)."""
    path = Path(path)
    config = read_model_config(path)
    expected = None
    if config is not None:
        module_hparams = {**dict(config.get("hparams") or {}), **dict(hparams or {})}
        arch = str(config["architecture"])
        expected = _meta_shapes(arch, int(config["in_dim"]), module_hparams, path)
    state = read_state_dict(path, expected)
    sha256 = sha256_file(path)
    if config is not None:
        expected_sha = config.get("weights_sha256")
        if expected_sha and expected_sha != sha256:
            raise CheckpointError(
                f"{path.name} does not match {config_path_for(path).name} (its sha256 "
                f"{sha256[:12]}… differs from the recorded {str(expected_sha)[:12]}…); the "
                "weights were replaced or damaged"
            )
        arch, in_dim = str(config["architecture"]), int(config["in_dim"])
        module_hparams = {**dict(config.get("hparams") or {}), **dict(hparams or {})}
        module = _build(arch, in_dim, module_hparams, state, path)
        return CheckpointMember(path, sha256, config, module)
    if not _looks_like_chowder(state):
        what = (
            "a .safetensors without its .json config"
            if path.suffix == ".safetensors"
            else ("a bare state dict")
        )
        raise CheckpointError(
            f"{path.name} is {what} that fits no known architecture (only IMILIA-style "
            f"Chowder weights can be read without a config); found: {describe_state_dict(state)}"
        )
    in_dim, chowder_hparams = infer_chowder_hparams(state, hparams)
    module = _build("imilia-chowder", in_dim, chowder_hparams, state, path)
    release = is_imilia_release_shape(in_dim, chowder_hparams)
    config = {
        "name": path.stem,
        "architecture": "imilia-chowder",
        "hparams": module.hparams,
        "in_dim": in_dim,
        **(IMILIA_RELEASE_INPUT if release else {"extractor": None, "mpp": None, "tile_px": None}),
        "demo": False,
        "training": None,
        "source": IMILIA_RELEASE_NOTE if release else "bare Chowder state dict (shape-inferred)",
        "inferred_from_state_dict": True,
    }
    return CheckpointMember(path, sha256, config, module)
