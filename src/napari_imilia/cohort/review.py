"""``Cohort``: a list of slides with their scores, review status and grades (no Qt).

A cohort lives in a results folder (``results_root``, one ``<slide_id>/`` subfolder per slide)
and persists as ``results_root/cohort_review.json``, written atomically after every change:
the slides, their CSV labels, when each was first opened and its last scoring error. The rest
is read from where its one writer keeps it: scores from ``<slide_id>/slide.json``, grades from
each reader's journal (:mod:`napari_imilia.review.reads`), the study from ``study.json`` and
each reader's current slide from their own file (:mod:`napari_imilia.cohort.cursor`), so two
processes sharing the folder lose neither grades nor each other's place. The grade copies an
old cohort file kept are read as legacy grades.

The cohort is seen by one reader (``reader``: the workspace's reviewer identity). Outside a
study a slide shows its newest grade by anyone; in a study, the reader's own, and in a
blinded study the model stays hidden (``CohortItem.model_hidden``) until they commit theirs.

Status of a slide, first match: ``error`` (file missing or unreadable, slide id used by an
earlier slide, or its scoring failed: ``error`` says why), ``reviewed`` (graded), ``in
review`` (opened for review, or has tile reviews), ``scored``, ``not scored``.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from psygnal import Signal

from napari_imilia.cohort.cursor import load_cursor, save_cursor
from napari_imilia.cohort.item import (
    TABLE_COLUMNS,
    CohortItem,
    add_sources,
    items_from_records,
    merge_saved_records,
    read_item_results,
    reading_order,
    review_table,
)
from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.review.entry import utc_now
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.grading import commit_grade
from napari_imilia.review.reads import GradeRead
from napari_imilia.review.reviewer import load_reviewer
from napari_imilia.review.study import Study, load_study
from napari_imilia.slide.discover import discover_slides
from napari_imilia.trust.paths import absolute_path, safe_name
from napari_imilia.trust.results import move_aside, read_results_json, results_path

COHORT_FILE = "cohort_review.json"
COHORT_FORMAT = "napari-imilia-cohort"
COHORT_SCHEMA_VERSION = 2
STATUSES: tuple[str, ...] = ("not scored", "scored", "in review", "reviewed", "error")


class CohortFileError(DataError):
    """The cohort file cannot be read; it was moved aside (``backup``), never overwritten."""

    def __init__(self, message: str, backup: Path | None = None) -> None:
        super().__init__(message)
        self.backup = backup


class Cohort:
    """The slides of a study and their review; see the module docstring.

    Create with :meth:`build` (from a folder, glob, CSV or results folder) or :meth:`open`
    (the saved ``cohort_review.json``). ``reader``: who sees it (default: the saved
    reviewer identity). Signals: ``item_changed(index)``, ``current_changed(index)``.
    Methods are thread-safe (scoring updates from a worker).
    """

    item_changed = Signal(int)
    current_changed = Signal(int)

    def __init__(
        self,
        results_root: str | os.PathLike[str],
        items: list[CohortItem],
        reader: str | None = None,
    ) -> None:
        self.results_root = absolute_path(results_root)
        self.items = items
        self.source = ""
        self.current_index: int | None = None
        self.warnings: list[str] = []
        self.reader = load_reviewer() if reader is None else reader
        self.study: Study | None = None
        self.study_error = ""
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ creating / saving
    @property
    def path(self) -> Path:
        return self.results_root / COHORT_FILE

    @classmethod
    def build(
        cls,
        source: str | os.PathLike[str],
        results_root: str | os.PathLike[str] | None = None,
        reader: str | None = None,
    ) -> Cohort:
        """The cohort of the slides named by ``source`` with results in ``results_root``
        (default: ``source`` itself when it is a results folder holding ``cohort.csv``, else
        ``$IMILIA_RESULTS_DIR``), seen by ``reader``. Review state already saved there is
        kept; new slides are appended. A results folder holding only ``cohort_review.json``
        reopens that cohort. A damaged cohort file is moved aside with a warning. Relative
        paths are relative to the current folder; the file keeps them absolute."""
        from napari_imilia.user_dirs import default_results_root

        source_path = absolute_path(source)
        saved_only = (source_path / COHORT_FILE).is_file() and not (
            source_path / "cohort.csv"
        ).is_file()
        if saved_only and (results_root is None or absolute_path(results_root) == source_path):
            return cls.open(source_path, reader)  # a cohort saved before it was scored
        if results_root is None:
            is_results = source_path.is_dir() and (source_path / "cohort.csv").is_file()
            results_root = source_path if is_results else default_results_root()
        sources = discover_slides(source)
        root = absolute_path(results_root)
        saved: Cohort | None = None
        if (root / COHORT_FILE).exists():
            try:
                saved = cls.open(root, reader)
            except CohortFileError as error:
                warnings.warn(str(error), stacklevel=2)
                saved = None
        cohort = saved or cls(root, [], reader)
        if not cohort.source:
            cohort.source = str(source_path)
        add_sources(cohort.items, sources)
        cohort.refresh()
        cohort.save()
        return cohort

    @classmethod
    def open(cls, results_root: str | os.PathLike[str], reader: str | None = None) -> Cohort:
        """The cohort saved in ``results_root/cohort_review.json``, seen by ``reader`` (default:
        the saved reviewer identity). A damaged file is moved aside and ``CohortFileError``
        says where it went and how to rebuild. Slide paths the file holds relative are
        relative to ``results_root``."""
        root = absolute_path(results_root)
        path = root / COHORT_FILE
        if not os.path.lexists(path):
            raise DataError(
                f"no cohort in {root} ({COHORT_FILE} not found); build one from a folder, "
                "a glob or a CSV of slides"
            )
        try:
            data = read_results_json(path, root)
            if not isinstance(data, dict) or data.get("format") != COHORT_FORMAT:
                raise ValueError("not a napari-imilia cohort file")
            version = data.get("schema_version")
            if isinstance(version, int) and version > COHORT_SCHEMA_VERSION:
                raise DataError(
                    f"{path} was written by a newer napari-imilia (cohort schema {version}); "
                    "update napari-imilia to open it"
                )
            items, cleaned = items_from_records(data["slides"], path)
            for item in items:
                item.path = str(absolute_path(root / item.path))  # a relative one: to root
        except DataError as exc:
            if "newer napari-imilia" in str(exc):
                raise
            raise cls._corrupt(path, exc) from exc
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise cls._corrupt(path, exc) from exc
        cohort = cls(root, items, reader)
        cohort.source = str(data.get("source", ""))
        cohort.warnings += cleaned
        current = load_cursor(root, cohort.reader) or data.get("current_slide_id")
        try:
            current = safe_name(current) if isinstance(current, str) and current else None
            cohort.current_index = None if current is None else cohort.index_of(current)
        except DataError:
            cohort.current_index = None
        cohort.refresh()
        return cohort

    @staticmethod
    def _corrupt(path: Path, exc: BaseException) -> CohortFileError:
        backup = move_aside(path)
        return CohortFileError(
            f"cohort file {path} could not be read ({type(exc).__name__}: {exc}); it was "
            f"kept as {backup.name}. Build the cohort again from its slides: the grades are "
            "kept in each slide's folder and come back",
            backup,
        )

    def save(self) -> Path:
        """Write ``cohort_review.json`` atomically, taking in what another process saved
        there meanwhile (slides first opened, labels); returns its path."""
        with self._lock:
            records = [item.record() for item in self.items]
            try:
                on_disk = read_results_json(self.path, self.results_root)["slides"]
                records = merge_saved_records(records, on_disk)
            except (DataError, KeyError, TypeError):
                pass  # nothing saved yet, or unreadable: ours is all there is
            data = {
                "format": COHORT_FORMAT,
                "schema_version": COHORT_SCHEMA_VERSION,
                "source": self.source,
                "updated_utc": utc_now(),
                "slides": records,
            }
            # compact: JSON's C encoder (indented runs in Python); rewritten at every step
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"
            return write_text_atomic(self.path, text)

    # ------------------------------------------------------------------ reading results
    def slide_dir(self, index: int) -> Path:
        """The results folder of slide ``index`` (``results_root/<slide_id>``); ``DataError``
        when it would lie outside the results root (a hostile id, or a slide folder that is a
        link leading out: :func:`~napari_imilia.trust.results.results_path`)."""
        return results_path(self.results_root, self.items[index].slide_id)

    def refresh(self, indices: list[int] | None = None) -> None:
        """Re-read scores, grades, the study, tile reviews and file errors from the disk."""
        with self._lock:
            self._load_study()
            first_owner: dict[str, str] = {}
            for item in self.items:
                first_owner.setdefault(item.slide_id, item.path)
            for index in range(len(self.items)) if indices is None else indices:
                self._refresh_item(index, first_owner)

    def _refresh_item(self, index: int, first_owner: dict[str, str]) -> None:
        """Re-read one slide's state: one listing of its results folder, then its files."""
        item = self.items[index]
        item.file_error = ""
        try:
            folder = self.slide_dir(index)
        except DataError as error:
            item.file_error, item.score, item.n_tiles = str(error), None, None
            return
        owner = first_owner.get(item.slide_id, item.path)
        hide_all = bool(self.study_error)
        read_item_results(item, folder, owner, self.study, self.reader, hide_all=hide_all)

    def _load_study(self) -> None:
        try:
            self.study, self.study_error = load_study(self.results_root), ""
        except ImiliaError as error:  # hide the model rather than unblind by accident
            self.study, self.study_error = None, str(error)
            if self.study_error not in self.warnings:
                self.warnings.append(self.study_error)

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
        labels (prefixed ``label_``); the score is left out where the model is hidden."""
        return review_table(self.items)

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
            current = None if index is None else self.items[index].slide_id
            try:
                save_cursor(self.results_root, self.reader, current)
            except OSError as error:  # read-only results: the place is not remembered
                self.warnings.append(f"your place in the cohort is not saved: {error}")
        if index is not None:
            self.item_changed.emit(index)
        self.current_changed.emit(-1 if index is None else index)

    def step(self, delta: int, *, skip_errors: bool = True) -> int | None:
        """Index of the slide ``delta`` steps from the current one in the reader's order
        (:func:`~napari_imilia.cohort.item.reading_order`: in a study, the reader's
        shuffled order first), skipping slides in error; None past either end."""
        order = reading_order(self.items, self.study, self.reader)
        if skip_errors:
            order = [i for i in order if not self.items[i].file_error or i == self.current_index]
        if not order:
            return None
        at = order.index(self.current_index) if self.current_index in order else None
        at = (-1 if delta > 0 else len(order)) if at is None else at
        at += 1 if delta > 0 else -1
        return order[at] if 0 <= at < len(order) else None

    def set_grade(
        self,
        index: int,
        grade: SlideGrade,
        *,
        reader: str | None = None,
        started_utc: str = "",
    ) -> GradeRead:
        """Commit ``reader``'s (default: ``grade.reviewer``, else the cohort's reader) grade
        of slide ``index`` (:func:`~napari_imilia.review.grading.commit_grade`: a read in
        their journal, in the phase the study gives it; their draft dropped)."""
        with self._lock:
            item = self.items[index]
            who = reader if reader is not None else (grade.reviewer or self.reader)
            saved = commit_grade(
                self.results_root, item.slide_id, who, grade, started_utc=started_utc
            )
            self.refresh([index])
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

    def apply_labels(self, csv_path: str | os.PathLike[str]) -> int:
        """Label this cohort's slides from a labels CSV, never adding one; returns how many
        got labels (:func:`napari_imilia.cohort.labels.label_cohort`)."""
        from napari_imilia.cohort.labels import label_cohort

        return label_cohort(self, csv_path)


__all__ = [
    "COHORT_FILE",
    "STATUSES",
    "TABLE_COLUMNS",
    "Cohort",
    "CohortFileError",
    "CohortItem",
]
