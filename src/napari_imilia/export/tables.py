"""Plain CSV tables (for pandas and Excel) with their provenance in a JSON sidecar.

``tiles.csv`` gets ``tiles.meta.json``: the ``ExportContext``, the column names and kinds,
the row count and the SHA-256 of the CSV bytes, so a table edited after export is noticed.
Coordinates in tables are level-0 pixels, (x, y), top-left origin.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import pandas as pd

from napari_imilia.errors import DataError
from napari_imilia.export.context import EXPORT_FORMAT_VERSION, METADATA_KEY, ExportContext
from napari_imilia.files import write_bytes_atomic, write_text_atomic


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
    data = df.to_csv(index=False, lineterminator="\n").encode("utf-8")
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
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("table"), dict):
            raise ValueError("no 'table' member")
        return meta
    except (ValueError, UnicodeDecodeError) as exc:
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
    meta = _read_meta(meta_path) if meta_path.is_file() else None
    raw = path.read_bytes()
    try:
        if meta is not None:
            kinds = meta["table"].get("columns", {})
            text_columns = [c for c, kind in kinds.items() if kind == "str"]
        else:
            header = pd.read_csv(io.BytesIO(raw), nrows=0).columns
            text_columns = [c for c in header if c == "id" or str(c).endswith("_id")]
        df = pd.read_csv(io.BytesIO(raw), dtype=dict.fromkeys(text_columns, str))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from exc
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
