"""Every reader's slide grades, each reader in their own append-only journal (no Qt).

A *read* (:class:`GradeRead`) is one grade a reader committed for a slide: the grade
(Nancy, activity, agreement with the model, note, item grades), the reader, the phase
(``pre-AI``: the model's output was hidden when it was given; ``post-AI``: it was shown), the
study it belongs to and its time stamps. Reads live in the slide's results folder::

    <results_root>/<slide_id>/grades/<reader key>.jsonl

one file per reader, one fsynced JSON line per read, appended and never rewritten, so every
read is kept and the latest is shown. A reader writes only their own file, so two readers
grading the same slide at the same time on a network folder lose nothing and need no file
lock; one reader's several windows append whole lines (``O_APPEND``, one ``write``).
A line cut short by a crash is skipped with a warning; a line in a reader's file that names
another reader, or another slide, is skipped too.

Grades saved before reads existed, ``slide_grade.json`` (one per slide, last writer wins),
are read as one read of the reader they name (phase ``post-AI``: the grade form always showed
the model), ``legacy`` true; they are never rewritten.

Files are read and appended through the results-folder gate (:mod:`napari_imilia.trust.results`:
regular files inside the slide's folder, no link out, no FIFO, size-capped) and parsed within
:mod:`napari_imilia.trust.json_limits`' limits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_imilia.errors import DataError
from napari_imilia.review.entry import utc_now
from napari_imilia.review.grade import SlideGrade, load_slide_grade, validate_grade
from napari_imilia.trust.json_limits import ImportLimits, parse_json
from napari_imilia.trust.paths import name_hash, safe_name
from napari_imilia.trust.results import open_results_file, read_results_bytes

READS_DIR = "grades"
READ_SUFFIX = ".jsonl"
READ_FORMAT = "napari-imilia-grade-read"
READ_SCHEMA_VERSION = 1
#: ``pre-AI``: given while the model's output was hidden; ``post-AI``: with it shown.
PRE_AI, POST_AI = "pre-AI", "post-AI"
PHASES: tuple[str, ...] = (PRE_AI, POST_AI)
#: Largest reader journal read (bytes); thousands of reads of one slide fit in far less.
MAX_READS_BYTES = 8 << 20


def reader_key(reader: str) -> str:
    """The file-name stem of ``reader``'s files: a safe short form of the name plus a hash
    of the exact name, so two names never share a file."""
    return f"{safe_name(reader or 'unnamed', max_bytes=40)}-{name_hash(reader)}"


@dataclass(frozen=True)
class GradeRead:
    """One committed grade: ``grade`` by ``reader`` for ``slide_id`` in ``phase``
    (:data:`PHASES`), within ``study_id`` ('' outside a study). ``utc``: when it was
    committed; ``started_utc``: when the reader opened the slide ('' if unknown);
    ``legacy``: read from a ``slide_grade.json`` of before reads existed."""

    slide_id: str
    reader: str
    phase: str
    grade: SlideGrade
    study_id: str = ""
    read_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    utc: str = ""
    started_utc: str = ""
    legacy: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["grade"] = self.grade.to_dict()
        data.pop("legacy")
        return data

    @classmethod
    def from_dict(cls, data: Any) -> GradeRead:
        """A checked read from :meth:`to_dict`'s dict; ``DataError`` when anything is off."""
        if not isinstance(data, dict):
            raise DataError(f"a read must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"legacy"}
        unknown, missing = sorted(set(data) - names), {"slide_id", "reader", "phase"} - set(data)
        if unknown or missing:
            raise DataError(f"read has unknown or missing fields {unknown + sorted(missing)}")
        texts = {k: data.get(k, "") for k in names - {"grade"}}
        if not all(isinstance(v, str) for v in texts.values()):
            raise DataError("read fields other than the grade must be text")
        if data["phase"] not in PHASES:
            raise DataError(f"read phase must be one of {PHASES}, got {data['phase']!r}")
        grade = SlideGrade.from_dict(data.get("grade"))
        return cls(grade=grade, **texts)


def _checked(read: GradeRead) -> GradeRead:
    if read.phase not in PHASES:
        raise DataError(f"read phase must be one of {', '.join(PHASES)}, got {read.phase!r}")
    if not read.slide_id:
        raise DataError("a read needs the slide id")
    grade = dataclasses.replace(validate_grade(read.grade), reviewer=read.reader)
    return dataclasses.replace(read, grade=grade)


def append_read(slide_dir: str | os.PathLike[str], read: GradeRead) -> GradeRead:
    """Append ``read`` (checked, stamped now) to its reader's journal in ``slide_dir``;
    returns it as saved. Only ``read.reader``'s own file is touched."""
    now = utc_now()
    checked = _checked(read)
    saved = dataclasses.replace(
        checked, utc=now, grade=dataclasses.replace(checked.grade, updated_utc=now)
    )
    folder = Path(slide_dir) / READS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (reader_key(saved.reader) + READ_SUFFIX)
    line = {"format": READ_FORMAT, "schema_version": READ_SCHEMA_VERSION, "read": saved.to_dict()}
    data = (json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    is_new = not path.exists()
    try:  # a regular file inside the slide's folder only (no link out, FIFO, device)
        with open_results_file(path, slide_dir, append=True) as journal:
            if os.fstat(journal.fileno()).st_size > 0 and _last_byte(path) != b"\n":
                data = b"\n" + data  # a line torn by a crash: start a new one
            journal.write(data)
            journal.flush()
            os.fsync(journal.fileno())
    except OSError as error:  # no permission, disk full or gone
        raise DataError(
            f"{path} cannot be written ({error.strerror or error}); the grade was not saved"
        ) from error
    if is_new:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return saved


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _parse_line(line: bytes, source: str) -> GradeRead:
    record = parse_json(line, source)
    if not isinstance(record, dict) or record.get("format") != READ_FORMAT:
        raise DataError("not a napari-imilia grade read")
    version = record.get("schema_version")
    if isinstance(version, int) and version > READ_SCHEMA_VERSION:
        raise DataError(f"written by a newer napari-imilia (read schema {version})")
    return GradeRead.from_dict(record.get("read"))


def read_journal(path: Path, slide_id: str, warnings: list[str]) -> list[GradeRead]:
    """The reads in one reader journal, in file order; lines that cannot be used (torn by a
    crash, of another slide, naming a reader whose file this is not) are listed in
    ``warnings`` and skipped."""
    try:
        limits = ImportLimits.from_env(max_bytes=MAX_READS_BYTES)
        raw = read_results_bytes(path, path.parent.parent, limits)
    except DataError as error:
        warnings.append(str(error))
        return []
    reads: list[GradeRead] = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            read = _parse_line(line, f"{path} line {number}")
            if read.slide_id != slide_id:
                raise DataError(f"it is a read of slide {read.slide_id!r}, not {slide_id!r}")
            if reader_key(read.reader) != path.name[: -len(READ_SUFFIX)]:
                raise DataError(f"reader {read.reader!r} does not own this file")
        except DataError as error:
            torn = number == len(lines)  # no newline after it: the write in flight at a crash
            why = "incomplete last line (cut short by a crash)" if torn else str(error)
            warnings.append(f"{path} line {number} skipped: {why}")
            continue
        reads.append(read)
    return reads


@dataclass
class SlideReads:
    """All reads of one slide by every reader, oldest first, and what could not be read."""

    slide_id: str
    reads: list[GradeRead] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def of(self, reader: str | None = None, phase: str | None = None) -> list[GradeRead]:
        """Reads by ``reader`` (None: anyone) in ``phase`` (None: either), oldest first."""
        return [
            r
            for r in self.reads
            if (reader is None or r.reader == reader) and (phase is None or r.phase == phase)
        ]

    def latest(self, reader: str | None = None, phase: str | None = None) -> GradeRead | None:
        """The newest matching read (see :meth:`of`), or None."""
        matching = self.of(reader, phase)
        return matching[-1] if matching else None

    def first_opinion(self, reader: str) -> GradeRead | None:
        """``reader``'s opinion before the model was shown when there is one (their latest
        pre-AI read), else their latest read."""
        return self.latest(reader, PRE_AI) or self.latest(reader)

    def readers(self) -> list[str]:
        """Every reader with a read of this slide, in order of their first read."""
        return list(dict.fromkeys(r.reader for r in self.reads))


def _utc_key(read: GradeRead) -> tuple[str, int]:
    return (read.utc, 0 if read.legacy else 1)


def load_slide_reads(
    slide_dir: str | os.PathLike[str],
    slide_id: str,
    *,
    legacy: SlideGrade | None = None,
    reader: str | None = None,
) -> SlideReads:
    """Every read of ``slide_id`` in ``slide_dir`` (only ``reader``'s own when given), plus
    the legacy ``slide_grade.json`` and ``legacy`` (the copy an old cohort file kept; the
    newer of the two counts), sorted by commit time."""
    slide_dir = Path(slide_dir)
    result = SlideReads(slide_id)
    folder = slide_dir / READS_DIR
    if reader is not None:
        paths = [folder / (reader_key(reader) + READ_SUFFIX)]
    else:
        paths = sorted(folder.glob("*" + READ_SUFFIX)) if folder.is_dir() else []
    for path in paths:
        if path.is_symlink() or path.exists():
            result.reads += read_journal(path, slide_id, result.warnings)
    old = _legacy_grade(slide_dir, slide_id, legacy, result.warnings)
    if old is not None and (reader is None or old.reviewer == reader):
        result.reads.append(
            GradeRead(
                slide_id=slide_id,
                reader=old.reviewer,
                phase=POST_AI,
                grade=old,
                read_id=f"legacy-{name_hash(slide_id)}",
                utc=old.updated_utc,
                legacy=True,
            )
        )
    result.reads.sort(key=_utc_key)
    return result


def _legacy_grade(
    slide_dir: Path, slide_id: str, copy: SlideGrade | None, warnings: list[str]
) -> SlideGrade | None:
    saved: SlideGrade | None = None
    try:
        saved = load_slide_grade(slide_dir, slide_id) if slide_dir.is_dir() else None
    except DataError as error:
        warnings.append(str(error))
    candidates = [g for g in (saved, copy) if g is not None and not g.is_blank]
    return max(candidates, key=lambda g: g.updated_utc) if candidates else None


def latest_grade(slide_dir: str | os.PathLike[str], slide_id: str) -> SlideGrade | None:
    """The newest grade of ``slide_id`` by any reader (legacy file included), or None."""
    read = load_slide_reads(slide_dir, slide_id).latest()
    return None if read is None else dataclasses.replace(read.grade, updated_utc=read.utc)
