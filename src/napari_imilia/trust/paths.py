"""Names and paths built from untrusted file names, kept safe before they touch the disk.

A slide's file name becomes its ``slide_id`` and so a folder (``OUT/<slide_id>/``) and file
names (``<slide_id>.h5``, ``<slide_id>.tiles.geojson``...). :func:`safe_name` turns any name
into one folder-name component: no path separator, no control character, never ``.`` or
``..`` nor a leading dot, at most :data:`MAX_NAME_BYTES` UTF-8 bytes. A name that had to be
changed gets a short hash of the original (``-<8 hex>``), so two different names never end up
the same. :func:`path_inside` joins such components to a root and refuses any result outside
it; :func:`check_writable_folder` probes an output folder before any work is done.
:func:`absolute_path` is the one place a path a user typed becomes absolute (``~`` expanded).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path

from napari_imilia.errors import ImiliaError

#: Longest name (UTF-8 bytes) :func:`safe_name` returns; leaves room for the suffixes the
#: project adds (``.review.geojson.zip``...) under the usual 255-byte file-name limit.
MAX_NAME_BYTES = 100
#: Characters never kept in a name: separators and what Windows / SMB shares refuse.
UNSAFE_CHARACTERS = frozenset('/\\:*?"<>|')
#: Device names Windows reserves whatever their extension.
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
#: Used when nothing usable is left of a name (e.g. ``...``).
FALLBACK_NAME = "slide"
_HASH_HEX = 8


def name_hash(name: str) -> str:
    """Short hex digest of ``name`` (the suffix :func:`safe_name` adds)."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:_HASH_HEX]


def _clean_character(char: str) -> str:
    if char in UNSAFE_CHARACTERS or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return "_"
    return char


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def safe_name(name: str, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` as one safe path component (see the module docstring).

    Clean names come back unchanged (``CMU-1`` stays ``CMU-1``); anything else is cleaned
    and gets ``-<8 hex of sha256(name)>``, so the result is unique per original name.
    """
    if max_bytes < 2 * _HASH_HEX:
        raise ValueError(f"max_bytes must be at least {2 * _HASH_HEX}, got {max_bytes}")
    cleaned = "".join(_clean_character(c) for c in name).strip(" ").lstrip(".").rstrip(". ")
    changed = not cleaned or cleaned != name or cleaned.split(".")[0].upper() in WINDOWS_RESERVED
    if len(cleaned.encode("utf-8", "surrogatepass")) > max_bytes:
        changed = True
    if not changed:
        return cleaned
    stem = _truncate_utf8(cleaned, max_bytes - _HASH_HEX - 1).rstrip(". ") or FALLBACK_NAME
    return f"{stem}-{name_hash(name)}"


def absolute_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as the user gave it, ``~`` expanded and made absolute against this process's
    folder. Symbolic links are kept (not resolved): a link's own name is what the user chose
    (the slide id comes from it), and dask workers may mount the same storage under the same
    link."""
    return Path(os.path.abspath(Path(path).expanduser()))


def path_inside(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/part/...``, refused with ``ImiliaError`` when it would lie outside ``root``.

    ``root`` is resolved (symbolic links the user made above or at it are followed); the
    parts are joined and normalised without following links, so ``..``, absolute parts and
    separators hidden in a name cannot climb out of ``root`` (links the user placed inside
    ``root`` are trusted).
    """
    base = Path(root).expanduser().resolve()
    candidate = Path(os.path.normpath(base.joinpath(*parts)))
    if (parts and candidate == base) or not candidate.is_relative_to(base):
        shown = os.path.join(*parts) if parts else ""
        raise ImiliaError(
            f"refusing to write {shown!r}: it would land outside the output folder {base}; "
            "rename the input file"
        )
    return candidate


def check_writable_folder(folder: str | os.PathLike[str], *, what: str = "output folder") -> None:
    """Raise ``ImiliaError`` unless files can be created in ``folder`` (or, when it does not
    exist yet, in its nearest existing parent, where it would be created). Writes and removes
    one empty temporary file; creates nothing else."""
    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ImiliaError(f"{what} {folder}: {probe} is a file, not a folder; give a folder")
    try:
        with tempfile.TemporaryFile(prefix=".imilia-write-check-", dir=probe):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ImiliaError(
            f"cannot write into the {what} {folder} ({reason} in {probe}); choose a folder "
            "you can write to, or ask for write access"
        ) from error
