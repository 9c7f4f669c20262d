"""One slide of a cohort (``CohortItem``) and what is read about it from the disk (no Qt)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.predict.colour_scale import RANGES_KEY
from napari_imilia.review.drafts import has_draft
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.reads import SlideReads, load_slide_reads
from napari_imilia.review.study import Study, model_hidden
from napari_imilia.slide.discover import FoundSlide
from napari_imilia.trust.paths import absolute_path, safe_name
from napari_imilia.trust.results import read_results_json

#: Columns of :func:`review_table`.
TABLE_COLUMNS: tuple[str, ...] = (
    "slide_id",
    "score",
    "n_tiles",
    "status",
    "nancy",
    "activity",
    "model_agreement",
    "reviewer",
    "note",
    "error",
    "path",
)


@dataclass
class CohortItem:
    """One slide of the cohort. ``score`` (0-1), ``n_tiles``, ``model_sha256`` and
    ``value_ranges`` (its tile values' percentiles, for colour scales shared across the
    cohort: ``predict.colour_scale``) come from its cached result; ``labels``: the cohort
    CSV's label columns; ``error``: why the status is 'error'. ``grade``: the grade shown to
    the cohort's reader (their own in a study, else the newest by anyone); ``reads``: every
    reader's grades; ``model_hidden``: the score must not be shown to the reader (blinded
    study, not yet graded by them); ``has_draft``: the reader keeps an unsaved grade of it;
    ``legacy_grade``: the copy an old cohort file kept."""

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
    reads: SlideReads | None = None
    model_hidden: bool = False
    has_draft: bool = False
    legacy_grade: SlideGrade | None = None

    @property
    def shown_score(self) -> float | None:
        """The score, or None where the model is hidden from the reader."""
        return None if self.model_hidden else self.score

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
            **({} if self.legacy_grade is None else {"legacy_grade": self.legacy_grade.to_dict()}),
        }


def item_from_record(record: dict[str, Any]) -> CohortItem:
    """A ``CohortItem`` from its record in the cohort file (``ValueError``/``KeyError`` if bad).

    The slide id is cleaned again (:func:`~napari_imilia.trust.paths.safe_name`), as when it
    was made from the file name: a hand-edited id such as ``../elsewhere`` or
    ``javascript:...`` becomes a harmless folder name inside the results folder."""
    if not isinstance(record, dict):
        raise ValueError("a slide record is not an object")
    grade = record.get("legacy_grade", record.get("grade"))  # schema 1 kept a copy
    labels = record.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"labels of {record.get('slide_id')!r} are not an object")
    return CohortItem(
        path=str(record["path"]),
        slide_id=safe_name(str(record["slide_id"])),
        labels={str(k): str(v) for k, v in labels.items()},
        legacy_grade=None if grade is None else SlideGrade.from_dict(grade),
        opened_utc=str(record.get("opened_utc") or ""),
        score_error=str(record.get("score_error") or ""),
    )


def add_sources(items: list[CohortItem], sources: list[FoundSlide]) -> None:
    """Append the slides of ``sources`` not in ``items`` yet; labels of known ones merged."""
    from napari_imilia.slide import slide_id_for

    known = {absolute_path(item.path): item for item in items}
    for source in sources:  # absolute paths (the finder's); a saved cohort's may not be
        item = known.get(Path(source.path))
        if item is not None:
            item.labels = {**item.labels, **source.labels}
            continue
        item = CohortItem(path=source.path, slide_id=slide_id_for(source.path))
        item.labels = dict(source.labels)
        items.append(item)
        known[Path(source.path)] = item


def merge_saved_records(
    ours: list[dict[str, Any]], on_disk: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Our slide records with what another process saved meanwhile taken in: the earliest
    ``opened_utc``, labels ours over theirs, and slides only they have appended."""
    theirs = {r.get("path"): r for r in on_disk if isinstance(r, dict)}
    merged = []
    for record in ours:
        other = theirs.pop(record["path"], None)
        if isinstance(other, dict):
            opened = [t for t in (record["opened_utc"], other.get("opened_utc")) if t]
            record = {**record, "opened_utc": min(opened) if opened else ""}
            if isinstance(other.get("labels"), dict):
                record["labels"] = {**other["labels"], **record["labels"]}
        merged.append(record)
    for record in theirs.values():
        try:
            merged.append(item_from_record(record).record())
        except (ValueError, KeyError, TypeError):
            continue
    return merged


