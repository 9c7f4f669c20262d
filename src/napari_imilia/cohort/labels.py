"""A labels CSV laid on a cohort: its rows find the cohort's slides, never add any (no Qt).

A labels file is a cohort CSV (a slide path column, ``slide``, ``path`` or ``slide_path``, and
label columns such as ``active`` and ``nancy``) read by
:func:`~napari_imilia.slide.discover.slides_from_csv`: relative paths are relative to the
CSV's folder (or to the current folder where only that finds the file). Each row is matched
to a slide of the cohort by its resolved path first, then by its slide id (file name without
extension) when exactly one slide of the cohort has that id. Rows that match no slide are
only reported (:attr:`LabelsMatch.warning`). :func:`label_cohort` (``Cohort.apply_labels``)
lays the labels on a cohort and saves it, or refuses a file that matches no slide, leaving
``cohort_review.json`` as it was.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from napari_imilia.errors import DataError
from napari_imilia.slide.discover import FoundSlide, slides_from_csv
from napari_imilia.trust.paths import absolute_path

if TYPE_CHECKING:
    from napari_imilia.cohort.review import Cohort

#: Unmatched rows named in the warning; more are counted, not listed.
MAX_NAMED_ROWS = 10


@dataclass
class LabelsMatch:
    """Which cohort slide each labels row found: ``labels`` per slide index (rows for one
    slide merged, later rows win) and the rows that found none, as written in the CSV."""

    labels: dict[int, dict[str, str]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)

    @property
    def warning(self) -> str:
        """'2 label rows match no slide of the cohort: zzz, yyy' ('' when all matched)."""
        n = len(self.unmatched)
        if not n:
            return ""
        names = ", ".join(self.unmatched[:MAX_NAMED_ROWS])
        if n > MAX_NAMED_ROWS:
            names += f" and {n - MAX_NAMED_ROWS} more"
        rows = "1 label row matches" if n == 1 else f"{n} label rows match"
        return f"{rows} no slide of the cohort: {names}"


def _path_keys(path: str | os.PathLike[str]) -> set[Path]:
    """The path as given (absolute) and with its symbolic links resolved."""
    given = absolute_path(path)
    return {given, given.resolve()}


def as_written(path: str, csv_folder: Path) -> str:
    """A row's path as the CSV most likely wrote it: relative to the CSV's folder or to the
    current folder when inside either, else absolute."""
    for folder in (csv_folder, Path.cwd()):
        try:
            return Path(path).relative_to(absolute_path(folder)).as_posix()
        except ValueError:
            continue
    return path


def match_labels(
    slide_paths: Sequence[str], slide_ids: Sequence[str], rows: Sequence[FoundSlide], csv: Path
) -> LabelsMatch:
    """Match the labels ``rows`` of the CSV ``csv`` to the cohort's slides (their paths and
    slide ids, in cohort order); see the module docstring."""
    from napari_imilia.slide import slide_id_for

    by_path: dict[Path, int] = {}
    for index, path in enumerate(slide_paths):
        for key in _path_keys(path):
            by_path.setdefault(key, index)
    by_id: dict[str, list[int]] = {}
    for index, slide_id in enumerate(slide_ids):
        by_id.setdefault(slide_id, []).append(index)
    match = LabelsMatch()
    for row in rows:
        index = next((by_path[k] for k in _path_keys(row.path) if k in by_path), None)
        if index is None:
            same_id = by_id.get(slide_id_for(row.path), [])
            index = same_id[0] if len(same_id) == 1 else None
        if index is None:
            match.unmatched.append(as_written(row.path, csv.parent))
            continue
        match.labels[index] = {**match.labels.get(index, {}), **row.labels}
    return match


def label_cohort(cohort: Cohort, csv_path: str | os.PathLike[str]) -> int:
    """Lay the labels CSV's label columns on ``cohort``'s slides and save it; returns how many
    slides got labels. Rows that match no slide are named in one entry of
    ``cohort.warnings``. ``DataError`` when the CSV cannot be read or no row matches (then
    nothing is changed or saved)."""
    csv = absolute_path(csv_path)
    rows = slides_from_csv(csv)
    with cohort._lock:
        items = cohort.items
        match = match_labels([i.path for i in items], [i.slide_id for i in items], rows, csv)
        if not match.labels:
            shown = ", ".join(as_written(row.path, csv.parent) for row in rows[:5])
            raise DataError(
                f"no row of the labels file {csv} matches a slide of the cohort in "
                f"{cohort.results_root} (by path or slide id; rows: {shown}); nothing was "
                "changed: name the cohort's slides in its slide column"
            )
        for index, labels in match.labels.items():
            items[index].labels = {**items[index].labels, **labels}
        if match.warning:
            cohort.warnings.append(match.warning)
        cohort.save()
    for index in sorted(match.labels):
        cohort.item_changed.emit(index)
    return len(match.labels)
