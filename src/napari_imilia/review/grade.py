"""The pathologist's slide-level grade: Nancy histological index, activity, agreement (no Qt).

One ``SlideGrade`` per slide, saved atomically as ``slide_grade.json`` in the slide's results
folder (``results_root/<slide_id>``, beside the tile review's ``review.json``), so it travels
with the slide's review and survives a crash. The cohort file keeps a copy (see
:mod:`napari_imilia.cohort.review`); the newer of the two wins when they differ.

Nancy index (Marchal-Bressenot et al., Gut 2017; "A practical guide to assess the Nancy
histological index for UC", Gut 2016), decided top-down: ulceration gives grade 4, else a
moderate-to-severe acute inflammatory cell infiltrate 3, a mild one 2, else a moderate or
marked chronic infiltrate 1, else 0. Grades 2-4 are histologically active disease.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic
from napari_imilia.review.entry import utc_now
from napari_imilia.trust.results import move_aside, read_results_json, shown

GRADE_FILE = "slide_grade.json"
GRADE_FORMAT = "napari-imilia-slide-grade"
GRADE_SCHEMA_VERSION = 1
#: Nancy histological index: grade -> (short name, definition shown to the reviewer).
NANCY_GRADES: dict[int, tuple[str, str]] = {
    0: ("no significant disease", "no or mild increase of the chronic inflammatory infiltrate"),
    1: (
        "chronic inflammation",
        "moderate or marked increase of the chronic inflammatory infiltrate, no acute "
        "inflammatory cells",
    ),
    2: (
        "mildly active",
        "mild acute inflammatory cell infiltrate: few neutrophils in the lamina propria or "
        "epithelium, hard to see",
    ),
    3: (
        "moderately active",
        "moderate to severe acute inflammatory cell infiltrate: clusters of neutrophils, "
        "easily seen, no ulceration",
    ),
    4: (
        "severely active",
        "ulceration: crypts lost and replaced by inflamed granulation tissue, or "
        "fibrinopurulent exudate",
    ),
}
#: Lowest Nancy grade that is histologically active disease.
NANCY_ACTIVE_FROM = 2
ACTIVITIES: tuple[str, ...] = ("active", "inactive")
AGREEMENTS: tuple[str, ...] = ("agree", "disagree")


def nancy_label(grade: int) -> str:
    """'2 - mildly active: mild acute inflammatory cell infiltrate...' for a grade 0-4."""
    name, definition = NANCY_GRADES[int(grade)]
    return f"{grade} - {name}: {definition}"


def activity_for_nancy(grade: int | None) -> str:
    """'active' for Nancy 2-4, 'inactive' for 0-1, '' when there is no grade."""
    if grade is None:
        return ""
    return "active" if int(grade) >= NANCY_ACTIVE_FROM else "inactive"


@dataclass(frozen=True)
class SlideGrade:
    """A slide's grade. ``nancy``: 0-4 or None; ``activity``: 'active', 'inactive' or ''
    (unset: follows the Nancy grade); ``model_agreement``: 'agree', 'disagree' or '' with
    the model's call on the slide; ``note`` and ``reviewer`` free text; ``updated_utc`` ISO."""

    nancy: int | None = None
    activity: str = ""
    model_agreement: str = ""
    note: str = ""
    reviewer: str = ""
    updated_utc: str = ""

    @property
    def effective_activity(self) -> str:
        """``activity`` when set, else the one the Nancy grade implies ('' if neither)."""
        return self.activity or activity_for_nancy(self.nancy)

    @property
    def is_graded(self) -> bool:
        """True when the reviewer gave a Nancy grade or an activity."""
        return self.nancy is not None or bool(self.activity)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SlideGrade:
        """A validated grade from :meth:`to_dict`'s dict (unknown keys are an error)."""
        if not isinstance(data, dict):
            raise DataError(f"a slide grade must be an object, got {data!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DataError(f"slide grade has unknown field(s) {', '.join(unknown)}")
        return validate_grade(cls(**data))


def validate_grade(grade: SlideGrade) -> SlideGrade:
    """``grade`` checked and normalised (nancy as int, texts as str); ``DataError`` if bad."""
    nancy = grade.nancy
    if nancy is not None:
        if isinstance(nancy, bool) or not isinstance(nancy, int | float | str):
            raise DataError(f"Nancy grade must be 0-4, got {nancy!r}")
        try:
            value = float(nancy)
        except ValueError:
            raise DataError(f"Nancy grade must be 0-4, got {nancy!r}") from None
        if value not in NANCY_GRADES:
            raise DataError(f"Nancy grade must be 0, 1, 2, 3 or 4, got {nancy!r}")
        nancy = int(value)
    activity = str(grade.activity or "").strip().lower()
    if activity and activity not in ACTIVITIES:
        raise DataError(f"activity must be 'active' or 'inactive', got {grade.activity!r}")
    agreement = str(grade.model_agreement or "").strip().lower()
    if agreement and agreement not in AGREEMENTS:
        raise DataError(
            f"agreement with the model must be 'agree' or 'disagree', got {grade.model_agreement!r}"
        )
    return SlideGrade(
        nancy=nancy,
        activity=activity,
        model_agreement=agreement,
        note=str(grade.note or ""),
        reviewer=str(grade.reviewer or "").strip(),
        updated_utc=str(grade.updated_utc or ""),
    )


def load_slide_grade(results_dir: str | os.PathLike[str], slide_id: str) -> SlideGrade | None:
    """The grade saved in ``results_dir/slide_grade.json``, or None when there is none.

    A damaged file, or one refused by the results-folder gate (a link out of the folder, a
    FIFO, over the size or nesting limits: :mod:`napari_imilia.trust.results`), is moved
    aside (``slide_grade.json.corrupt-<UTC>``) with a warning and None is returned; a file
    of another slide raises ``DataError``.
    """
    path = Path(results_dir) / GRADE_FILE
    if not os.path.lexists(path):
        return None
    try:
        data = read_results_json(path, results_dir)
        if not isinstance(data, dict) or data.get("format") != GRADE_FORMAT:
            raise ValueError("not a napari-imilia slide grade file")
        owner = data.get("slide_id")
        grade = SlideGrade.from_dict(data["grade"])
    except (ValueError, KeyError, UnicodeDecodeError, DataError, TypeError) as exc:
        try:
            kept = f"kept as {move_aside(path).name}"
        except OSError as error:  # a read-only share: leave it where it is
            kept = f"left in place ({error.strerror})"
        warnings.warn(
            f"{path} could not be read ({type(exc).__name__}: {exc}); {kept}", stacklevel=2
        )
        return None
    if owner != slide_id:
        raise DataError(
            f"{path} is the grade of slide {shown(owner)}, not {slide_id!r}; open the results "
            "folder of the right slide"
        )
    return grade


def save_slide_grade(
    results_dir: str | os.PathLike[str], slide_id: str, grade: SlideGrade
) -> SlideGrade:
    """Validate ``grade``, stamp ``updated_utc`` (now) and write ``slide_grade.json``
    atomically; returns the grade as saved."""
    saved = dataclasses.replace(validate_grade(grade), updated_utc=utc_now())
    data = {
        "format": GRADE_FORMAT,
        "schema_version": GRADE_SCHEMA_VERSION,
        "slide_id": str(slide_id),
        "grade": saved.to_dict(),
    }
    write_text_atomic(
        Path(results_dir) / GRADE_FILE, json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    )
    return saved
