"""A cohort's table ``OUT/cohort.csv`` (one row per slide) and the files interrupted runs leave.

:func:`write_cohort_csv` is its one writer: ``predict_cohort`` (``imilia predict`` on several
slides) merges the slides it ran into it, and Score all (``score_unscored``) merges the rows of
every slide of the cohort, rebuilt from what the slide folders hold (:func:`cohort_rows`).
Merging keeps one row per ``slide_id``: a slide already in the file gets its new row in
place, new slides follow in the order given, slides only the file knows stay. The merge
holds ``OUT/.imilia/cohort.lock`` (:mod:`~napari_imilia.predict.lock`), so two writers
never lose each other's rows, and the scores it writes are those the slide folders hold
(:func:`rows_from_folders`).
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import ImiliaError, one_line
from napari_imilia.export.tables import raw_frame, spreadsheet_csv
from napari_imilia.files import write_text_atomic
from napari_imilia.trust.results import read_results_bytes

SUMMARY_COLUMNS: tuple[str, ...] = ("slide", "slide_id", "status", "score", "n_tiles", "error")
#: Summary columns that hold whole numbers (written without a decimal point, blank when unknown).
INTEGER_COLUMNS: tuple[str, ...] = ("n_tiles",)
SUMMARY_FILE = "cohort.csv"
#: A temporary feature file older than this (seconds) was left by a run that was killed.
STALE_TEMP_S = 3600.0


def ok_row(slide: str | Path, info: dict[str, Any]) -> dict[str, Any]:
    """The row of a slide whose result's ``slide.json`` is ``info``."""
    return {
        "slide": str(slide),
        "slide_id": str(info["slide_id"]),
        "status": "ok",
        "score": float(info["score"]),
        "n_tiles": int(info["n_tiles"]),
    }


def rows_from_folders(out_dir: Path, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every ``ok`` row made again from what ``out_dir/<slide_id>/slide.json``
    holds now (what a reader of the folder sees); a slide whose folder lost its result
    meanwhile becomes an error."""
    from napari_imilia.cohort.item import read_slide_json

    remade = []
    for row in rows:
        if row.get("status") == "ok":
            info = read_slide_json(out_dir / str(row["slide_id"]), str(row["slide_id"]))
            if info is None:
                gone = "its result is no longer in the results folder (removed meanwhile)"
                row = {**row, "status": "error", "score": None, "n_tiles": None, "error": gone}
            else:
                row = {**row, **ok_row(row["slide"], info)}
        remade.append(row)
    return remade


def cohort_rows(cohort: Any) -> list[dict[str, Any]]:
    """A row per slide of ``cohort`` (a :class:`~napari_imilia.cohort.review.Cohort`, as its
    slide folders were last read): status 'ok', 'error' or 'not scored'."""
    rows = []
    for item in cohort.items:
        status = "ok" if item.scored else ("error" if item.error else "not scored")
        rows.append(
            {
                "slide": item.path,
                "slide_id": item.slide_id,
                "status": status,
                "score": item.score,
                "n_tiles": item.n_tiles,
                "error": item.error or None,
            }
        )
    return rows


def summary_table(
    rows: Sequence[dict[str, Any]], slides: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows as a table with :data:`SUMMARY_COLUMNS`, in the order of ``slides`` (paths) when
    given, else as they come."""
    table = pd.DataFrame(list(rows)).reindex(columns=list(SUMMARY_COLUMNS))
    if len(table) and slides is not None:
        order = {slide: i for i, slide in enumerate(slides)}
        table = table.sort_values("slide", key=lambda col: col.map(order), kind="stable")
    return _typed(table.reset_index(drop=True))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table = table.astype({"slide": str, "slide_id": str, "status": str, "score": "float64"})
    table["error"] = table["error"].astype(object).where(table["error"].notna(), float("nan"))
    return table.astype({name: "Int64" for name in INTEGER_COLUMNS})


def read_summary(path: Path) -> pd.DataFrame:
    """An existing ``cohort.csv`` (typed like :func:`summary_table`), or ``ImiliaError``."""
    try:
        raw = read_results_bytes(path, path.parent)
        text_columns = {"slide": str, "slide_id": str, "status": str, "error": str}
        # only an empty cell is missing: a slide named NULL, NA or nan keeps its name
        frame = pd.read_csv(
            io.BytesIO(raw), dtype=text_columns, keep_default_na=False, na_values=[""]
        )
        table = raw_frame(frame)
        missing = [c for c in SUMMARY_COLUMNS if c not in table]
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        return _typed(table.reindex(columns=list(SUMMARY_COLUMNS)))
    except (ImiliaError, OSError, ValueError, TypeError) as error:
        raise ImiliaError(
            f"{path} is not a cohort table this program wrote ({one_line(error)}); move it "
            "away and run again"
        ) from error


def write_cohort_csv(out_dir: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Merge ``table`` into ``out_dir/cohort.csv`` (see the module docstring) and write it
    atomically; returns the merged table. Within ``table`` the first row of a slide id wins
    (a second slide with the same id cannot have a result of its own)."""
    from napari_imilia.predict.lock import file_lock

    path = out_dir / SUMMARY_FILE
    rows: dict[str, dict[str, Any]] = {}
    with file_lock(out_dir, "cohort"):
        _unlink_all(out_dir.glob(f".{SUMMARY_FILE}.*.tmp"))  # of writers killed: none runs now
        if path.is_file():
            for row in read_summary(path).to_dict("records"):
                rows.setdefault(row["slide_id"], row)
        new: set[str] = set()
        for row in table.to_dict("records"):
            if row["slide_id"] not in new:
                rows[row["slide_id"]] = row  # in place when known, appended when new
                new.add(row["slide_id"])
        merged = _typed(pd.DataFrame(list(rows.values()), columns=list(SUMMARY_COLUMNS)))
        write_text_atomic(path, spreadsheet_csv(merged))
    return merged


def remove_stray_files(out_dir: Path, cache_dir: Path, slide_ids: Iterable[str]) -> list[Path]:
    """Remove what interrupted runs (a killed worker, Ctrl-C) left for these slides; returns
    what was removed. Safe while other processes write, because it only removes what nobody
    writes: hidden staging folders in ``out_dir/<slide_id>/`` while that slide's write lock
    is free (:mod:`~napari_imilia.predict.lock`: a writer holds it as long as its staging
    exists), and temporary feature files ``cache_dir/.<slide_id>.h5.*.tmp`` older than
    :data:`STALE_TEMP_S` (a feature cache may be shared with runs into other folders).
    """
    from napari_imilia.predict.lock import slide_lock_if_free

    removed: list[Path] = []
    for slide_id in slide_ids:
        folder = out_dir / slide_id
        stale = list(folder.glob(".staging-*")) if folder.is_dir() else []
        if stale:
            with slide_lock_if_free(folder) as free:
                for staging in stale if free else ():
                    shutil.rmtree(staging, ignore_errors=True)
                    removed.append(staging)
        old_s = time.time() - STALE_TEMP_S
        temporary = cache_dir.glob(f".{slide_id}.h5.*.tmp")
        removed.extend(_unlink_all(p for p in temporary if _modified_s(p) < old_s))
    return removed


def _modified_s(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _unlink_all(paths: Iterable[Path]) -> list[Path]:
    removed = []
    for path in paths:
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
