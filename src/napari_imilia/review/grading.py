"""One reader grading one slide: what their form shows and what committing does (no Qt).

:func:`grading_state` gathers, for a reader and a slide, everything a grade form needs: their
committed reads (pre-AI and post-AI), their draft, the phase their next grade gets and
whether the model is hidden from them; :func:`commit_grade` commits a grade in that phase
(their journal, :mod:`napari_imilia.review.reads`) and drops their draft. The Cohort and the
napari grade form both go through here, so the study's rules hold whatever the route.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.review.drafts import GradeDraft, clear_draft, load_draft
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.reads import (
    POST_AI,
    PRE_AI,
    GradeRead,
    append_read,
    latest_grade,
    load_slide_reads,
)
from napari_imilia.review.study import Study, commit_phase, load_study
from napari_imilia.trust.results import results_path


@dataclass(frozen=True)
class GradingState:
    """``reader``'s grading of ``slide_id``: ``pre_ai`` / ``post_ai`` their newest reads in
    each phase, ``draft`` their unsaved grade, ``next_phase`` what a commit now would be
    (None: their blind grade is final), ``model_hidden`` whether the model must stay hidden,
    ``study`` the study of the results folder (None outside one)."""

    slide_id: str
    reader: str
    study: Study | None
    pre_ai: GradeRead | None
    post_ai: GradeRead | None
    draft: GradeDraft | None
    next_phase: str | None
    warnings: tuple[str, ...] = ()

    @property
    def model_hidden(self) -> bool:
        return self.next_phase == PRE_AI

    @property
    def in_study(self) -> bool:
        return self.study is not None and self.study.includes(self.slide_id)

    @property
    def committed(self) -> GradeRead | None:
        """The read to show: the one the next commit would replace, else the newest."""
        if self.next_phase == PRE_AI:
            return self.pre_ai
        if self.next_phase == POST_AI and self.post_ai is not None:
            return self.post_ai
        return self.post_ai or self.pre_ai


def grading_state(results_root: str | os.PathLike[str], slide_id: str, reader: str) -> GradingState:
    """``reader``'s grading of ``slide_id`` in ``results_root`` (their own files only). A
    study that cannot be read keeps the model hidden and allows no commit (``DataError``)."""
    study = load_study(results_root)
    folder = results_path(results_root, slide_id)
    own = load_slide_reads(folder, slide_id, reader=reader)
    return GradingState(
        slide_id=slide_id,
        reader=reader,
        study=study,
        pre_ai=own.latest(reader, PRE_AI),
        post_ai=own.latest(reader, POST_AI),
        draft=load_draft(folder, slide_id, reader),
        next_phase=commit_phase(study, own, reader),
        warnings=tuple(own.warnings),
    )


def commit_grade(
    results_root: str | os.PathLike[str],
    slide_id: str,
    reader: str,
    grade: SlideGrade,
    *,
    started_utc: str = "",
) -> GradeRead:
    """Commit ``reader``'s ``grade`` of ``slide_id`` in the phase the study gives it and
    drop their draft; returns the read as saved. ``ImiliaError`` when the study allows no
    more grades of theirs on it, or wants a reviewer name and there is none."""
    study = load_study(results_root)
    folder = results_path(results_root, slide_id)
    own = load_slide_reads(folder, slide_id, reader=reader)
    if study is not None and study.includes(slide_id) and not reader:
        raise ImiliaError("a reader study needs your reviewer name before your first grade")
    phase = commit_phase(study, own, reader)
    if phase is None:
        raise ImiliaError(
            f"your blind grade of {slide_id} is final: this study has no second read after "
            "the model is shown"
        )
    if grade.is_blank or (study is not None and not grade.is_graded):
        raise DataError("choose a Nancy grade or an activity before committing the grade")
    read = GradeRead(
        slide_id=slide_id,
        reader=reader,
        phase=phase,
        grade=grade,
        study_id="" if study is None or not study.includes(slide_id) else study.study_id,
        started_utc=started_utc,
    )
    saved = append_read(folder, read)
    clear_draft(folder, reader)
    return saved


def shown_grade(
    results_root: str | os.PathLike[str], slide_id: str, reader: str
) -> SlideGrade | None:
    """The grade of ``slide_id`` that may be shown to ``reader``: in a study, their own
    newest (other readers' stay theirs; a study that cannot be read counts as one), else
    the newest by anyone (:func:`~napari_imilia.review.reads.latest_grade`)."""
    folder = results_path(results_root, slide_id)
    try:
        study = load_study(results_root)
        in_study = study is not None and study.includes(slide_id)
    except DataError:
        in_study = True
    if not in_study:
        return latest_grade(folder, slide_id)
    read = load_slide_reads(folder, slide_id, reader=reader).latest(reader)
    return None if read is None else dataclasses.replace(read.grade, updated_utc=read.utc)
