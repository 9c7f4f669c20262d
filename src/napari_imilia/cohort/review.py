"""``Cohort``: a list of slides with their scores, review status and grades (no Qt).

A cohort lives in a results folder (``results_root``, one ``<slide_id>/`` subfolder per slide
as ``imilia predict`` writes) and persists as ``results_root/cohort_review.json``, written
atomically after every change: the slide list, each slide's CSV labels, when it was opened for
review, its grade and its last scoring error. Scores and tile counts are read from the
slides' cached results (``<slide_id>/slide.json``), grades also from each slide's
``slide_grade.json`` (the newer copy wins), so the file and the results never disagree for
long and no grade is lost when one of them is damaged.

Status of a slide, first match: ``error`` (file missing or unreadable, slide id used by an
earlier slide, or its scoring failed: ``error`` says why), ``reviewed`` (graded), ``in
review`` (opened for review, or has tile reviews), ``scored``, ``not scored``.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from psygnal import Signal

from napari_imilia.cohort.item import (
    CohortItem,
    item_from_record,
    read_slide_json,
    unreadable_reason,
)
from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic
from napari_imilia.predict.colour_scale import RANGES_KEY
from napari_imilia.review.entry import utc_now
from napari_imilia.review.grade import GRADE_FILE, SlideGrade, load_slide_grade, save_slide_grade
from napari_imilia.slide.discover import FoundSlide, discover_slides
from napari_imilia.trust.paths import absolute_path

COHORT_FILE = "cohort_review.json"
COHORT_FORMAT = "napari-imilia-cohort"
COHORT_SCHEMA_VERSION = 1
STATUSES: tuple[str, ...] = ("not scored", "scored", "in review", "reviewed", "error")
#: Columns of :meth:`Cohort.table`.
TABLE_COLUMNS: tuple[str, ...] = (
    "slide_id",
    "score",
    "n_tiles",
    "status",
    "nancy",
    "activity",
    "model_agreement",
    "reviewer",
    "note",
    "error",
    "path",
)


class CohortFileError(DataError):
    """The cohort file cannot be read; it was moved aside (``backup``), never overwritten."""

    def __init__(self, message: str, backup: Path | None = None) -> None:
        super().__init__(message)
        self.backup = backup


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup, n = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while backup.exists():
        backup, n = path.with_name(f"{path.name}.corrupt-{stamp}-{n}"), n + 1
    os.replace(path, backup)
    return backup


class Cohort:
    """The slides of a study and their review; see the module docstring.

    Create with :meth:`build` (from a folder, glob, CSV or results folder) or :meth:`open`
    (the saved ``cohort_review.json``). Signals: ``item_changed(index)``,
    ``current_changed(index)``. Methods are thread-safe (scoring updates from a worker).
    """

    item_changed = Signal(int)
    current_changed = Signal(int)

    def __init__(self, results_root: str | os.PathLike[str], items: list[CohortItem]) -> None:
        self.results_root = Path(results_root)
        self.items = items
        self.source = ""
        self.current_index: int | None = None
        self.warnings: list[str] = []
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ creating / saving
    @property
    def path(self) -> Path:
        return self.results_root / COHORT_FILE

    @classmethod
    def build(
        cls, source: str | os.PathLike[str], results_root: str | os.PathLike[str] | None = None
    ) -> Cohort:
        """The cohort of the slides named by ``source`` with results in ``results_root``
        (default: ``source`` itself when it is a results folder holding ``cohort.csv``, else
        ``$IMILIA_RESULTS_DIR``). Grades and review state already saved there (cohort file
        or the slides' ``slide_grade.json``) are kept; new slides are appended. A results
        folder holding only ``cohort_review.json`` reopens that cohort. A damaged cohort
        file is moved aside with a warning, never overwritten."""
        from napari_imilia.user_dirs import default_results_root

        source_path = Path(os.fspath(source)).expanduser()
        saved_only = (source_path / COHORT_FILE).is_file() and not (
            source_path / "cohort.csv"
        ).is_file()
        if saved_only and (results_root is None or Path(results_root) == source_path):
            return cls.open(source_path)  # a cohort saved here before it was scored
        if results_root is None:
            is_results = source_path.is_dir() and (source_path / "cohort.csv").is_file()
            results_root = source_path if is_results else default_results_root()
        sources = discover_slides(source)
        root = Path(results_root).expanduser()
        saved: Cohort | None = None
        if (root / COHORT_FILE).exists():
            try:
                saved = cls.open(root)
            except CohortFileError as error:
                warnings.warn(str(error), stacklevel=2)
                saved = None
        cohort = saved or cls(root, [])
        if not cohort.source:
            cohort.source = os.fspath(source)
        cohort._add_sources(sources)
        cohort.refresh()
        cohort.save()
        return cohort

    @classmethod
    def open(cls, results_root: str | os.PathLike[str]) -> Cohort:
        """The cohort saved in ``results_root/cohort_review.json``. A damaged file is moved
        aside and ``CohortFileError`` says where it went and how to rebuild."""
        root = Path(results_root).expanduser()
        path = root / COHORT_FILE
        if not path.is_file():
            raise DataError(
                f"no cohort in {root} ({COHORT_FILE} not found); build one from a folder, "
                "a glob or a CSV of slides"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != COHORT_FORMAT:
                raise ValueError("not a napari-imilia cohort file")
            version = data.get("schema_version")
            if isinstance(version, int) and version > COHORT_SCHEMA_VERSION:
                raise DataError(
                    f"{path} was written by a newer napari-imilia (cohort schema {version}); "
                    "update napari-imilia to open it"
                )
            items = [item_from_record(r) for r in data["slides"]]
        except DataError as exc:
            if "newer napari-imilia" in str(exc):
                raise
            raise cls._corrupt(path, exc) from exc
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise cls._corrupt(path, exc) from exc
        cohort = cls(root, items)
        cohort.source = str(data.get("source", ""))
        current = data.get("current_slide_id")
        cohort.current_index = cohort.index_of(current) if current else None
        cohort.refresh()
        return cohort

    @staticmethod
    def _corrupt(path: Path, exc: BaseException) -> CohortFileError:
        backup = _move_aside(path)
        return CohortFileError(
            f"cohort file {path} could not be read ({type(exc).__name__}: {exc}); it was "
            f"kept as {backup.name}. Build the cohort again from its slides: the grades are "
            f"also saved in each slide's {GRADE_FILE} and come back",
            backup,
        )

    def save(self) -> Path:
        """Write ``cohort_review.json`` atomically; returns its path."""
        with self._lock:
            current = None if self.current_index is None else self.items[self.current_index]
            data = {
                "format": COHORT_FORMAT,
                "schema_version": COHORT_SCHEMA_VERSION,
                "source": self.source,
                "updated_utc": utc_now(),
                "current_slide_id": None if current is None else current.slide_id,
                "slides": [item.record() for item in self.items],
            }
            # compact: JSON's C encoder (indented runs in Python); rewritten at every step
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
            return write_text_atomic(self.path, text)

    def _add_sources(self, sources: list[FoundSlide]) -> None:
        from napari_imilia.slide import slide_id_for

        known = {absolute_path(item.path): item for item in self.items}
        for source in sources:  # absolute paths (the finder's); a saved cohort's may not be
            key = Path(source.path)
            item = known.get(key)
            if item is not None:
                item.labels = {**item.labels, **source.labels}
                continue
            item = CohortItem(path=source.path, slide_id=slide_id_for(source.path))
            item.labels = dict(source.labels)
            self.items.append(item)
            known[key] = item

    # ------------------------------------------------------------------ reading results
    def slide_dir(self, index: int) -> Path:
        """The results folder of slide ``index`` (``results_root/<slide_id>``)."""
        return self.results_root / self.items[index].slide_id

    def refresh(self, indices: list[int] | None = None) -> None:
        """Re-read scores, grades, tile reviews and file errors from the disk."""
        with self._lock:
            first_owner: dict[str, str] = {}
            for item in self.items:
                first_owner.setdefault(item.slide_id, item.path)
            for index in range(len(self.items)) if indices is None else indices:
                self._refresh_item(index, first_owner)

    def _refresh_item(self, index: int, first_owner: dict[str, str]) -> None:
        """Re-read one slide's state: one listing of its results folder, then its files."""
        item = self.items[index]
        folder = self.slide_dir(index)
        item.file_error = ""
        owner = first_owner.get(item.slide_id, item.path)
        if owner != item.path and Path(owner) != Path(item.path):
            item.file_error = (
                f"duplicate slide id {item.slide_id!r}: {owner} has it too, and their results "
                "would overwrite each other; rename one of the files"
            )
        elif not os.path.exists(item.path):  # a file, or a DICOM WSI series' folder
            item.file_error = f"slide file not found: {item.path} (moved or deleted?)"
        try:
            names = set() if item.file_error else set(os.listdir(folder))
        except OSError:  # no results folder yet
            names = set()
        info = read_slide_json(folder, item.slide_id) if "slide.json" in names else None
        item.score = None if info is None else float(info["score"])
        item.n_tiles = None if info is None else int(info.get("n_tiles", 0))
        item.model = "" if info is None else str(info.get("model", ""))
        item.model_sha256 = "" if info is None else str(info.get("model_sha256") or "")
        ranges = None if info is None else info.get(RANGES_KEY)
        item.value_ranges = ranges if isinstance(ranges, dict) else None
        if item.score is not None:
            item.score_error = ""
        if not item.file_error:
            saved = load_slide_grade(folder, item.slide_id) if GRADE_FILE in names else None
            if saved is not None and (
                item.grade is None or saved.updated_utc >= item.grade.updated_utc
            ):
                item.grade = saved
            item.has_tile_reviews = "review.json" in names
        if not item.file_error and item.score is None and not item.score_error:
            item.file_error = unreadable_reason(item.path)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> CohortItem:
        return self.items[index]

    def index_of(self, slide_id: str) -> int:
        """Index of the (first) slide with ``slide_id``; ``DataError`` if there is none."""
        for index, item in enumerate(self.items):
            if item.slide_id == slide_id:
                return index
        raise DataError(f"no slide {slide_id!r} in this cohort")

    def counts(self) -> dict[str, int]:
        """Number of slides per status (every status of :data:`STATUSES`, even at 0)."""
        counts = dict.fromkeys(STATUSES, 0)
        for item in self.items:
            counts[item.status] += 1
        return counts

    def summary_text(self) -> str:
        """'14 of 40 reviewed, 30 scored, 1 error'."""
        counts = self.counts()
        scored = sum(1 for item in self.items if item.scored)
        text = f"{counts['reviewed']} of {len(self.items)} reviewed, {scored} scored"
        if counts["error"]:
            text += f", {counts['error']} error" + ("s" if counts["error"] > 1 else "")
        return text

    def unscored(self) -> list[int]:
        """Indices of slides that can be scored and have no result yet."""
        return [i for i, item in enumerate(self.items) if not item.scored and not item.file_error]

    def table(self) -> pd.DataFrame:
        """The review table: one row per slide, columns :data:`TABLE_COLUMNS` plus the CSV
        labels (prefixed ``label_``)."""
        rows = []
        for item in self.items:
            grade = item.grade or SlideGrade()
            rows.append(
                {
                    "slide_id": item.slide_id,
                    "score": item.score,
                    "n_tiles": item.n_tiles,
                    "status": item.status,
                    "nancy": grade.nancy,
                    "activity": grade.effective_activity,
                    "model_agreement": grade.model_agreement,
                    "reviewer": grade.reviewer,
                    "note": grade.note,
                    "error": item.error,
                    "path": item.path,
                    **{f"label_{k}": v for k, v in item.labels.items()},
                }
            )
        table = pd.DataFrame(rows)
        if table.empty:
            table = pd.DataFrame(columns=list(TABLE_COLUMNS))
        for column in ("score",):
            table[column] = pd.to_numeric(table[column], errors="coerce")
        table["n_tiles"] = pd.to_numeric(table["n_tiles"], errors="coerce").astype("Int64")
        table["nancy"] = pd.to_numeric(table["nancy"], errors="coerce").astype("Int64")
        return table

    # ------------------------------------------------------------------ changes
    def set_current(self, index: int | None) -> None:
        """Make slide ``index`` the one under review (marks it opened; saved)."""
        with self._lock:
            if index is not None:
                item = self.items[index]
                if not item.opened_utc:
                    item.opened_utc = utc_now()
            self.current_index = index
            self.save()
        if index is not None:
            self.item_changed.emit(index)
        self.current_changed.emit(-1 if index is None else index)

    def step(self, delta: int, *, skip_errors: bool = True) -> int | None:
        """Index ``delta`` slides from the current one (from the start when none is
        current), skipping slides in error; None past either end."""
        if not self.items:
            return None
        index = self.current_index
        index = (-1 if delta > 0 else len(self.items)) if index is None else index
        while True:
            index += 1 if delta > 0 else -1
            if not 0 <= index < len(self.items):
                return None
            if not (skip_errors and self.items[index].file_error):
                return index

    def set_grade(self, index: int, grade: SlideGrade) -> SlideGrade:
        """Save slide ``index``'s grade in its ``slide_grade.json`` and in the cohort file."""
        with self._lock:
            item = self.items[index]
            saved = save_slide_grade(self.slide_dir(index), item.slide_id, grade)
            item.grade = saved
            self.save()
        self.item_changed.emit(index)
        return saved

    def record_scoring(self, row: dict[str, Any]) -> int | None:
        """Take in one row of ``predict_cohort`` (as each slide finishes); returns its index."""
        with self._lock:
            try:
                index = next(
                    i
                    for i, item in enumerate(self.items)
                    if absolute_path(item.path) == absolute_path(row["slide"])
                )
            except StopIteration:
                return None
            item = self.items[index]
            if row.get("status") == "ok":
                item.score_error = ""
            else:
                item.score_error = str(row.get("error") or "scoring failed")
            self.refresh([index])
            self.save()
        self.item_changed.emit(index)
        return index


__all__ = [
    "COHORT_FILE",
    "STATUSES",
    "TABLE_COLUMNS",
    "Cohort",
    "CohortFileError",
    "CohortItem",
]