def read_grades(
    item: CohortItem, folder: Path, study: Study | None, reader: str, *, hide_all: bool = False
) -> None:
    """Fill ``item``'s reads, shown grade, draft flag and blinding from ``folder``."""
    reads = load_slide_reads(folder, item.slide_id, legacy=item.legacy_grade)
    item.reads = reads
    in_study = study is not None and study.includes(item.slide_id)
    shown = reads.latest(reader) if in_study else reads.latest()
    item.grade = None if shown is None else shown.grade
    own = SlideReads(item.slide_id, reads.of(reader))
    item.model_hidden = hide_all or model_hidden(study, own, reader)
    item.has_draft = has_draft(folder, reader)


def reading_order(items: list[CohortItem], study: Study | None, reader: str) -> list[int]:
    """Indices of ``items`` in the order ``reader`` reads them: in a study, the study's
    slides in the reader's recorded order, then the others in cohort order."""
    if study is None:
        return list(range(len(items)))
    where = {item.slide_id: i for i, item in reversed(list(enumerate(items)))}
    first = [where[s] for s in study.order_for(reader) if s in where]
    return first + [i for i in range(len(items)) if i not in set(first)]


def review_table(items: list[CohortItem]) -> pd.DataFrame:
    """One row per slide, columns :data:`TABLE_COLUMNS` plus the CSV labels (prefixed
    ``label_``); the score is left out where the model is hidden from the reader."""
    rows = []
    for item in items:
        grade = item.grade or SlideGrade()
        rows.append(
            {
                "slide_id": item.slide_id,
                "score": item.shown_score,
                "n_tiles": item.n_tiles,
                "status": item.status,
                "nancy": grade.nancy,
                "activity": grade.effective_activity,
                "model_agreement": grade.model_agreement,
                "reviewer": grade.reviewer,
                "note": grade.note,
                "error": item.error,
                "path": item.path,
                **{f"label_{k}": v for k, v in item.labels.items()},
            }
        )
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(TABLE_COLUMNS))
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    table["n_tiles"] = pd.to_numeric(table["n_tiles"], errors="coerce").astype("Int64")
    table["nancy"] = pd.to_numeric(table["nancy"], errors="coerce").astype("Int64")
    return table


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


def read_item_results(
    item: CohortItem,
    folder: Path,
    owner: str,
    study: Study | None,
    reader: str,
    *,
    hide_all: bool = False,
) -> None:
    """Fill ``item``'s file error, score, grades and tile-review flag from its results
    ``folder``; ``owner``: the path of the first slide with its id (another path: a
    duplicate id, an error); ``hide_all``: hide the model on every slide (a study that
    cannot be read)."""
    if owner != item.path and Path(owner) != Path(item.path):
        item.file_error = (
            f"duplicate slide id {item.slide_id!r}: {owner} has it too, and their results "
            "would overwrite each other; rename one of the files"
        )
    elif not os.path.exists(item.path):  # a file, or a DICOM WSI series' folder
        item.file_error = f"slide file not found: {item.path} (moved or deleted?)"
    try:  # one listing per slide: a cohort of 1,000 opens in well under a second
        names = set() if item.file_error else set(os.listdir(folder))
    except OSError:  # no results folder yet
        names = set()
    info = None
    try:
        info = read_slide_json(folder, item.slide_id) if "slide.json" in names else None
    except DataError as error:
        item.score_error = f"its result cannot be read: {error}"
    item.score = None if info is None else float(info["score"])
    item.n_tiles = None if info is None else int(info.get("n_tiles", 0))
    item.model = "" if info is None else str(info.get("model", ""))
    item.model_sha256 = "" if info is None else str(info.get("model_sha256") or "")
    ranges = None if info is None else info.get(RANGES_KEY)
    item.value_ranges = ranges if isinstance(ranges, dict) else None
    if item.score is not None:
        item.score_error = ""
    if owner == item.path or Path(owner) == Path(item.path):  # a slide moved away keeps grades
        try:
            read_grades(item, folder, study, reader, hide_all=hide_all)
        except ImiliaError as error:  # e.g. a grade file of another slide: costs this one
            item.file_error = item.file_error or str(error)
    if not item.file_error:
        item.has_tile_reviews = "review.json" in names
    if not item.file_error and item.score is None and not item.score_error:
        item.file_error = unreadable_reason(item.path)
