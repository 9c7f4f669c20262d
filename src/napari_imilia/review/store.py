"""Review state of one slide on disk: atomic snapshot plus an fsynced append-only journal.

- ``review.json``: snapshot of all entries, rewritten atomically (temporary file, fsync,
  ``os.replace``, fsync of the folder) after every change;
- ``review.journal.jsonl``: append-only journal, one fsynced JSON line per change, never
  truncated. Each line carries a sequence number and the whole entry, so on open the lines
  newer than the snapshot are replayed, and a lost or corrupt snapshot is rebuilt from it.

A process killed at any moment loses at most the edit in flight. A ``review.json`` that
cannot be read is moved aside to ``review.json.corrupt-<UTC time>`` (never deleted) and
reported in ``ReviewStore.warnings``. One process edits a slide's review at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from napari_imilia import __version__
from napari_imilia._utils import write_text_atomic
from napari_imilia.errors import DataError
from napari_imilia.review.entry import EDITABLE_FIELDS, ReviewEntry, utc_now, validate_entry

REVIEW_FILE = "review.json"
JOURNAL_FILE = "review.journal.jsonl"
SCHEMA_VERSION = 1


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
        if store.results_dir.is_dir():  # temporary files of a snapshot write cut by a crash
            for stale in store.results_dir.glob(f".{REVIEW_FILE}.*.tmp"):
                stale.unlink(missing_ok=True)
        snapshot_seq = store._load_snapshot()
        replayed = store._replay_journal(snapshot_seq)
        if replayed or store.corrupt_backup is not None:
            store._write_snapshot()
        for message in store.warnings:
            warnings.warn(message, stacklevel=2)
        return store

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    def _move_aside(self, reason: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = self.path.with_name(f"{REVIEW_FILE}.corrupt-{stamp}")
        n = 1
        while backup.exists():
            backup, n = self.path.with_name(f"{REVIEW_FILE}.corrupt-{stamp}-{n}"), n + 1
        os.replace(self.path, backup)
        self.corrupt_backup = backup
        recovery = (
            f"the review was rebuilt from {JOURNAL_FILE}"
            if self.journal_path.exists()
            else f"{JOURNAL_FILE} is missing, so the review starts empty"
        )
        self._warn(f"{self.path} could not be read ({reason}); kept as {backup.name}; {recovery}")

    def _load_snapshot(self) -> int:
        if not self.path.exists():
            return 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != "napari-imilia-review":
                raise ValueError("not a napari-imilia review file")
        except (ValueError, UnicodeDecodeError) as exc:
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
        return seq

    def _check_slide(self, slide_id: Any, source: Path) -> None:
        if slide_id != self.slide_id:
            raise DataError(
                f"{source} belongs to slide {slide_id!r}, not {self.slide_id!r}; open the "
                "results folder of the right slide"
            )

    def _replay_journal(self, snapshot_seq: int) -> int:
        if not self.journal_path.exists():
            return 0
        replayed = 0
        lines = self.journal_path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
                seq, op = int(record["seq"]), record["op"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                torn = number == len(lines)  # no newline after it: cut short by a crash
                why = "incomplete last line (the edit in flight at a crash)" if torn else repr(exc)
                self._warn(f"{self.journal_path} line {number} skipped: {why}")
                continue
            if op == "header":
                self._check_slide(record.get("slide_id"), self.journal_path)
                continue
            self._seq = max(self._seq, seq)
            if seq <= snapshot_seq:
                continue
            try:
                if op == "remove":
                    self._entries.pop(str(record["entry_id"]), None)
                elif op in ("add", "update"):
                    entry = ReviewEntry.from_dict(record["entry"])
                    self._entries[entry.entry_id] = entry
                else:
                    raise DataError(f"unknown operation {op!r}")
            except (DataError, KeyError) as exc:
                self._warn(f"{self.journal_path} line {number} skipped: {exc}")
                continue
            replayed += 1
        return replayed

    def _append_journal(self, record: dict[str, Any]) -> None:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        is_new = not self.journal_path.exists()
        with open(self.journal_path, "ab") as handle:
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
                with open(self.journal_path, "rb") as reader:
                    reader.seek(-1, os.SEEK_END)
                    if reader.read(1) != b"\n":  # a torn line from a crash: start a new one
                        text = "\n"
            text += json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
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
            "entries": [e.to_dict() for e in self._entries.values()],
        }
        write_text_atomic(self.path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        _fsync_dir(self.results_dir)

    def _commit(self, op: str, entry: ReviewEntry) -> None:
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
        self._commit("add", entry)
        return entry

    def get(self, entry_id: str) -> ReviewEntry:
        try:
            return self._entries[entry_id]
        except KeyError:
            raise DataError(
                f"no review entry {entry_id!r} for slide {self.slide_id!r}; it may have been "
                "removed"
            ) from None

    def update(self, entry_id: str, **changes: Any) -> ReviewEntry:
        """Change fields of an entry (any of ``EDITABLE_FIELDS``) and save it."""
        entry = self.get(entry_id)
        unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
        if unknown:
            raise DataError(
                f"cannot change {', '.join(unknown)} of a review entry; editable fields: "
                f"{', '.join(EDITABLE_FIELDS)}"
            )
        updated = validate_entry(dataclasses.replace(entry, **changes, updated_utc=utc_now()))
        self._commit("update", updated)
        return updated

    def remove(self, entry_id: str) -> ReviewEntry:
        """Delete an entry (saved); returns it."""
        entry = self.get(entry_id)
        self._commit("remove", entry)
        return entry

    def entries(self) -> list[ReviewEntry]:
        """All entries in the order they were added."""
        return list(self._entries.values())

    def for_tile(self, tile_id: str) -> list[ReviewEntry]:
        """Entries about ``tile_id`` (tile verdicts and regions drawn on it)."""
        return [e for e in self._entries.values() if e.tile_id == str(tile_id)]

    def __len__(self) -> int:
        return len(self._entries)
