"""The per-viewer state: what one napari viewer shows and has loaded (micro-sam's
``AnnotatorState`` idea, one per viewer rather than one per process).

``viewer_state(viewer)`` gives the viewer's :class:`ViewerState` (made on first use, dropped
with the viewer). It holds:

- ``session``: the :class:`~napari_imilia.review.session.ReviewSession` of the open slide
  (slide, tiles, scores, selected tile, reviews, cached inspections);
- ``cohort``: the :class:`~napari_imilia.cohort.review.Cohort` under review, or None;
- ``models``: the loaded models (:class:`~napari_imilia._napari.models.ModelCache`: MIL
  model, feature extractor, cell backend, EpiSeg probe);
- ``inspect_settings``: the inspection's choices (cell backend, epithelium method...; the
  Tile inspector dock edits them, the ``I`` key uses them, dock open or not);
- ``inspections``: the tile inspection shown on the canvas and the one running
  (:class:`~napari_imilia._napari.inspecting.InspectionRunner`);
- ``top_tiles``: which tiles are "the top tiles" (N / P keys, Top tiles dock, review count);
- ``review_target`` ('tile' or 'region') and ``review_draft``: what a verdict applies to,
  and the class and note typed in the open Review dock (None without one; the reviewer's
  name is the user's one identity, ``_napari.reviewer``);
- ``census``: the slide's whole-slide cell census, its shown selection and picked tile,
  and the census run (:class:`~napari_imilia._napari.census.CensusRunner`);
- ``link``: the viewer link that draws every layer from this state (``link.link_viewer``);
- blinding: in a blinded reader study (``review.study``) the open slide's model output is
  withheld from the reader (the workspace's reviewer identity) until they commit their grade
  of it. :meth:`ViewerState.set_session` withholds it before any dock or layer sees the
  session, :meth:`ViewerState.refresh_blinding` reveals it once the grade is committed (or
  the reviewer changed), so no layer, dock or table has to know about studies: they show
  ``session.prediction``, which reads None while withheld.

Docks, keys and the link read it and edit it; none keeps a copy another one needs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psygnal import Signal

from napari_imilia._napari.census import CensusRunner
from napari_imilia._napari.inspect_settings import (
    InspectorSettings,
    load_inspector_settings,
    save_inspector_settings,
)
from napari_imilia._napari.inspecting import InspectionRunner
from napari_imilia._napari.models import ModelCache
from napari_imilia._napari.reviewer import REVIEWER

if TYPE_CHECKING:
    import pandas as pd

    from napari_imilia.cohort.review import Cohort
    from napari_imilia.review.session import ReviewSession

#: Tiles N / P step through and the Review dock counts, unless the Top tiles dock says more.
DEFAULT_K = 10


@dataclass(frozen=True)
class TopTiles:
    """The top tiles: the ``k`` highest (``bottom``: lowest) tiles by ``column`` of the tile
    table (``score``, ``attention`` or ``score_<channel>``; the tile score when absent)."""

    k: int = DEFAULT_K
    bottom: bool = False
    column: str = "score"


@dataclass(frozen=True)
class ReviewDraft:
    """Class and note typed in the Review dock's form, given with a verdict."""

    reviewer_class: str = ""
    note: str = ""


