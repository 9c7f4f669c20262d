"""Small shared helpers: atomic file writes (strict JSON included) and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The process umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    A crash or exception leaves ``target`` as it was and removes the temporary file. The
    file gets the usual permissions of a new file (0666 less the umask), not mkstemp's 0600.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(target)


def json_text(data: Any, *, indent: int | None = 2, **dumps: Any) -> str:
    """``data`` as strict JSON text (RFC 8259: NaN and ±Infinity refused, ``ValueError``
    naming them), ending in a newline. Every JSON file napari-imilia writes goes through it,
    so every JSON it writes can be read by any JSON reader."""
    try:
        return json.dumps(data, indent=indent, allow_nan=False, **dumps) + "\n"
    except ValueError as error:
        raise ValueError(
            f"refusing to write NaN or an infinite number as JSON ({error})"
        ) from error


def write_json_atomic(
    target: str | os.PathLike[str], data: Any, *, indent: int | None = 2, **dumps: Any
) -> Path:
    """Write ``data`` as strict JSON (:func:`json_text`) to ``target`` atomically."""
    return write_text_atomic(target, json_text(data, indent=indent, **dumps))


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the target path."""
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(target)


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_safetensors(data: bytes) -> bytes:
    """A safetensors file's bytes with its JSON header keys sorted (metadata included).

    safetensors writes its header from a hash map, in no fixed order; sorting it makes equal
    tensors and metadata give byte-identical files (stable sha256 of shipped weights).
    """
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + header_len :]


def write_safetensors_atomic(target: str | os.PathLike[str], data: bytes) -> str:
    """Write the safetensors file ``data`` to ``target`` atomically with its header sorted
    (:func:`canonical_safetensors`); returns the hex SHA-256 of the written bytes."""
    canonical = canonical_safetensors(data)
    write_bytes_atomic(target, canonical)
    return hashlib.sha256(canonical).hexdigest()
