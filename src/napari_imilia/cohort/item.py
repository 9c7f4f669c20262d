"""One slide of a cohort (``CohortItem``) and what is read about it from the disk (no Qt)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_imilia.review.grade import SlideGrade


@dataclass
class CohortItem:
    """One slide of the cohort. ``score`` (0-1), ``n_tiles``, ``model_sha256`` and
    ``value_ranges`` (its tile values' percentiles, for colour scales shared across the
    cohort: ``predict.colour_scale``) come from its cached result; ``labels``: the cohort
    CSV's label columns; ``error``: why the status is 'error'."""

    path: str
    slide_id: str
    labels: dict[str, str] = field(default_factory=dict)
    score: float | None = None
    n_tiles: int | None = None
    model: str = ""
    model_sha256: str = ""
    value_ranges: dict[str, Any] | None = None
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
    """A ``CohortItem`` from its record in the cohort file (``ValueError``/``KeyError`` if bad)."""
    grade = record.get("grade")
    labels = record.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"labels of {record.get('slide_id')!r} are not an object")
    return CohortItem(
        path=str(record["path"]),
        slide_id=str(record["slide_id"]),
        labels={str(k): str(v) for k, v in labels.items()},
        grade=None if grade is None else SlideGrade.from_dict(grade),
        opened_utc=str(record.get("opened_utc") or ""),
        score_error=str(record.get("score_error") or ""),
    )


def read_slide_json(folder: Path, slide_id: str) -> dict[str, Any] | None:
    """The cached result's ``slide.json`` of this slide, or None (absent, damaged, other)."""
    try:
        info = json.loads((folder / "slide.json").read_text(encoding="utf-8"))
        if str(info["slide_id"]) != slide_id or not (folder / "tiles.csv").is_file():
            return None
        float(info["score"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
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
