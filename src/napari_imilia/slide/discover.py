"""The one slide finder: what a user names turned into slides, each listed once (no Qt).

:func:`discover_slides` is behind ``imilia predict``, ``predict_cohort`` and ``Cohort.build``.
It takes one source or several and gives :class:`FoundSlide` rows (absolute path, plus the
label columns of a CSV) in the order given:

- a slide file: itself (a ``.dcm`` file too: the reader opens the series it belongs to);
- a DICOM WSI folder (DICOM files directly inside): the folder, one slide;
- a results folder (holding ``cohort.csv``, as ``imilia predict`` writes it): the slides that
  table lists;
- any other folder: every slide below it (recursively), sorted by path; a folder of DICOM
  files below it is one slide, never one per ``.dcm`` file;
- a CSV (or TSV) with a slide path column (``slide``, ``path`` or ``slide_path``; relative
  paths are relative to the CSV's folder, or to the current folder where only that finds
  the file) and optional label columns (``active``, ``nancy``);
- a glob pattern such as ``/data/*.svs`` or ``'/data/**/*.ndpi'`` (``**`` recurses), sorted.

Paths are made absolute by :func:`~napari_imilia.trust.paths.absolute_path`. A slide found
twice keeps its first place (later labels win). ``strict`` (the default, a cohort under
review) refuses a path that does not exist or a file that is neither a slide nor a CSV with
``DataError``; ``strict=False`` (a prediction run) lists such a path as given, so that it
fails as that slide's own error ("slide not found"). A folder, pattern or CSV that names no
slide is always an error.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from napari_imilia.errors import DataError, one_line
from napari_imilia.slide.formats import SLIDE_SUFFIXES
from napari_imilia.trust.paths import absolute_path
from napari_imilia.trust.results import read_results_bytes

#: Names of the slide path column of a cohort CSV, in the order they are looked for.
PATH_COLUMNS: tuple[str, ...] = ("slide", "path", "slide_path")
#: Columns of a results folder's cohort.csv that are scoring output, not labels.
SCORING_COLUMNS: tuple[str, ...] = ("slide_id", "status", "score", "n_tiles", "error")
#: A CSV with more rows than this is refused (a cohort, not a database).
MAX_CSV_ROWS = 100_000
#: The table a results folder holds (written by ``napari_imilia.cohort.summary``).
RESULTS_TABLE = "cohort.csv"
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".tsv")

Source = str | os.PathLike[str]


@dataclass(frozen=True)
class FoundSlide:
    """One slide as found: its absolute path and its labels (column -> text) from a CSV."""

    path: str
    labels: dict[str, str] = field(default_factory=dict)


def discover_slides(sources: Source | Sequence[Source], *, strict: bool = True) -> list[FoundSlide]:
    """The slides named by ``sources`` (one or several; see the module docstring).

    Raises ``DataError`` for a folder, pattern or CSV that names no slide, for no source at
    all and, when ``strict``, for a missing path or a file that is neither slide nor CSV.
    """
    items = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    found: list[FoundSlide] = []
    for source in items:
        found.extend(_slides_of(os.fspath(source), strict))
    if not found:
        raise DataError("no slide given: name slide files, folders, glob patterns or a CSV")
    return _once_each(found)


def _slides_of(text: str, strict: bool) -> list[FoundSlide]:
    """What one source names (see the module docstring)."""
    path = Path(text).expanduser()
    if path.is_dir():
        if _is_dicom_series(path):
            return [FoundSlide(str(absolute_path(path)))]
        if (path / RESULTS_TABLE).is_file():
            return slides_from_csv(path / RESULTS_TABLE)
        return slides_from_folder(path)
    if path.is_file() and path.suffix.lower() in CSV_SUFFIXES:
        return slides_from_csv(path)
    if path.is_file() and (_is_slide_name(path) or not strict):
        return [FoundSlide(str(absolute_path(path)))]
    if path.is_file():
        raise DataError(
            f"{path} is neither a folder, a CSV nor a slide ({', '.join(SLIDE_SUFFIXES)})"
        )
    if glob.has_magic(text):
        return slides_from_glob(text)
    if not strict:  # a missing slide is reported as that slide's error
        return [FoundSlide(str(absolute_path(path)))]
    raise DataError(f"slide source not found: {path}; give a folder, a glob, a CSV or a slide")


def slides_from_folder(folder: Source) -> list[FoundSlide]:
    """Every slide below ``folder`` (recursively), sorted by path; a folder holding a DICOM
    WSI series counts as one slide."""
    folder = Path(folder).expanduser()
    found = sorted(set(_slide_paths(p for p in folder.rglob("*") if p.is_file())))
    if not found:
        raise DataError(
            f"no slide found in {folder} or its subfolders (looked for {', '.join(SLIDE_SUFFIXES)})"
        )
    return [FoundSlide(str(absolute_path(p))) for p in found]


def slides_from_glob(pattern: str) -> list[FoundSlide]:
    """Slides matching ``pattern`` (``**`` recurses), sorted by path: slide files, and DICOM
    series (a matched folder, or the folder of matched ``.dcm`` files) once each."""
    matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]
    series = [p for p in matches if p.is_dir() and _is_dicom_series(p)]
    found = sorted(set(_slide_paths(p for p in matches if p.is_file())) | set(series))
    if not found:
        raise DataError(f"no slide file matches the pattern {pattern}")
    return [FoundSlide(str(absolute_path(p))) for p in found]


def slides_from_csv(csv_path: Source) -> list[FoundSlide]:
    """Rows of a cohort CSV: the path column (:data:`PATH_COLUMNS`) and every other column as
    a label (a results folder's scoring columns are left out). Empty cells are left out."""
    csv_path = Path(csv_path).expanduser()
    sep = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    raw = read_results_bytes(csv_path, None)  # a regular file within the size limit: no FIFO
    try:
        table = pd.read_csv(
            io.BytesIO(raw), sep=sep, dtype=str, keep_default_na=False, nrows=MAX_CSV_ROWS
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the cohort CSV {csv_path}: {one_line(exc)}") from exc
    columns = {str(c).strip().lower(): c for c in table.columns}
    path_column = next((columns[name] for name in PATH_COLUMNS if name in columns), None)
    if path_column is None:
        raise DataError(
            f"{csv_path} has no slide path column; name one of {', '.join(PATH_COLUMNS)} "
            f"(columns found: {', '.join(map(str, table.columns))})"
        )
    skip = {path_column}
    if csv_path.name == RESULTS_TABLE:
        skip |= {columns[c] for c in SCORING_COLUMNS if c in columns}
    label_columns = [c for c in table.columns if c not in skip]
    slides = []
    for row in table.itertuples(index=False):
        values = dict(zip(table.columns, row, strict=True))
        raw = str(values[path_column]).strip()
        if not raw:
            continue
        path = Path(raw).expanduser()
        if not path.is_absolute():  # beside the CSV; in the current folder if only there
            beside = csv_path.parent / path
            path = beside if beside.exists() or not path.exists() else path
        labels = {str(c).strip(): str(values[c]).strip() for c in label_columns}
        slides.append(FoundSlide(str(absolute_path(path)), {k: v for k, v in labels.items() if v}))
    if not slides:
        raise DataError(f"{csv_path} names no slide (its {path_column!r} column is empty)")
    return slides


def _slide_paths(files: Iterable[Path]) -> Iterable[Path]:
    """The slides among ``files``: slide files, but a ``.dcm`` file stands for its series
    (its folder, when that holds DICOM files) and a ``.dcm`` that is not DICOM for nothing."""
    series: dict[Path, bool] = {}
    for path in files:
        if not _is_slide_name(path):
            continue
        if path.suffix.lower() != ".dcm":
            yield path
            continue
        if path.parent not in series:
            series[path.parent] = _is_dicom_series(path.parent)
        if series[path.parent]:
            yield path.parent


def _once_each(found: list[FoundSlide]) -> list[FoundSlide]:
    """Each path once, at its first place; labels of later rows are merged in (they win)."""
    merged: dict[str, FoundSlide] = {}
    for slide in found:
        known = merged.get(slide.path)
        labels = slide.labels if known is None else {**known.labels, **slide.labels}
        merged[slide.path] = FoundSlide(slide.path, labels)
    return list(merged.values())


def _is_slide_name(path: Path) -> bool:
    """A name (not hidden) that ends in one of :data:`SLIDE_SUFFIXES`."""
    return path.name.lower().endswith(SLIDE_SUFFIXES) and not path.name.startswith(".")


def _is_dicom_series(folder: Path) -> bool:
    """Whether ``folder`` directly holds DICOM files (a DICOM WSI series: one slide)."""
    from napari_imilia.slide.backends.dicom import dicom_files

    return bool(dicom_files(folder))