class ViewerState:
    """One viewer's state (see the module docstring).

    Signals: ``session_changed(session or None)``, ``cohort_changed(cohort or None)``,
    ``top_tiles_changed(TopTiles)``, ``verdicts_recorded(entries)`` (after a verdict from a
    key or the Review dock was saved), ``blinding_changed(session)`` (the model was hidden
    or shown on the open slide).
    """

    blinding_changed = Signal(object)

    session_changed = Signal(object)
    cohort_changed = Signal(object)
    top_tiles_changed = Signal(object)
    verdicts_recorded = Signal(object)

    def __init__(self) -> None:
        self.session: ReviewSession | None = None
        self.cohort: Cohort | None = None
        self.models = ModelCache()
        self._inspect_settings: InspectorSettings | None = None
        self.top_tiles = TopTiles()
        self.review_target = "tile"
        self.review_draft: ReviewDraft | None = None
        self.link: Any = None
        self.inspections = InspectionRunner(self)
        self.census = CensusRunner(self)
        REVIEWER.changed.connect(self._on_reviewer_changed)  # held weakly by psygnal

    # ------------------------------------------------------------------ session, cohort
    def set_session(self, session: ReviewSession | None) -> None:
        """Replace the viewer's session (the old one is closed) and tell the listeners."""
        old = self.session
        if old is session:
            return
        if session is not None:
            self._apply_blinding(session)
        self.session = session
        self.review_target = "tile"
        if old is not None:
            old.close()
        self.session_changed.emit(session)

    def _on_reviewer_changed(self, name: str) -> None:
        """Another reviewer name: the cohort is seen by them (their grades, their study
        order) and the open slide's blinding follows (their own grade of it or not)."""
        if self.cohort is not None and self.cohort.reader != name:
            self.cohort.reader = name
            self.cohort.refresh()
            self.cohort_changed.emit(self.cohort)
        self.refresh_blinding()

    # ------------------------------------------------------------------ blinding
    @property
    def model_hidden(self) -> bool:
        """True while the open slide's model output is withheld from the reader."""
        return self.session is not None and bool(self.session.withheld_reason)

    def refresh_blinding(self) -> None:
        """Hide or show the open slide's model output as the reader study says now (call
        after a grade was committed, or when the reviewer identity changed)."""
        if self.session is not None:
            self._apply_blinding(self.session)
            self.blinding_changed.emit(self.session)

    @staticmethod
    def _apply_blinding(session: ReviewSession) -> None:
        from napari_imilia.errors import ImiliaError
        from napari_imilia.review.reviewer import load_reviewer
        from napari_imilia.review.study import blinding_reason

        try:
            reason = blinding_reason(session.results_root, session.slide_id, load_reviewer())
        except (ImiliaError, OSError) as error:  # unsure: hide rather than unblind
            reason = f"the reader study cannot be checked ({error}); the model stays hidden"
        if reason:
            session.withhold_prediction(reason)
        else:
            session.reveal_prediction()

    def set_cohort(self, cohort: Cohort | None) -> None:
        """The cohort under review (None: none); new sessions go to its results folder."""
        if cohort is not self.cohort:
            self.cohort = cohort
            self.cohort_changed.emit(cohort)

    # ------------------------------------------------------------------ inspection choices
    @property
    def inspect_settings(self) -> InspectorSettings:
        """The inspection's choices (read from ``inspector_settings.json`` on first use)."""
        if self._inspect_settings is None:
            self._inspect_settings = load_inspector_settings()
        return self._inspect_settings

    def set_inspect_settings(self, settings: InspectorSettings) -> None:
        """Use ``settings`` from now on and remember them on disk (``OSError`` when the file
        cannot be written: the choices still apply)."""
        self._inspect_settings = settings
        save_inspector_settings(settings)

    # ------------------------------------------------------------------ top tiles
    def set_top_tiles(self, top_tiles: TopTiles) -> None:
        if top_tiles != self.top_tiles:
            self.top_tiles = top_tiles
            self.top_tiles_changed.emit(top_tiles)

    def top_tile_table(self) -> pd.DataFrame | None:
        """Rows of the top tiles, best first (None without a scored session)."""
        session = self.session
        if session is None or session.prediction is None:
            return None
        top = self.top_tiles
        column = top.column if top.column in session.tiles.columns else "score"
        return session.ranked_tiles(top.k, bottom=top.bottom, column=column)

    def top_tile_ids(self) -> list[str]:
        """Ids of the top tiles, best first ([] without a scored session)."""
        table = self.top_tile_table()
        return [] if table is None else [str(t) for t in table["tile_id"]]


_STATES: weakref.WeakKeyDictionary[Any, ViewerState] = weakref.WeakKeyDictionary()


def viewer_state(viewer: Any) -> ViewerState:
    """The ``ViewerState`` of ``viewer`` (created on first use, dropped with the viewer)."""
    state = _STATES.get(viewer)
    if state is None:
        state = ViewerState()
        _STATES[viewer] = state
    return state
