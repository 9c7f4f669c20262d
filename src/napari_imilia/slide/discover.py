"""Where a cohort's slides come from: a folder, a glob, a CSV or a results folder (no Qt).

:func:`discover_slides` turns what the user gave into ``SlideSource`` rows (path plus the
label columns of a CSV), in a stable order:

- a folder: every file below it (recursively) whose name ends in an extension the slide
  reader takes (``slide.formats.SLIDE_SUFFIXES``), sorted by path;
- a glob such as ``/data/*.svs`` or ``/data/**/*.ndpi`` (``**`` recurses);
- a CSV with a slide path column (``slide``, ``path`` or ``slide_path``; relative paths are
  relative to the CSV's folder) and optional label columns (e.g. ``active``, ``nancy``);
- a results folder holding ``cohort.csv`` (as ``imilia predict`` writes it).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from napari_imilia.errors import DataError

#: Names of the slide path column of a cohort CSV, in the order they are looked for.
PATH_COLUMNS: tuple[str, ...] = ("slide", "path", "slide_path")
#: Columns of a results folder's cohort.csv that are scoring output, not labels.
SCORING_COLUMNS: tuple[str, ...] = ("slide_id", "status", "score", "n_tiles", "error")
#: A CSV with more rows than this is refused (a cohort, not a database).
MAX_CSV_ROWS = 100_000


@dataclass(frozen=True)
class SlideSource:
    """One slide of the cohort as given: its path and labels (column -> text) from a CSV."""

    path: str
    labels: dict[str, str] = field(default_factory=dict)


def slide_suffixes() -> tuple[str, ...]:
    """File name endings the slide reader takes (lower case)."""
    from napari_imilia.slide.formats import SLIDE_SUFFIXES

    return SLIDE_SUFFIXES


def _is_slide_file(path: Path) -> bool:
    return path.name.lower().endswith(slide_suffixes()) and not path.name.startswith(".")


def discover_slides(source: str | os.PathLike[str]) -> list[SlideSource]:
    """The slides named by ``source`` (see the module docstring); ``DataError`` when it
    names nothing usable (empty folder, glob without matches, CSV without a path column)."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "cohort.csv").is_file():
            return slides_from_csv(path / "cohort.csv")
        return slides_from_folder(path)
    if path.is_file():
        if path.suffix.lower() in (".csv", ".tsv"):
            return slides_from_csv(path)
        if _is_slide_file(path):
            return [SlideSource(str(path))]
        raise DataError(
            f"{path} is neither a folder, a CSV nor a slide ({', '.join(slide_suffixes())})"
        )
    if glob.has_magic(text):
        return slides_from_glob(text)
    raise DataError(f"cohort source not found: {path}; give a folder, a glob, a CSV or a slide")


def slides_from_folder(folder: str | os.PathLike[str]) -> list[SlideSource]:
    """Every slide file below ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    found = sorted(p for p in folder.rglob("*") if p.is_file() and _is_slide_file(p))
    if not found:
        raise DataError(
            f"no slide found in {folder} or its subfolders (looked for "
            f"{', '.join(slide_suffixes())})"
        )
    return [SlideSource(str(p)) for p in found]


def slides_from_glob(pattern: str) -> list[SlideSource]:
    """Slide files matching ``pattern`` (``**`` recurses), sorted by path."""
    found = sorted(
        Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file()
    )
    slides = [SlideSource(str(p)) for p in found if _is_slide_file(p)]
    if not slides:
        raise DataError(f"no slide file matches {pattern!r}")
    return slides


def slides_from_csv(csv_path: str | os.PathLike[str]) -> list[SlideSource]:
    """Rows of a cohort CSV: the path column (:data:`PATH_COLUMNS`) and every other column as
    a label (a results folder's scoring columns are left out). Empty cells are left out."""
    csv_path = Path(csv_path)
    sep = "\t" if csv_path.suffix.lower() == ".tsv" else ","
    try:
        table = pd.read_csv(csv_path, sep=sep, dtype=str, keep_default_na=False, nrows=MAX_CSV_ROWS)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the cohort CSV {csv_path}: {exc}") from exc
    columns = {str(c).strip().lower(): c for c in table.columns}
    path_column = next((columns[name] for name in PATH_COLUMNS if name in columns), None)
    if path_column is None:
        raise DataError(
            f"{csv_path} has no slide path column; name one of {', '.join(PATH_COLUMNS)} "
            f"(columns found: {', '.join(map(str, table.columns))})"
        )
    skip = {path_column}
    if (csv_path.parent / "cohort.csv") == csv_path:
        skip |= {columns[c] for c in SCORING_COLUMNS if c in columns}
    label_columns = [c for c in table.columns if c not in skip]
    slides = []
    for row in table.itertuples(index=False):
        values = dict(zip(table.columns, row, strict=True))
        raw = str(values[path_column]).strip()
        if not raw:
            continue
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = csv_path.parent / path
        labels = {str(c).strip(): str(values[c]).strip() for c in label_columns}
        slides.append(SlideSource(str(path), {k: v for k, v in labels.items() if v}))
    if not slides:
        raise DataError(f"{csv_path} names no slide (its {path_column!r} column is empty)")
    return slides
