"""A reader study: several readers grade the same slides, blinded to the model or not, with
or without a second read once the model is shown (no Qt).

The study is set up once on a results folder (``imilia study`` or the Cohort dock) and kept
in ``<results_root>/study.json``: its readers (reviewer identities,
:mod:`napari_imilia.review.reviewer`), its design (``blinded``: the model's output is hidden
from a reader until they commit their grade of the slide; ``second_read``: after that the
reader may give a post-AI grade, kept beside the first), its slides and, per reader, a
slide order shuffled with the recorded ``seed`` (a reader added later gets the order the
same seed gives their name). Grades themselves are reads (:mod:`napari_imilia.review.reads`)
stamped with the study's id.

:func:`commit_phase` says what a reader's next grade of a slide is (pre-AI, post-AI or
nothing: a blinded first read is final once the model was shown, unless the design has a
second read), :func:`model_hidden` whether the model must stay hidden from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.review.drafts import has_draft
from napari_imilia.review.entry import utc_now
from napari_imilia.review.reads import (
    POST_AI,
    PRE_AI,
    SlideReads,
    load_slide_reads,
)
from napari_imilia.review.reviewer import check_reviewer_name
from napari_imilia.trust.json_limits import ImportLimits
from napari_imilia.trust.paths import name_hash
from napari_imilia.trust.results import read_results_json, results_path

STUDY_FILE = "study.json"
STUDY_FORMAT = "napari-imilia-reader-study"
STUDY_SCHEMA_VERSION = 1
MAX_STUDY_BYTES = 16 << 20


def reader_order(seed: int, reader: str, slide_ids: tuple[str, ...]) -> tuple[str, ...]:
    """``slide_ids`` shuffled for ``reader``: the same seed and name give the same order."""
    rng = np.random.default_rng([int(seed), int(name_hash(reader), 16)])
    return tuple(slide_ids[i] for i in rng.permutation(len(slide_ids)))


@dataclass(frozen=True)
class Study:
    """A reader study (see the module docstring)."""

    study_id: str
    readers: tuple[str, ...]
    slide_ids: tuple[str, ...]
    blinded: bool = True
    second_read: bool = True
    seed: int = 0
    name: str = ""
    orders: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created_utc: str = ""
    created_by: str = ""

    def includes(self, slide_id: str) -> bool:
        return slide_id in self.slide_ids

    def order_for(self, reader: str) -> tuple[str, ...]:
        """``reader``'s slide order (recorded, or the one the seed gives an unlisted name)."""
        return self.orders.get(reader) or reader_order(self.seed, reader, self.slide_ids)

    def design_text(self) -> str:
        """'blinded, with a second read after the model is shown' and the like."""
        how = "blinded" if self.blinded else "open (the model is shown)"
        again = ", with a second read after the model is shown" if self.second_read else ""
        return how + (again if self.blinded else "")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["readers"] = list(self.readers)
        data["slide_ids"] = list(self.slide_ids)
        data["orders"] = {k: list(v) for k, v in self.orders.items()}
        return data


def _study_from_dict(data: Any, source: str) -> Study:
    try:
        if not isinstance(data, dict) or data.get("format") != STUDY_FORMAT:
            raise ValueError("not a napari-imilia reader study")
        body = data["study"]
        readers = tuple(check_reviewer_name(str(r)) for r in body["readers"])
        slide_ids = tuple(str(s) for s in body["slide_ids"])
        orders = {str(k): tuple(str(s) for s in v) for k, v in body.get("orders", {}).items()}
        if any(sorted(order) != sorted(slide_ids) for order in orders.values()):
            raise ValueError("a reader's order does not list the study's slides")
        flags = [body.get("blinded", True), body.get("second_read", True)]
        if not all(isinstance(f, bool) for f in flags) or isinstance(body.get("seed"), bool):
            raise ValueError("blinded and second_read must be true or false")
        return Study(
            study_id=str(body["study_id"]),
            readers=readers,
            slide_ids=slide_ids,
            blinded=flags[0],
            second_read=flags[1],
            seed=int(body["seed"]),
            name=str(body.get("name", "")),
            orders=orders,
            created_utc=str(body.get("created_utc", "")),
            created_by=str(body.get("created_by", "")),
        )
    except (KeyError, TypeError, ValueError, ImiliaError) as error:
        raise DataError(f"{source} is not a usable reader study ({error})") from error


def load_study(results_root: str | os.PathLike[str]) -> Study | None:
    """The study of ``results_root`` (None when there is none); ``DataError`` when its
    ``study.json`` cannot be used (it is left as it is: a study is never dropped silently)."""
    path = Path(results_root) / STUDY_FILE
    if not (path.exists() or path.is_symlink()):
        return None
    data = read_results_json(path, results_root, ImportLimits.from_env(max_bytes=MAX_STUDY_BYTES))
    return _study_from_dict(data, str(path))


def save_study(results_root: str | os.PathLike[str], study: Study) -> Path:
    """Write ``study.json`` atomically; returns its path."""
    data = {"format": STUDY_FORMAT, "schema_version": STUDY_SCHEMA_VERSION}
    data["study"] = study.to_dict()
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    return write_text_atomic(Path(results_root) / STUDY_FILE, text)


