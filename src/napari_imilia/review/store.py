"""Review state of one slide on disk: atomic snapshot plus an fsynced append-only journal,
shared safely by several processes.

- ``review.journal.jsonl``: append-only journal, one fsynced JSON line per change, never
  truncated. Each line carries the whole entry (or the id of a removed one), so replaying
  the journal in file order rebuilds the review; it is the source of truth.
- ``review.json``: snapshot of all entries, rewritten atomically (temporary file, fsync,
  ``os.replace``, fsync of the folder) after every change; it records how many journal bytes
  it reflects, so opening reads only the newer lines.
- ``.review.lock``: a file lock (``filelock``: ``flock`` on POSIX, ``msvcrt`` on Windows)
  held while a process reads the journal's newest lines and appends its own. Several
  processes (two napari windows, two reviewers on a shared folder) can edit one slide: each
  change first takes in the others' journaled edits, then appends, so every accepted edit of
  every process is kept, including those of a process killed mid-burst.

A process killed at any moment loses at most the edit in flight. A ``review.json`` that
cannot be read is moved aside to ``review.json.corrupt-<UTC time>`` (never deleted) and
reported in ``ReviewStore.warnings``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from napari_imilia import __version__
from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic
from napari_imilia.review.entry import EDITABLE_FIELDS, ReviewEntry, utc_now, validate_entry
from napari_imilia.trust.json_limits import ImportLimits, parse_json
from napari_imilia.trust.results import (
    check_lock_file,
    move_aside,
    open_results_file,
    read_results_bytes,
    read_results_json,
    shown,
)

REVIEW_FILE = "review.json"
JOURNAL_FILE = "review.journal.jsonl"
LOCK_FILE = ".review.lock"
SCHEMA_VERSION = 1
LOCK_TIMEOUT_S = 30.0


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReviewStore:
    """Review entries of one slide, autosaved on every change. Create with :meth:`open`."""

    def __init__(self, results_dir: Path, slide_id: str, model_sha256: str | None) -> None:
        self.results_dir = Path(results_dir)
        self.slide_id = str(slide_id)
        self.model_sha256 = model_sha256
        self.warnings: list[str] = []
        self.corrupt_backup: Path | None = None
        self._entries: dict[str, ReviewEntry] = {}
        self._seq = 0
        self._journal_bytes = 0  # journal bytes already applied to ``_entries``
        self._journal_lines = 0  # and how many lines they hold (for messages)

    @property
    def path(self) -> Path:
        return self.results_dir / REVIEW_FILE

    @property
    def journal_path(self) -> Path:
        return self.results_dir / JOURNAL_FILE

    @classmethod
    def open(
        cls, results_dir: str | os.PathLike[str], slide_id: str, *, model_sha256: str | None = None
    ) -> ReviewStore:
        """Load ``results_dir/review.json`` and replay newer journal lines (nothing is created
        until the first change). Problems recovered from are listed in ``store.warnings``."""
        store = cls(Path(results_dir), slide_id, model_sha256)
        with store._locked(create=False) as locked:
            if locked:  # temporary files of a snapshot write cut by a crash
                for stale in store.results_dir.glob(f".{REVIEW_FILE}.*.tmp"):
                    stale.unlink(missing_ok=True)
            snapshot_bytes = store._load_snapshot()
            before = store._state()
            store._read_journal(snapshot_bytes)
            if locked and (store._state() != before or store.corrupt_backup is not None):
                store._write_snapshot()
        for message in store.warnings:
            warnings.warn(message, stacklevel=2)
        return store

    @contextlib.contextmanager
    def _locked(self, *, create: bool = True) -> Iterator[bool]:
        """Hold the slide's review lock; yields False (no lock) when there is nothing to lock
        yet (``create=False`` and no results folder) or the folder is read-only."""
        if not create and not self.results_dir.is_dir():
            yield False
            return
        if create:
            self.results_dir.mkdir(parents=True, exist_ok=True)
        check_lock_file(self.results_dir / LOCK_FILE)
        lock = FileLock(self.results_dir / LOCK_FILE, timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout:
            raise DataError(
                f"the review of slide {self.slide_id!r} in {self.results_dir} is locked by "
                f"another process for more than {LOCK_TIMEOUT_S:.0f} s; try again, or check "
                "that the folder's file system supports file locks"
            ) from None
        except PermissionError:
            if create:
                raise
            yield False  # read-only results: the review can still be read
            return
        except OSError as error:  # a link swapped in, a folder in its place...
            raise DataError(
                f"the review lock {self.results_dir / LOCK_FILE} cannot be taken "
                f"({error.strerror or type(error).__name__}); remove it, it is recreated"
            ) from error
        try:
            yield True
        finally:
            lock.release()

    def _state(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self._entries.values()]

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    def _move_aside(self, reason: str) -> None:
        try:
            self.corrupt_backup = move_aside(self.path)
            kept = f"kept as {self.corrupt_backup.name}"
        except OSError as error:  # a read-only share: the review is only read
            kept = f"left in place ({error.strerror})"
        recovery = (
            f"the review was rebuilt from {JOURNAL_FILE}"
            if os.path.lexists(self.journal_path)
            else f"{JOURNAL_FILE} is missing, so the review starts empty"
        )
        self._warn(f"{self.path} could not be read ({reason}); {kept}; {recovery}")

    def _load_snapshot(self) -> int:
        """Load the snapshot; returns the journal bytes it reflects (0: replay all of it)."""
        if not os.path.lexists(self.path):
            return 0
        try:
            data = read_results_json(self.path, self.results_dir)
            if not isinstance(data, dict) or data.get("format") != "napari-imilia-review":
                raise ValueError("not a napari-imilia review file")
        except (DataError, ValueError, UnicodeDecodeError) as exc:
            self._move_aside(f"{type(exc).__name__}: {exc}")
            return 0
        version = data.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise DataError(
                f"{self.path} was written by a newer napari-imilia (review schema {version} > "
                f"{SCHEMA_VERSION}); update napari-imilia to open it"
            )
        self._check_slide(data.get("slide_id"), self.path)
        try:
            entries = [ReviewEntry.from_dict(e) for e in data["entries"]]
            seq = int(data["journal_seq"])
            journal_bytes = int(data.get("journal_bytes", 0))
        except (DataError, ValueError, KeyError, TypeError) as exc:
            self._move_aside(f"{type(exc).__name__}: {exc}")
            return 0
        self._entries = {e.entry_id: e for e in entries}
        stored_hash = data.get("model_sha256")
        if stored_hash and self.model_sha256 and stored_hash != self.model_sha256:
            self._warn(
                f"{self.path}: these reviews were made with model {stored_hash[:12]}..., not "
                f"the current model {self.model_sha256[:12]}...; tile ranks may differ"
            )
        self.model_sha256 = stored_hash or self.model_sha256
        self._seq = seq
        size = self.journal_path.stat().st_size if self.journal_path.is_file() else 0
        # Snapshots older than the byte count (or a journal replaced since) replay the whole
        # journal: applying every line in file order on top of the snapshot is idempotent.
        return journal_bytes if 0 < journal_bytes <= size and self._ends_line(journal_bytes) else 0

    def _ends_line(self, offset: int) -> bool:
        with open_results_file(self.journal_path, self.results_dir) as handle:
            handle.seek(offset - 1)
            return handle.read(1) == b"\n"

    def _check_slide(self, slide_id: Any, source: Path) -> None:
        if slide_id != self.slide_id:
            raise DataError(
                f"{source} belongs to slide {shown(slide_id)}, not {self.slide_id!r}; open "
                "the results folder of the right slide"
            )

    def _read_journal(self, start: int) -> None:
        """Apply the journal from byte ``start`` on, line by line in file order (every
        process's edits, whatever their sequence numbers)."""
        if not os.path.lexists(self.journal_path):
            return
        limits = ImportLimits.from_env()
        if start > 0 and start != self._journal_bytes:  # line numbers for messages
            head = read_results_bytes(self.journal_path, self.results_dir, limits)[:start]
            self._journal_lines = head.count(b"\n")
        data = read_results_bytes(self.journal_path, self.results_dir, limits, offset=start)
        first_number = (0 if start == 0 else self._journal_lines) + 1
        self._journal_bytes = start + len(data)
        self._journal_lines = first_number - 1 + data.count(b"\n")
        lines = data.split(b"\n")
        for index, line in enumerate(lines):
            number = first_number + index
            if not line.strip():
                continue
            try:
                record = parse_json(line, f"line {number}", limits)
                seq, op = int(record["seq"]), record["op"]
            except (DataError, ValueError, KeyError, TypeError, OverflowError) as exc:
                torn = index == len(lines) - 1  # no newline after it: cut short by a crash
                why = "incomplete last line (the edit in flight at a crash)" if torn else str(exc)
                self._warn(f"{self.journal_path} line {number} skipped: {why}")
                continue
            if op == "header":
                self._check_slide(record.get("slide_id"), self.journal_path)
                continue
            self._seq = max(self._seq, seq)
            try:
                if op == "remove":
                    self._entries.pop(str(record["entry_id"]), None)
                elif op in ("add", "update"):
                    entry = ReviewEntry.from_dict(record["entry"])
                    self._entries[entry.entry_id] = entry
                else:
                    raise DataError(f"unknown operation {op!r}")
            except (DataError, KeyError, TypeError) as exc:
                self._warn(f"{self.journal_path} line {number} skipped: {exc}")

    def sync(self) -> bool:
        """Take in edits other processes journaled since this store last read the journal;
        returns True when the entries changed."""
        try:
            if self.journal_path.stat().st_size == self._journal_bytes:
                return False  # nothing appended since: no lock, no comparison
        except FileNotFoundError:
            return False
        before = self._state()
        with self._locked(create=False):
            self._read_journal(self._journal_bytes)
        return self._state() != before

    def _append_journal(self, record: dict[str, Any]) -> None:
        """Append one record (the lock is held and the journal read to its end)."""
        is_new = not os.path.lexists(self.journal_path)
        with open_results_file(self.journal_path, self.results_dir, append=True) as handle:
            text = ""
            if is_new:
                header = {
                    "seq": 0,
                    "op": "header",
                    "format": "napari-imilia-review-journal",
                    "schema_version": SCHEMA_VERSION,
                    "slide_id": self.slide_id,
                }
                text = json.dumps(header) + "\n"
            elif handle.tell() > 0:
                with open_results_file(self.journal_path, self.results_dir) as reader:
                    reader.seek(-1, os.SEEK_END)
                    if reader.read(1) != b"\n":  # a torn line from a crash: start a new one
                        text = "\n"
            text += json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            data = text.encode("utf-8")
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            self._journal_bytes = handle.tell()
        self._journal_lines += text.count("\n")
        if is_new:
            _fsync_dir(self.results_dir)

    def _write_snapshot(self) -> None:
        data = {
            "format": "napari-imilia-review",
            "schema_version": SCHEMA_VERSION,
            "slide_id": self.slide_id,
            "model_sha256": self.model_sha256,
            "software_version": __version__,
            "journal_seq": self._seq,
            "journal_bytes": self._journal_bytes,
            "entries": self._state(),
        }
        write_text_atomic(self.path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        _fsync_dir(self.results_dir)

    def _commit(self, op: str, entry_id: str, change: Any) -> ReviewEntry:
        """Under the lock: take in other processes' edits, build the entry with ``change``
        (a function of the current entry, or the new entry), journal it, snapshot."""
        with self._locked():
            self._read_journal(self._journal_bytes)
            entry = change(self.get(entry_id)) if callable(change) else change
            record: dict[str, Any] = {"seq": self._seq + 1, "op": op, "utc": utc_now()}
            if op == "remove":
                record["entry_id"] = entry.entry_id
            else:
                record["entry"] = entry.to_dict()
            self._append_journal(record)
            self._seq += 1
            if op == "remove":
                del self._entries[entry.entry_id]
            else:
                self._entries[entry.entry_id] = entry
            self._write_snapshot()
        return entry

    def add(
        self,
        *,
        verdict: str,
        tile_id: str | None = None,
        region: Any = None,
        target_kind: str | None = None,
        reviewer_class: str = "",
        note: str = "",
        reviewer: str = "",
    ) -> ReviewEntry:
        """Add and save a verdict on a tile (``tile_id``) or a drawn ``region`` (level-0 (x, y)
        vertices). ``target_kind`` defaults to 'region' when a region is given, else 'tile'."""
        now = utc_now()
        entry = validate_entry(
            ReviewEntry(
                entry_id=str(uuid.uuid4()),
                target_kind=target_kind or ("region" if region is not None else "tile"),
                tile_id=tile_id,
                region=region,
                verdict=verdict,
                reviewer_class=reviewer_class,
                note=note,
                reviewer=reviewer,
                created_utc=now,
                updated_utc=now,
            )
        )
        return self._commit("add", entry.entry_id, entry)

    def get(self, entry_id: str) -> ReviewEntry:
        try:
            return self._entries[entry_id]
        except KeyError:
            raise DataError(
                f"no review entry {entry_id!r} for slide {self.slide_id!r}; it may have been "
                "removed"
            ) from None

    def update(self, entry_id: str, **changes: Any) -> ReviewEntry:
        """Change fields of an entry (any of ``EDITABLE_FIELDS``) and save it. Fields not
        named keep their newest saved value, whichever process saved it."""
        unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
        if unknown:
            raise DataError(
                f"cannot change {', '.join(unknown)} of a review entry; editable fields: "
                f"{', '.join(EDITABLE_FIELDS)}"
            )
        validate_entry(dataclasses.replace(self.get(entry_id), **changes))

        def changed(entry: ReviewEntry) -> ReviewEntry:
            return validate_entry(dataclasses.replace(entry, **changes, updated_utc=utc_now()))

        return self._commit("update", entry_id, changed)

    def remove(self, entry_id: str) -> ReviewEntry:
        """Delete an entry (saved); returns it."""
        self.get(entry_id)
        return self._commit("remove", entry_id, lambda entry: entry)

    def entries(self) -> list[ReviewEntry]:
        """All entries in the order they were added."""
        return list(self._entries.values())

    def for_tile(self, tile_id: str) -> list[ReviewEntry]:
        """Entries about ``tile_id`` (tile verdicts and regions drawn on it)."""
        return [e for e in self._entries.values() if e.tile_id == str(tile_id)]

    def __len__(self) -> int:
        return len(self._entries)
