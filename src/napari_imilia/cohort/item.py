"""One slide of a cohort (``CohortItem``) and what is read about it from the disk (no Qt)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_imilia.errors import DataError
from napari_imilia.review.grade import SlideGrade
from napari_imilia.trust.paths import safe_name
from napari_imilia.trust.results import read_results_json


@dataclass
class CohortItem:
    """One slide of the cohort. ``score`` (0-1) and ``n_tiles`` come from its cached result;
    ``labels``: the cohort CSV's label columns; ``error``: why the status is 'error'."""

    path: str
    slide_id: str
    labels: dict[str, str] = field(default_factory=dict)
    score: float | None = None
    n_tiles: int | None = None
    model: str = ""
    grade: SlideGrade | None = None
    opened_utc: str = ""
    score_error: str = ""
    file_error: str = ""
    has_tile_reviews: bool = False

    @property
    def error(self) -> str:
        return self.file_error or (self.score_error if self.score is None else "")

    @property
    def scored(self) -> bool:
        return self.score is not None

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.grade is not None and self.grade.is_graded:
            return "reviewed"
        if self.opened_utc or self.has_tile_reviews:
            return "in review"
        return "scored" if self.scored else "not scored"

    def record(self) -> dict[str, Any]:
        """What the cohort file keeps of this slide (the rest is re-read from the results)."""
        return {
            "path": self.path,
            "slide_id": self.slide_id,
            "labels": dict(self.labels),
            "opened_utc": self.opened_utc,
            "score_error": self.score_error,
            "grade": None if self.grade is None else self.grade.to_dict(),
        }


def item_from_record(record: dict[str, Any]) -> CohortItem:
    """A ``CohortItem`` from its record in the cohort file (``ValueError``/``KeyError`` if bad).

    The slide id is cleaned again (:func:`~napari_imilia.trust.paths.safe_name`), as when it
    was made from the file name: a hand-edited id such as ``../elsewhere`` or
    ``javascript:...`` becomes a harmless folder name inside the results folder."""
    if not isinstance(record, dict):
        raise ValueError("a slide record is not an object")
    grade = record.get("grade")
    labels = record.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"labels of {record.get('slide_id')!r} are not an object")
    return CohortItem(
        path=str(record["path"]),
        slide_id=safe_name(str(record["slide_id"])),
        labels={str(k): str(v) for k, v in labels.items()},
        grade=None if grade is None else SlideGrade.from_dict(grade),
        opened_utc=str(record.get("opened_utc") or ""),
        score_error=str(record.get("score_error") or ""),
    )


def items_from_records(records: Any, source: Path) -> tuple[list[CohortItem], list[str]]:
    """The items of a cohort file's ``slides`` list (``ValueError``/``KeyError`` if bad), and
    a warning per slide id that :func:`item_from_record` had to clean."""
    if not isinstance(records, list):
        raise ValueError("'slides' is not a list")
    items = [item_from_record(record) for record in records]
    cleaned = [
        f"{source}: slide id {str(record['slide_id'])[:80]!r} is not a safe folder name; "
        f"read as {item.slide_id!r}"
        for record, item in zip(records, items, strict=True)
        if str(record["slide_id"]) != item.slide_id
    ]
    return items, cleaned


def read_slide_json(folder: Path, slide_id: str) -> dict[str, Any] | None:
    """The cached result's ``slide.json`` of this slide, or None when there is none (absent,
    incomplete, or of another slide). ``DataError`` when it is there but refused by the
    results-folder gate (:mod:`napari_imilia.trust.results`: a link out, a FIFO, over a
    limit) or damaged (no score 0-1, no tile count)."""
    path = folder / "slide.json"
    if not os.path.lexists(path):
        return None
    info = read_results_json(path, folder)
    try:
        if str(info["slide_id"]) != slide_id or not (folder / "tiles.csv").is_file():
            return None
        score = float(info["score"])
        int(info.get("n_tiles", 0))
    except (ValueError, KeyError, TypeError, OverflowError) as error:
        raise DataError(f"{path} is damaged ({type(error).__name__}: {error})") from error
    if not 0.0 <= score <= 1.0:  # NaN included
        raise DataError(f"{path} is damaged (score {info['score']!r} is not 0-1)")
    return info


def unreadable_reason(path: str) -> str:
    """'' when the slide opens (metadata only), else why not."""
    from napari_imilia.errors import SlideError
    from napari_imilia.slide import open_slide

    try:
        open_slide(path).close()
    except SlideError as exc:
        return str(exc)
    except Exception as exc:  # a file no reader expected: say what it was
        return f"cannot open {Path(path).name}: {type(exc).__name__}: {exc}"
    return ""
