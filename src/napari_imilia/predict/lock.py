"""One writer per results folder: the run lock, and each slide's write lock.

The lock files live in ``OUT/.imilia/``, so the slide folders hold only results and reviews.

- ``.imilia/run.lock`` is held by the one run writing predictions into ``OUT``: a cohort
  (``imilia predict`` on several slides, ``predict_cohort``, Score all) from before it
  decides what to reuse until ``cohort.csv`` is written; one slide (``imilia predict
  SLIDE``, ``predict_slide`` on its own, the napari panel) while its files are switched
  in. A second run waits ``wait_s`` seconds at most (0: not at all), then refuses with
  :class:`FolderBusyError` naming the holder, read from ``.imilia/run.json`` (command,
  process id, host, start).
- ``.imilia/slides/<slide_id>.lock`` is held while a slide's result is staged and switched into
  place, and by the clean-up of staging folders an interrupted run left: clean-up only removes
  a staging folder when nobody holds the slide's lock, so it never removes one being written.

Both are ``flock`` locks (``filelock``): the system releases them when their process ends,
however it ends (``kill -9`` included), so a crashed run never leaves the folder locked.
Lock files are opened without following symbolic links. On a file system without working
locks (see docs/security.md) filelock falls back to marker files.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic

#: The folder of lock files inside a results folder, and its files.
LOCK_FOLDER = ".imilia"
RUN_LOCK_FILE = "run.lock"
RUN_OWNER_FILE = "run.json"
SLIDE_LOCKS = "slides"
#: Seconds a slide's switch waits for another writer of the same slide (a switch takes
#: milliseconds; only a writer that bypassed the run lock can hold it longer).
SLIDE_LOCK_WAIT_S = 60.0
#: The holder's record is read back within this many bytes (it is someone else's file).
OWNER_MAX_BYTES = 4096


class FolderBusyError(ImiliaError):
    """Another run is writing into the results folder."""


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike[str], *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold ``out_dir``'s run lock (see the module docstring) while the block runs.

    Waits at most ``wait_s`` seconds for another run to end, then raises
    :class:`FolderBusyError`. ``ImiliaError`` when the lock file cannot be made (a link or
    a read-only folder: see the message)."""
    out = Path(out_dir)
    locks = lock_folder(out)
    lock = _acquire(locks / RUN_LOCK_FILE, max(float(wait_s), 0.0), out)
    try:
        with contextlib.suppress(OSError):  # only a message for others: never a reason to fail
            write_text_atomic(locks / RUN_OWNER_FILE, json.dumps(_owner()) + "\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            (locks / RUN_OWNER_FILE).unlink(missing_ok=True)
        lock.release()  # the lock file stays: a waiting run holds it open


@contextlib.contextmanager
def file_lock(out_dir: Path, name: str, *, wait_s: float = SLIDE_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the lock ``out_dir/.imilia/<name>.lock`` (e.g. ``cohort`` around the read, merge
    and write of ``cohort.csv``)."""
    lock = _acquire(lock_folder(out_dir) / f"{name}.lock", wait_s, out_dir)
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def slide_write_lock(slide_dir: Path, *, wait_s: float = SLIDE_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the write lock of the slide folder ``slide_dir`` (``OUT/<slide_id>``) while a
    result is staged and switched."""
    lock = _acquire(_slide_lock_path(slide_dir), wait_s, slide_dir)
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def slide_lock_if_free(slide_dir: Path) -> Iterator[bool]:
    """Hold ``slide_dir``'s write lock when nobody does (yields True), else yield False at
    once; False too when the lock cannot be taken at all (no permission, a link)."""
    try:
        lock = FileLock(_slide_lock_path(slide_dir), timeout=0)
        lock.acquire()
    except (Timeout, OSError, ImiliaError):
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def lock_folder(out_dir: Path) -> Path:
    """``out_dir/.imilia`` (made when missing), refused when it is a link or not a folder."""
    folder = out_dir / LOCK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise ImiliaError(
            f"{folder} is not a folder (a link or a file put there); move it away and run again"
        )
    return folder


def _slide_lock_path(slide_dir: Path) -> Path:
    locks = lock_folder(slide_dir.parent) / SLIDE_LOCKS
    locks.mkdir(exist_ok=True)
    return locks / f"{slide_dir.name}.lock"


def _acquire(path: Path, wait_s: float, folder: Path) -> FileLock:
    lock = FileLock(path, timeout=wait_s)
    try:
        lock.acquire()
    except Timeout:
        waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
        if path.name != RUN_LOCK_FILE:
            raise FolderBusyError(
                f"{folder} is being written by another process{waited}; try again later"
            ) from None
        raise FolderBusyError(
            f"{folder} is being written by another run{waited}: {holder(folder)}; wait for it "
            "to end, choose another --out, or pass --wait-for-lock SECONDS to wait for it"
        ) from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ImiliaError(
            f"cannot lock {path} ({reason}); it must be a plain file in a folder you can "
            "write to (see docs/security.md, sharing a results folder)"
        ) from error
    return lock


def _owner() -> dict[str, object]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"
    return {
        "command": command[:300],
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "user": user,
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def holder(folder: Path) -> str:
    """Who holds ``folder``'s run lock, in words, from its owner record (read within
    :data:`OWNER_MAX_BYTES`, plain text only); "holder unknown" when it cannot be read."""
    try:
        path = folder / LOCK_FOLDER / RUN_OWNER_FILE
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "holder unknown"
            raw = os.read(fd, OWNER_MAX_BYTES + 1)
        finally:
            os.close(fd)
        record = json.loads(raw) if len(raw) <= OWNER_MAX_BYTES else None
    except (OSError, ValueError, RecursionError):
        return "holder unknown"
    if not isinstance(record, dict):
        return "holder unknown"

    def text(key: str, limit: int = 120) -> str:
        value = record.get(key)
        shown = "".join(c for c in str(value) if c.isprintable())[:limit]
        return shown if value is not None else "?"

    return (
        f"{text('command')!r}, process {text('pid', 12)} of {text('user', 40)} on "
        f"{text('host', 80)}, since {text('started', 40)}"
    )
