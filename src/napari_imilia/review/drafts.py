"""A reader's unsaved slide grade, kept as that slide's draft until it is committed (no Qt).

Whatever a reader typed in the grade form (Nancy, activity, agreement, note, item grades)
and has not committed is written, atomically, to::

    <results_root>/<slide_id>/grades/<reader key>.draft.json

so leaving the slide (Alt+N / Alt+P, another row), closing napari or a crash keeps it; the
form shows it again with a cue. Committing the grade removes the draft. One file per reader
and slide, written only by that reader, like their reads (:mod:`napari_imilia.review.reads`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic
from napari_imilia.review.entry import utc_now
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.reads import (
    PHASES,
    READS_DIR,
    reader_key,
)
from napari_imilia.trust.json_limits import ImportLimits
from napari_imilia.trust.results import read_results_json

DRAFT_SUFFIX = ".draft.json"
DRAFT_FORMAT = "napari-imilia-grade-draft"
MAX_DRAFT_BYTES = 1 << 20


@dataclass(frozen=True)
class GradeDraft:
    """``grade`` as typed, not committed, for the read of ``phase``; ``saved_utc``: when."""

    slide_id: str
    reader: str
    phase: str
    grade: SlideGrade
    saved_utc: str = ""


def draft_path(slide_dir: str | os.PathLike[str], reader: str) -> Path:
    """Where ``reader``'s draft of the slide in ``slide_dir`` is kept."""
    return Path(slide_dir) / READS_DIR / (reader_key(reader) + DRAFT_SUFFIX)


def save_draft(
    slide_dir: str | os.PathLike[str], slide_id: str, reader: str, grade: SlideGrade, phase: str
) -> GradeDraft:
    """Keep ``grade`` as ``reader``'s draft of the slide (atomic write); a blank grade
    removes the draft instead. Returns the draft as kept."""
    if phase not in PHASES:
        raise DataError(f"draft phase must be one of {', '.join(PHASES)}, got {phase!r}")
    draft = GradeDraft(slide_id, reader, phase, grade, utc_now())
    path = draft_path(slide_dir, reader)
    if grade.is_blank:
        clear_draft(slide_dir, reader)
        return draft
    data = {
        "format": DRAFT_FORMAT,
        "slide_id": slide_id,
        "reader": reader,
        "phase": phase,
        "saved_utc": draft.saved_utc,
        "grade": grade.to_dict(),
    }
    write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return draft


def load_draft(slide_dir: str | os.PathLike[str], slide_id: str, reader: str) -> GradeDraft | None:
    """``reader``'s draft of the slide, or None (none, unreadable, of another slide or
    reader: a draft is a convenience, never a reason to stop)."""
    path = draft_path(slide_dir, reader)
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        limits = ImportLimits.from_env(max_bytes=MAX_DRAFT_BYTES)
        data = read_results_json(path, slide_dir, limits)
        if not isinstance(data, dict) or data.get("format") != DRAFT_FORMAT:
            return None
        if data.get("slide_id") != slide_id or data.get("reader") != reader:
            return None
        phase = data.get("phase")
        if phase not in PHASES:
            return None
        return GradeDraft(
            slide_id,
            reader,
            phase,
            SlideGrade.from_dict(data.get("grade")),
            str(data.get("saved_utc") or ""),
        )
    except DataError:
        return None


def clear_draft(slide_dir: str | os.PathLike[str], reader: str) -> None:
    """Forget ``reader``'s draft of the slide (after it was committed)."""
    draft_path(slide_dir, reader).unlink(missing_ok=True)


def has_draft(slide_dir: str | os.PathLike[str], reader: str) -> bool:
    """True when ``reader`` keeps a draft of the slide in ``slide_dir`` (not read)."""
    return draft_path(slide_dir, reader).is_file()
