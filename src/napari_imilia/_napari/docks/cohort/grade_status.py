"""What the grade form says about the reader's grading of a slide: the phase cue, the
commit button's text and the saved line (plain text, no Qt)."""

from __future__ import annotations

from napari_imilia.review.grade import NANCY_GRADES
from napari_imilia.review.grading import GradingState
from napari_imilia.review.reads import PRE_AI, GradeRead


def _when(utc: str) -> str:
    return utc[:16].replace("T", " ") + " UTC" if utc else ""


def _grade_words(read: GradeRead) -> str:
    grade = read.grade
    nancy = "-" if grade.nancy is None else f"Nancy {grade.nancy} ({NANCY_GRADES[grade.nancy][0]})"
    return f"{nancy}, {grade.effective_activity or 'no activity'}"


def phase_cue(grading: GradingState | None) -> str:
    """One or two lines over the form in a study: the study and the phase ('' outside one;
    a draft being shown is said on the status line, :func:`draft_text`)."""
    if grading is None:
        return ""
    lines = []
    if grading.in_study:
        study = grading.study
        lines.append(f"Reader study {study.name or study.study_id}: {study.design_text()}.")
        if grading.next_phase == PRE_AI:
            lines.append("Blind read: the model is hidden until you commit your grade.")
        elif grading.next_phase is None and grading.pre_ai is not None:
            lines.append(f"Your blind grade is final: {_grade_words(grading.pre_ai)}.")
        elif grading.pre_ai is not None:
            lines.append(
                f"Second read, with the model shown. Your blind grade stays as it was: "
                f"{_grade_words(grading.pre_ai)}."
            )
    return "\n".join(lines)


def draft_text(grading: GradingState | None) -> str:
    """'DRAFT of 2026-05-01 10:02 UTC, not saved yet' when the form shows a draft, else ''."""
    draft = None if grading is None else grading.draft
    if draft is None or draft.phase != grading.next_phase:
        return ""
    return f"DRAFT of {_when(draft.saved_utc)}, not saved yet"


def button_text(grading: GradingState | None) -> str:
    """'Commit blind grade (shows the model)', 'Commit second read', 'Save slide grade'."""
    if grading is None or not grading.in_study:
        return "Save slide grade"
    if grading.next_phase == PRE_AI:
        return "Commit blind grade (shows the model)"
    if grading.next_phase is None:
        return "Blind grade committed"
    return "Commit second read (after the model)"


def saved_text(grading: GradingState | None) -> str:
    """'saved 2026-05-01 10:02 UTC' for the grade shown ('' when none)."""
    read = None if grading is None else grading.committed
    if read is None:
        return ""
    phase = f" ({read.phase})" if grading.in_study else ""
    return f"saved {_when(read.utc)}{phase}"
