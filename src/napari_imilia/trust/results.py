"""The results folder is untrusted input: the one gate every file read back from it passes.

A results folder is shared (a network folder, a copied study), so what it holds was written
by someone else: a co-reviewer, another machine, or a hostile hand. Before anything in it is
read, appended to or locked:

- :func:`results_path` joins names (slide ids) to the results root and refuses a path that
  leaves it, on the names (``..``, absolute parts, separators) *and* on the disk (a slide
  folder that is a symbolic link leading out of the root);
- :func:`open_results_file` opens a file only when its real location (symbolic links
  followed) lies inside the given root and it is a regular file: no link out of the root, no
  FIFO (opened without blocking, so it cannot hang), no device (``/dev/zero``), no folder;
- :func:`read_results_json` reads a JSON file so opened within the import limits of
  :mod:`napari_imilia.trust.json_limits` (size, nesting, integer digits), so a file nested
  200,000 deep is a one-line error, not a ``RecursionError``;
- :func:`check_lock_file` refuses a lock file that is a link or not a regular file.

Every refusal is a :class:`~napari_imilia.errors.DataError` naming the file; callers turn it
into a slide in error, a moved-aside file or a one-line message, never a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.trust.json_limits import ImportLimits, parse_json
from napari_imilia.trust.paths import path_inside

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as error:  # a link loop
        raise DataError(f"{path}: cannot be resolved ({error})") from error


def results_path(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/part/...``, refused (``DataError``) when it leaves ``root``: by its names
    (:func:`~napari_imilia.trust.paths.path_inside`), or on the disk through a symbolic link
    (then the real location must lie inside the real root)."""
    root = Path(root)
    if all(_plain_name(part) for part in parts):  # one folder name each: no climbing out
        candidate = root.joinpath(*parts)
    else:
        try:
            candidate = path_inside(root, *parts)
        except ImiliaError as error:
            raise DataError(
                f"refusing {os.path.join(*parts)!r}: it names a place outside the results "
                f"folder {root}; the results folder was edited by hand or is hostile"
            ) from error
        root = root.expanduser().resolve()
    _openable(candidate, root)
    return candidate


def _plain_name(part: str) -> bool:
    separators = (os.sep, os.altsep or os.sep)
    return bool(part) and part not in (".", "..") and not any(s in part for s in separators)


def _openable(path: Path, root: Path) -> Path:
    """The path to open for ``path``: itself when it lies in ``root`` by its names and no
    component below ``root`` is a symbolic link (one ``lstat`` each, the usual case), else
    its real location, refused (``DataError``) when outside ``root``'s."""
    try:
        below = path.relative_to(root).parts
    except ValueError:
        below = ("..",)
    if below and ".." not in below:
        prefixes = [root.joinpath(*below[: i + 1]) for i in range(len(below))]
        if not any(os.path.islink(prefix) for prefix in prefixes):
            return path
    return _check_inside(path, root)


def _check_inside(path: Path, root: Path) -> Path:
    """The real location of ``path`` (links followed), refused when outside ``root``'s."""
    real, real_root = _real(path), _real(root)
    if real != real_root and not real.is_relative_to(real_root):
        raise DataError(
            f"{path} leads through a symbolic link to {real}, outside the results folder "
            f"{real_root}; refusing to read or write through it (remove the link)"
        )
    return real


def open_results_file(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None, *, append: bool = False
) -> IO[bytes]:
    """``path`` opened for binary reading (or appending, created when absent), only when it
    is a regular file whose real location lies inside ``root`` (see the module docstring;
    ``root`` None: anywhere, for files the user chose such as a model's ``model.json``).
    Never blocks on a FIFO; ``DataError`` for anything else."""
    path = Path(path)
    real = _real(path) if root is None else _openable(path, Path(root))
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT) if append else os.O_RDONLY
    flags |= _NONBLOCK | _NOFOLLOW | _CLOEXEC | _NOCTTY | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(real, flags, 0o666)
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise DataError(f"{path}: no such file") from error
        reason = error.strerror or type(error).__name__
        raise DataError(f"{path} cannot be opened ({reason}); it is not a regular file") from error
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # O_NONBLOCK changes nothing for a regular file's I/O
            raise DataError(f"{path} is {_kind(mode)}, not a regular file; refusing to use it")
        return os.fdopen(fd, "ab" if append else "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def read_results_bytes(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None,
    limits: ImportLimits | None = None,
    *,
    offset: int = 0,
) -> bytes:
    """The bytes of ``path`` from ``offset`` on, opened by :func:`open_results_file`; refused
    past ``limits.max_bytes`` (the import limit, ``IMILIA_IMPORT_MAX_MB``)."""
    limits = limits or ImportLimits.from_env()
    with open_results_file(path, root) as handle:
        expected = max(os.fstat(handle.fileno()).st_size - offset, 0)
        if offset:
            handle.seek(offset)
        data = handle.read(min(expected, limits.max_bytes) + 1)
        while expected < len(data) <= limits.max_bytes:  # it grew since: read on, capped
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            data += chunk
    if len(data) > limits.max_bytes:
        raise DataError(
            f"{path}: more than {limits.max_bytes >> 20} MiB, over the import limit "
            "(IMILIA_IMPORT_MAX_MB raises it; see docs/security.md)"
        )
    return data


def read_results_json(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None,
    limits: ImportLimits | None = None,
) -> Any:
    """The parsed JSON of a results-folder file (``slide.json``, ``review.json``,
    ``slide_grade.json``, ``cohort_review.json``...): :func:`open_results_file`'s checks,
    then the import limits (size, nesting, integer digits). ``DataError`` for anything else."""
    limits = limits or ImportLimits.from_env()
    return parse_json(read_results_bytes(path, root, limits), str(path), limits)


def check_lock_file(path: str | os.PathLike[str]) -> None:
    """``DataError`` when a lock file exists but is a symbolic link or not a regular file
    (locking it would follow the link, or fail with a bare ``OSError``)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise DataError(f"lock file {path} cannot be checked ({error.strerror})") from error
    if stat.S_ISLNK(mode):
        raise DataError(
            f"lock file {path} is a symbolic link; refusing to lock through it (remove it, "
            "it is recreated)"
        )
    if not stat.S_ISREG(mode):
        raise DataError(f"lock file {path} is {_kind(mode)}; remove it, it is recreated")


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line messages about text read
    from a results folder (which may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename a damaged or refused results file (a link or a FIFO itself, not what it points
    at) to ``<name>.corrupt-<UTC time>[-n]`` beside it, never over an earlier one; returns
    the new path (``OSError`` when the folder is read-only)."""
    from datetime import UTC, datetime

    path = Path(path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while os.path.lexists(backup):
        backup, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    os.replace(path, backup)
    return backup
