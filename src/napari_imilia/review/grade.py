"""The pathologist's slide-level grade: Nancy histological index, activity, agreement (no Qt).

A ``SlideGrade`` is what a reader says about a slide. Each reader's grades are kept in their
own journal in the slide's results folder (:mod:`napari_imilia.review.reads`), with the
reader, the phase (before or after the model was shown) and time stamps; every grade is kept
and the latest is shown. Grades saved before reads existed, one ``slide_grade.json`` per slide
(:func:`load_slide_grade`), are read as one reader's grade and never rewritten.

Nancy index (Marchal-Bressenot et al., Gut 2017; "A practical guide to assess the Nancy
histological index for UC", Gut 2016), decided top-down: ulceration gives grade 4, else a
moderate-to-severe acute inflammatory cell infiltrate 3, a mild one 2, else a moderate or
marked chronic infiltrate 1, else 0. Grades 2-4 are histologically active disease.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_imilia.errors import DataError
from napari_imilia.trust.results import move_aside, read_results_json, shown

GRADE_FILE = "slide_grade.json"
GRADE_FORMAT = "napari-imilia-slide-grade"
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
#: Per-item index grades (``SlideGrade.items``): longest item name, highest item grade.
MAX_ITEM_NAME_CHARS = 64
MAX_ITEM_GRADE = 10
MAX_ITEMS = 32
#: Longest note kept (characters).
MAX_NOTE_CHARS = 10_000


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
    the model's call on the slide; ``note`` and ``reviewer`` free text; ``updated_utc`` ISO;
    ``items``: per-item index grades by item name (e.g. Nancy or Robarts items), 0 to
    :data:`MAX_ITEM_GRADE`, empty until a form fills them."""

    nancy: int | None = None
    activity: str = ""
    model_agreement: str = ""
    note: str = ""
    reviewer: str = ""
    updated_utc: str = ""
    items: dict[str, int] = field(default_factory=dict)

    @property
    def effective_activity(self) -> str:
        """``activity`` when set, else the one the Nancy grade implies ('' if neither)."""
        return self.activity or activity_for_nancy(self.nancy)

    @property
    def is_graded(self) -> bool:
        """True when the reviewer gave a Nancy grade or an activity."""
        return self.nancy is not None or bool(self.activity)

    @property
    def is_blank(self) -> bool:
        """True when nothing at all was filled in (no grade, agreement, note or item)."""
        return not (self.is_graded or self.model_agreement or self.note.strip() or self.items)

    def same_content(self, other: SlideGrade | None) -> bool:
        """True when ``other`` says the same (reviewer and time stamp aside)."""
        other = other or SlideGrade()
        keys = ("nancy", "activity", "model_agreement", "note", "items")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

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
    note = str(grade.note or "")
    if len(note) > MAX_NOTE_CHARS:
        raise DataError(f"note is longer than {MAX_NOTE_CHARS} characters")
    return SlideGrade(
        nancy=nancy,
        activity=activity,
        model_agreement=agreement,
        note=note,
        reviewer=str(grade.reviewer or "").strip(),
        updated_utc=str(grade.updated_utc or ""),
        items=validate_items(grade.items),
    )


def validate_items(items: Any) -> dict[str, int]:
    """Per-item index grades checked: names 1-64 characters, grades integers 0-10."""
    if items is None:
        return {}
    if not isinstance(items, dict):
        raise DataError(f"item grades must be an object of name: grade, got {items!r}")
    if len(items) > MAX_ITEMS:
        raise DataError(f"at most {MAX_ITEMS} item grades per slide, got {len(items)}")
    checked: dict[str, int] = {}
    for name, value in items.items():
        if not isinstance(name, str) or not 0 < len(name.strip()) <= MAX_ITEM_NAME_CHARS:
            raise DataError(f"item name must be 1-{MAX_ITEM_NAME_CHARS} characters: {name!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"grade of item {name!r} must be an integer, got {value!r}")
        if not 0 <= value <= MAX_ITEM_GRADE:
            raise DataError(f"grade of item {name!r} must be 0-{MAX_ITEM_GRADE}, got {value}")
        checked[name.strip()] = int(value)
    return checked


def load_slide_grade(results_dir: str | os.PathLike[str], slide_id: str) -> SlideGrade | None:
    """The legacy one-per-slide grade in ``results_dir/slide_grade.json``, or None.

    Read-only: new grades go to the readers' journals (:mod:`napari_imilia.review.reads`,
    whose ``latest_grade`` is what to show).

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