def create_study(
    results_root: str | os.PathLike[str],
    slide_ids: list[str] | tuple[str, ...],
    readers: list[str] | tuple[str, ...],
    *,
    blinded: bool = True,
    second_read: bool = True,
    seed: int | None = None,
    name: str = "",
    created_by: str = "",
) -> Study:
    """Set up a study on ``results_root`` and save it; ``ImiliaError`` when one is there
    already (its reads would lose their meaning), or readers or slides are missing."""
    if load_study(results_root) is not None:
        raise ImiliaError(
            f"{Path(results_root) / STUDY_FILE} already holds a study; a results folder holds "
            "one study (add readers to it, or set up the new one in a copy of the results)"
        )
    names = tuple(dict.fromkeys(check_reviewer_name(r) for r in readers))
    if not names:
        raise ImiliaError("a study needs at least one reader (their reviewer names)")
    slides = tuple(dict.fromkeys(str(s) for s in slide_ids))
    if not slides:
        raise ImiliaError("a study needs at least one slide")
    seed = secrets.randbits(31) if seed is None else int(seed)
    study = Study(
        study_id=uuid.uuid4().hex[:12],
        readers=names,
        slide_ids=slides,
        blinded=bool(blinded),
        second_read=bool(second_read),
        seed=seed,
        name=name.strip(),
        orders={r: reader_order(seed, r, slides) for r in names},
        created_utc=utc_now(),
        created_by=created_by,
    )
    save_study(results_root, study)
    return study


def add_reader(results_root: str | os.PathLike[str], reader: str) -> Study:
    """Add ``reader`` to the study of ``results_root`` with the order the seed gives them."""
    study = load_study(results_root)
    if study is None:
        raise ImiliaError(f"no reader study in {results_root}; set one up first")
    name = check_reviewer_name(reader)
    if name in study.readers:
        return study
    orders = {**study.orders, name: reader_order(study.seed, name, study.slide_ids)}
    study = dataclasses.replace(study, readers=(*study.readers, name), orders=orders)
    save_study(results_root, study)
    return study


# ---------------------------------------------------------------------- what a reader may do
def commit_phase(study: Study | None, own: SlideReads, reader: str) -> str | None:
    """The phase of ``reader``'s next grade of the slide of ``own`` (their reads of it):
    ``post-AI`` outside a blinded study; in one, ``pre-AI`` until they committed it, then
    ``post-AI`` with a second read, else None (the blind read is final)."""
    if study is None or not study.blinded or not study.includes(own.slide_id):
        return POST_AI
    if own.latest(reader, PRE_AI) is None:
        return PRE_AI
    return POST_AI if study.second_read else None


def model_hidden(study: Study | None, own: SlideReads, reader: str) -> bool:
    """True while the model's output must be hidden from ``reader`` on this slide: a
    blinded study, a slide of it, and no pre-AI grade of theirs committed (an unnamed
    reader never has one)."""
    return commit_phase(study, own, reader) == PRE_AI


def blinding_reason(results_root: str | os.PathLike[str], slide_id: str, reader: str) -> str:
    """Why the model is hidden from ``reader`` on ``slide_id`` ('' when it is not)."""
    try:
        study = load_study(results_root)
    except DataError as error:  # a damaged study: hide rather than unblind by accident
        return f"the reader study cannot be read ({error}); the model stays hidden"
    if study is None or not study.blinded or not study.includes(slide_id):
        return ""
    folder = results_path(results_root, slide_id)
    own = load_slide_reads(folder, slide_id, reader=reader) if reader else SlideReads(slide_id)
    if not model_hidden(study, own, reader):
        return ""
    who = "set your reviewer name, then commit" if not reader else "commit"
    return f"blinded study: {who} your grade of this slide to see the model"


# ---------------------------------------------------------------------- progress
@dataclass(frozen=True)
class ReaderProgress:
    """How far ``reader`` is: ``read`` of ``total`` slides graded (first read),
    ``post_ai`` second reads, ``drafts`` slides with an unsaved grade."""

    reader: str
    total: int
    read: int
    post_ai: int = 0
    drafts: int = 0

    def text(self) -> str:
        """'12 of 40 read, 3 drafts' (and the second reads when there are any)."""
        text = f"{self.read} of {self.total} read"
        if self.post_ai:
            text += f", {self.post_ai} read again after the model"
        if self.drafts:
            text += f", {self.drafts} draft" + ("s" if self.drafts > 1 else "")
        return text


def reader_progress(
    study: Study, results_root: str | os.PathLike[str], reader: str
) -> ReaderProgress:
    """``reader``'s progress through ``study`` (their own files only)."""
    read = post_ai = drafts = 0
    for slide_id in study.slide_ids:
        folder = results_path(results_root, slide_id)
        own = load_slide_reads(folder, slide_id, reader=reader)
        first = own.latest(reader, PRE_AI) if study.blinded else own.latest(reader)
        read += first is not None
        post_ai += study.blinded and own.latest(reader, POST_AI) is not None
        drafts += has_draft(folder, reader)
    return ReaderProgress(reader, len(study.slide_ids), read, post_ai, drafts)


def study_progress(study: Study, results_root: str | os.PathLike[str]) -> list[ReaderProgress]:
    """Every listed reader's progress, in the study's order."""
    return [reader_progress(study, results_root, reader) for reader in study.readers]
