"""Labelled bags for training: a ``slide_id,label`` CSV joined to ``DIR/<slide_id>.h5`` files.

Every problem a user can fix is a ``DataError`` naming the file, the slide ids or the column.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia.errors import DataError
from napari_imilia.features.cache import read_features
from napari_imilia.files import sha256_file

LABEL_COLUMNS: tuple[str, str] = ("slide_id", "label")
#: Feature-file attributes that must agree across the slides of one training set.
SHARED_ATTRS: tuple[str, ...] = ("extractor", "target_mpp", "tile_px")


@dataclass
class LabelledBags:
    """Slides with their tile features (N_i x D) and 0/1 labels, in the labels file's order."""

    slide_ids: list[str]
    bags: list[np.ndarray]
    labels: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    labels_sha256: str = ""
    ignored_feature_files: list[str] = field(default_factory=list)

    @property
    def in_dim(self) -> int:
        return int(self.bags[0].shape[1])


def _name(ids: Iterable[str], limit: int = 10) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and check a ``slide_id,label`` CSV (labels 0/1, ids unique and non-blank)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file not found: {path}")
    try:
        table = pd.read_csv(  # only an empty cell is missing: a slide named NA keeps its id
            path,
            dtype={"slide_id": str},
            skipinitialspace=True,
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV: {error}") from error
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{path} lacks column(s) {', '.join(missing)}; expected a header 'slide_id,label' "
            f"(found: {', '.join(table.columns) or 'no columns'})"
        )
    if table.empty:
        raise DataError(f"{path} has no rows")
    ids = table["slide_id"].fillna("").astype(str).str.strip()
    blank = [str(i + 2) for i in np.flatnonzero(ids == "")]
    if blank:
        raise DataError(f"{path}: blank slide_id on line(s) {_name(blank)}")
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise DataError(f"{path}: slide id(s) listed more than once: {_name(duplicated)}")
    labels = pd.to_numeric(table["label"], errors="coerce")
    bad = ids[~labels.isin((0, 1))].tolist()
    if bad:
        raise DataError(f"{path}: label must be 0 or 1; not so for slide(s) {_name(bad)}")
    return pd.DataFrame({"slide_id": ids, "label": labels.astype(np.int64)})


def check_class_counts(labels: np.ndarray, folds: int, source: str) -> None:
    """``DataError`` for a single class or fewer slides of a class than ``folds``."""
    counts = {c: int((labels == c).sum()) for c in (0, 1)}
    for cls, count in counts.items():
        if count == 0:
            raise DataError(
                f"{source}: every slide has label {1 - cls}; training needs slides with label 0 "
                "and slides with label 1"
            )
    for cls, count in counts.items():
        if count < folds:
            raise DataError(
                f"{source}: only {count} slide(s) with label {cls}, fewer than the {folds} "
                f"folds; use --folds {min(counts.values())} or fewer (at least 2), or add slides"
            )


def load_labelled_bags(
    features_dir: str | Path, labels_path: str | Path, *, folds: int | None = None
) -> LabelledBags:
    """Join the labels CSV to ``features_dir/<slide_id>.h5`` and read every bag."""
    features_dir = Path(features_dir)
    if not features_dir.is_dir():
        raise DataError(f"features folder not found: {features_dir}")
    table = read_labels(labels_path)
    ids = table["slide_id"].tolist()
    available = {p.stem for p in features_dir.glob("*.h5")}
    unknown = [s for s in ids if s not in available]
    if unknown:
        raise DataError(
            f"{Path(labels_path).name} names slide(s) with no feature file in {features_dir}: "
            f"{_name(unknown)} (expected {features_dir}/<slide_id>.h5; the folder has "
            f"{len(available)} .h5 file(s))"
        )
    labels = table["label"].to_numpy()
    if folds is not None:
        check_class_counts(labels, folds, Path(labels_path).name)
    bags, attrs_seen = [], {}
    for slide_id in ids:
        bag = read_features(features_dir / f"{slide_id}.h5")
        if bag.n_tiles == 0:
            raise DataError(f"{slide_id}.h5 has no tiles; drop the slide from the labels file")
        bags.append(bag.features)
        for key in SHARED_ATTRS:
            attrs_seen.setdefault(key, {}).setdefault(_hashable(bag.attrs.get(key)), slide_id)
    dims = {}
    for slide_id, bag in zip(ids, bags, strict=True):
        dims.setdefault(int(bag.shape[1]), slide_id)
    if len(dims) > 1:
        detail = ", ".join(f"{d}-d (e.g. {s})" for d, s in dims.items())
        raise DataError(f"feature files have different dimensions: {detail}")
    for key, values in attrs_seen.items():
        if len(values) > 1:
            detail = ", ".join(f"{v!r} (e.g. {s})" for v, s in values.items())
            raise DataError(f"feature files disagree on {key}: {detail}; use one extraction")
    attrs = {key: next(iter(values)) for key, values in attrs_seen.items()}
    return LabelledBags(
        slide_ids=ids,
        bags=bags,
        labels=labels,
        attrs=attrs,
        labels_sha256=sha256_file(labels_path),
        ignored_feature_files=sorted(available - set(ids)),
    )


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict):
        return repr(value)
    if isinstance(value, float):
        return round(value, 9)
    return value
