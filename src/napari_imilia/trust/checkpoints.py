"""Checks that keep loading a checkpoint from hanging or allocating more than it should.

A weights file and its JSON config are untrusted input. Before any tensor is allocated:

- :func:`unwrap_nested` follows wrapper dicts (``{"state_dict": {...}}``) at most
  :data:`MAX_NESTING` deep and refuses a dict that contains itself (``torch.save`` accepts
  one and ``weights_only=True`` loads it);
- :func:`safetensors_header` reads a ``.safetensors`` header (at most
  :data:`MAX_HEADER_BYTES`) and checks every declared dtype, shape and byte range against
  the file's size;
- :func:`check_weights_size` refuses a file whose tensors are far larger than the
  architecture they are loaded into (``expected`` shapes, built on the meta device), or
  larger than :data:`MAX_CHECKPOINT_BYTES` when the architecture is not known yet;
- :func:`check_config_numbers` bounds the integers of a config (layer widths, ``in_dim``)
  and refuses NaN/infinite numbers, so a ``model.json`` cannot ask for terabytes.

Every refusal is a :class:`~napari_imilia.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_imilia.errors import CheckpointError

#: Wrapper dicts followed at most this deep (``{"model": {"state_dict": ...}}`` is 2).
MAX_NESTING = 8
#: Largest safetensors JSON header read (bytes); real ones are a few hundred KiB.
MAX_HEADER_BYTES = 64 << 20
#: Largest weights file of an architecture not known before reading (bytes); override
#: with ``IMILIA_MAX_CHECKPOINT_MB``.
MAX_CHECKPOINT_BYTES = 8 << 30
CHECKPOINT_ENV = "IMILIA_MAX_CHECKPOINT_MB"
#: A file may hold this many times the bytes its architecture needs in float32 (extra
#: heads, optimiser-free teacher/student pairs), plus :data:`SIZE_SLACK_BYTES`.
SIZE_FACTOR = 6
SIZE_SLACK_BYTES = 256 << 20
#: Largest integer accepted in a config (a layer width, ``in_dim``, a depth).
MAX_CONFIG_INT = 1 << 16


class CorruptWeightsError(CheckpointError):
    """A weights file's own declarations (header length, tensor shapes and byte ranges)
    contradict its size: truncated, corrupt or forged. Loaders reword it in their style."""


_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def unwrap_nested(obj: Any, keys: Sequence[str], source: str) -> Any:
    """Follow ``obj[key]`` for the first of ``keys`` holding a mapping, while ``obj`` holds no
    tensor itself; cycle-safe and at most :data:`MAX_NESTING` deep."""
    import torch

    seen: set[int] = set()
    for _ in range(MAX_NESTING + 1):
        if not isinstance(obj, Mapping):
            return obj
        if id(obj) in seen:
            raise CheckpointError(
                f"{source}: the checkpoint holds a dict that contains itself; it is not a "
                "state dict. Save model.state_dict() (or convert it to .safetensors)"
            )
        seen.add(id(obj))
        nested = [key for key in keys if isinstance(obj.get(key), Mapping)]
        if not nested or any(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        obj = obj[nested[0]]
    raise CheckpointError(
        f"{source}: state dict wrapped more than {MAX_NESTING} levels deep; save "
        "model.state_dict() itself"
    )


def safetensors_header(path: str | os.PathLike[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{name: (dtype, shape)}`` declared by a safetensors file, checked against its size
    (header length, dtypes, shapes, byte ranges inside the file and matching the shapes)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CorruptWeightsError(f"{path} is too short to be a safetensors file")
        header_len = int.from_bytes(prefix, "little")
        if header_len > min(MAX_HEADER_BYTES, size - 8):
            raise CorruptWeightsError(
                f"{path}: safetensors header of {header_len} bytes does not fit the "
                f"{size}-byte file (limit {MAX_HEADER_BYTES} bytes); corrupt or not safetensors"
            )
        raw = handle.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CorruptWeightsError(f"{path}: unreadable safetensors header ({error})") from error
    if not isinstance(header, dict):
        raise CorruptWeightsError(f"{path}: safetensors header is not a JSON object")
    data_bytes = size - 8 - header_len
    specs = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        specs[name] = _tensor_spec(path, name, entry, data_bytes)
    return specs


def _tensor_spec(path: Path, name: str, entry: Any, data_bytes: int) -> tuple[str, tuple[int, ...]]:
    bad = CorruptWeightsError(f"{path}: tensor {name!r} has a malformed or oversized declaration")
    if not isinstance(entry, dict):
        raise bad
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPE_BYTES or not isinstance(shape, list) or not isinstance(offsets, list):
        raise bad
    if len(shape) > 8 or len(offsets) != 2:
        raise bad
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape + offsets):
        raise bad
    begin, end = offsets
    nbytes = math.prod(shape) * _DTYPE_BYTES[dtype]
    if not begin <= end <= data_bytes or end - begin != nbytes:
        raise CorruptWeightsError(
            f"{path}: tensor {name!r} declares shape {shape} ({nbytes} bytes) at bytes "
            f"{begin}-{end} of a {data_bytes}-byte data section; the file is corrupt or lies"
        )
    return dtype, tuple(shape)


def max_checkpoint_bytes() -> int:
    """:data:`MAX_CHECKPOINT_BYTES`, or ``$IMILIA_MAX_CHECKPOINT_MB`` MiB."""
    text = os.environ.get(CHECKPOINT_ENV, "").strip()
    if not text:
        return MAX_CHECKPOINT_BYTES
    try:
        return int(float(text) * (1 << 20))
    except ValueError as error:
        raise CheckpointError(f"{CHECKPOINT_ENV}={text!r} is not a number") from error


def declared_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes of tensor data a weights file can produce: the sum of a safetensors file's
    declared tensors (header checked), else the file's size (a torch zip stores them raw)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return sum(
            math.prod(shape) * _DTYPE_BYTES[dtype]
            for dtype, shape in safetensors_header(path).values()
        )
    return path.stat().st_size


def check_weights_size(
    path: str | os.PathLike[str], expected: Mapping[str, Sequence[int]] | None, what: str
) -> None:
    """Refuse ``path`` before reading it when its tensors are far larger than the
    ``expected`` shapes need in float32 (see the module docstring), or larger than
    :func:`max_checkpoint_bytes` when ``expected`` is None."""
    path = Path(path)
    found = declared_bytes(path)
    if expected is None:
        limit = max_checkpoint_bytes()
        reason = f"the limit for a checkpoint of unknown size ({CHECKPOINT_ENV} raises it)"
    else:
        needed = 4 * sum(math.prod(tuple(shape)) for shape in expected.values())
        limit = SIZE_FACTOR * needed + SIZE_SLACK_BYTES
        reason = f"{what} needs {needed / 1e6:.1f} MB"
    if found > limit:
        raise CheckpointError(
            f"{path} holds {found / 1e6:.1f} MB of tensors, far more than {reason}; it is "
            "not the checkpoint of this model (or it is corrupt)"
        )


def check_weights_fit_config(path: Path, n_parameters: int, what: str) -> None:
    """Refuse a config that declares far more parameters than ``path`` can hold."""
    found = declared_bytes(path)
    needed = n_parameters * 2  # the smallest float type a checkpoint may use (16 bits)
    if needed > SIZE_FACTOR * found + SIZE_SLACK_BYTES:
        raise CheckpointError(
            f"{what} declares {n_parameters:,} parameters ({needed / 1e9:.3g} GB at least) but "
            f"{path.name} holds only {found / 1e6:.1f} MB; the config does not belong to "
            "these weights"
        )


def check_config_numbers(value: Any, where: str, *, depth: int = 0) -> None:
    """``CheckpointError`` for an integer over :data:`MAX_CONFIG_INT` (in absolute value), a
    NaN or infinite number, or nesting deeper than :data:`MAX_NESTING`, anywhere in ``value``."""
    if depth > MAX_NESTING:
        raise CheckpointError(f"{where}: nested more than {MAX_NESTING} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_CONFIG_INT:
            raise CheckpointError(
                f"{where} is {value}, over the limit of {MAX_CONFIG_INT}; the config is corrupt"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{where} is {value}; a config needs finite numbers")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_config_numbers(item, f"{where}.{key}", depth=depth + 1)
        return
    if isinstance(value, list | tuple):
        if len(value) > MAX_CONFIG_INT:
            raise CheckpointError(f"{where} lists {len(value)} values; the config is corrupt")
        for i, item in enumerate(value):
            check_config_numbers(item, f"{where}[{i}]", depth=depth + 1)
