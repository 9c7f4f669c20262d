"""Plain CSV tables (for pandas and Excel) with their provenance in a JSON sidecar, and the
one rule that keeps a spreadsheet from running what a CSV cell says.

``tiles.csv`` gets ``tiles.meta.json``: the ``ExportContext``, the column names and kinds,
the row count and the SHA-256 of the CSV bytes, so a table edited after export is noticed.
Coordinates in tables are level-0 pixels, (x, y), top-left origin.

Every CSV a reviewer may open in a spreadsheet is written through :func:`spreadsheet_csv`:
a text cell (or column name) starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return (OWASP's CSV injection rules) gets a leading ``'``, so Excel or LibreOffice shows it
as text instead of running it as a formula; numbers (numeric columns, and text that is a
plain number such as ``-0.5``) are left as they are. The rule is reversible
(:func:`spreadsheet_raw`) and the raw text stays in the JSON written beside each table.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import DataError, one_line
from napari_imilia.export.context import EXPORT_FORMAT_VERSION, METADATA_KEY, ExportContext
from napari_imilia.files import write_bytes_atomic, write_text_atomic
from napari_imilia.trust.results import read_results_bytes, read_results_json

#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")


def _triggers(text: str) -> bool:
    """Whether ``text``, past any leading quotes, starts like a formula and is no number."""
    return text.lstrip("'")[:1] in FORMULA_TRIGGERS and not _NUMBER.match(text.lstrip("'"))


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a spreadsheet may show it: text that would start a formula gets a leading
    ``'`` (see the module docstring); anything else, numbers included, is returned as is."""
    if isinstance(value, str) and value and _triggers(value):
        return "'" + value
    return value


def spreadsheet_raw(value: Any) -> Any:
    """The text :func:`spreadsheet_safe` was given (its inverse), read back from a CSV."""
    if isinstance(value, str) and value.startswith("'") and _triggers(value[1:]):
        return value[1:]
    return value


def _map_text(df: pd.DataFrame, cell: Any) -> pd.DataFrame:
    out = df.copy()
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if isinstance(column.dtype, pd.CategoricalDtype):  # new values are no category
            column = column.astype(object)
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            out.isetitem(i, column.map(cell, na_action="ignore").astype(column.dtype))
    out.columns = [cell(c) if isinstance(c, str) else c for c in out.columns]
    return out


def spreadsheet_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with :func:`spreadsheet_safe` applied to every text cell and column
    name (numeric and boolean columns untouched)."""
    return _map_text(df, spreadsheet_safe)


def raw_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A table read from a CSV written by :func:`spreadsheet_csv`, with the raw text back."""
    return _map_text(df, spreadsheet_raw)


def spreadsheet_csv(df: pd.DataFrame, **to_csv: Any) -> str:
    """``df.to_csv(index=False, **to_csv)`` with formula-like text neutralised: the one way
    a CSV for reviewers is written (``cohort.csv``, ``cohort_report.csv``, bundle tables)."""
    return spreadsheet_frame(df).to_csv(index=False, **to_csv)


def csv_meta_path(path: str | os.PathLike[str]) -> Path:
    """Sidecar of a CSV: ``name.csv`` -> ``name.meta.json`` in the same folder."""
    path = Path(path)
    stem = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return path.with_name(f"{stem}.meta.json")


def _column_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "str"


def write_table_csv(path: str | os.PathLike[str], df: pd.DataFrame, ctx: ExportContext) -> Path:
    """Write ``df`` (no index, full float precision) and its ``.meta.json`` sidecar atomically."""
    path = Path(path)
    if df.columns.duplicated().any():
        raise DataError(f"{path}: table has duplicate column names; rename them before export")
    data = spreadsheet_csv(df, lineterminator="\n").encode("utf-8")
    write_bytes_atomic(path, data)
    meta = {
        METADATA_KEY: ctx.to_dict(),
        "table": {
            "format_version": EXPORT_FORMAT_VERSION,
            "file": path.name,
            "n_rows": len(df),
            "columns": {str(c): _column_kind(df[c]) for c in df.columns},
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    }
    write_text_atomic(csv_meta_path(path), json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return path


def _read_meta(meta_path: Path) -> dict:
    try:
        meta = read_results_json(meta_path, None)
        if not isinstance(meta, dict) or not isinstance(meta.get("table"), dict):
            raise ValueError("no 'table' member")
        return meta
    except (DataError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{meta_path}: damaged metadata sidecar ({exc}); delete it to read the table "
            "without provenance, or export again"
        ) from exc


def read_table_csv(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, ExportContext | None]:
    """Read a CSV written by :func:`write_table_csv`, and its context (None without sidecar).

    Text columns (per the sidecar; without one, columns named ``id`` or ``*_id``) stay text,
    so ids like ``"000123"`` keep their zeros; empty text reads back as ``""``. A CSV changed
    since export is read with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file")
    meta_path = csv_meta_path(path)
    meta = _read_meta(meta_path) if os.path.lexists(meta_path) else None
    raw = read_results_bytes(path, None)
    try:
        if meta is not None:
            kinds = meta["table"].get("columns")
            kinds = kinds if isinstance(kinds, dict) else {}
            text_columns = [c for c, kind in kinds.items() if kind == "str"]
        else:
            header = pd.read_csv(io.BytesIO(raw), nrows=0).columns
            text_columns = [
                spreadsheet_raw(c) for c in header if c == "id" or str(c).endswith("_id")
            ]
        text_dtypes = {spreadsheet_safe(c): str for c in text_columns}
        # only an empty cell is missing: a note or id reading NA, NULL or nan stays text
        frame = pd.read_csv(
            io.BytesIO(raw), dtype=text_dtypes, keep_default_na=False, na_values=[""]
        )
        df = raw_frame(frame)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({one_line(exc)})") from exc
    for column in text_columns:
        if column in df:
            df[column] = df[column].fillna("")
    if meta is None:
        return df, None
    if meta["table"].get("sha256") != hashlib.sha256(raw).hexdigest():
        warnings.warn(
            f"{path} changed after export; its metadata ({meta_path.name}) may not describe it",
            stacklevel=2,
        )
    context = meta.get(METADATA_KEY)
    if not isinstance(context, dict):
        raise DataError(f"{meta_path}: sidecar lacks the '{METADATA_KEY}' export context")
    return df, ExportContext.from_dict(context, source=str(meta_path))
