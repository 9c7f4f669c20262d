"""Recording a verdict on the viewer's review target: the one path of the canvas keys (A / D /
U) and of the Review dock's verdict buttons.

The target is the state's ``review_target``:

- 'tile': the session's selected tile. The reviewer's own latest review of it gets the
  verdict; without one, a new review is added (another reviewer's review of the tile is
  theirs and stays as it is: ``ReviewSession.own_tile_review``).
- 'region': the shapes selected in the "Review regions" layer, else the last one drawn and
  not reviewed yet; each is saved with its outline (level-0 px) and the tile under its
  centre.

Class and note are those typed in the open Review dock (``state.review_draft``); without a
Review dock a new review has none and an update keeps them. Every new or changed review is
signed with the reviewer's name (``reviewer.reviewer_for_action``: the saved one, asked once
when there is none). Every change is saved at once by the session (atomic write). Problems
become notifications; the entries saved are announced on the state's ``verdicts_recorded``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from napari_imilia._napari.link import ViewerLink
from napari_imilia._napari.notify import notify
from napari_imilia._napari.reviewer import reviewer_for_action
from napari_imilia.errors import ImiliaError


def record_verdict(link: ViewerLink, verdict: str) -> list[Any]:
    """Record ``verdict`` on the review target of ``link``'s viewer; returns the entries
    saved (empty, after a notification, when there is nothing to record on)."""
    state = link.state
    session = state.session
    if session is None:
        notify("warning", "open a slide before recording a review")
        return []
    fields = {} if state.review_draft is None else asdict(state.review_draft)
    reviewer = reviewer_for_action(link.viewer)
    if reviewer:  # never blanks the name an entry was signed with
        fields["reviewer"] = reviewer
    try:
        if state.review_target == "region":
            saved = _record_regions(link, verdict, fields)
        else:
            saved = _record_tile(session, verdict, fields)
    except ImiliaError as error:
        notify("error", f"review not saved: {error}")
        return []
    if saved:
        state.verdicts_recorded.emit(saved)
    return saved


def _record_tile(session: Any, verdict: str, fields: dict[str, str]) -> list[Any]:
    tile_id = session.selected_tile_id
    if tile_id is None:
        notify("warning", "select a tile (N, Top tiles or a click on the slide) or draw a region")
        return []
    current = session.own_tile_review(tile_id, fields.get("reviewer", ""))
    if current is not None:
        return [session.update_review(current.entry_id, verdict=verdict, **fields)]
    return [session.add_review(verdict=verdict, tile_id=tile_id, **fields)]


def _record_regions(link: ViewerLink, verdict: str, fields: dict[str, str]) -> list[Any]:
    regions = link.regions
    if regions is None or not regions.alive:
        notify("warning", "the 'Review regions' layer was removed; press Draw region")
        return []
    indices = regions.selected_indices() or regions.pending_indices()[-1:]
    if not indices:
        notify("warning", "draw a region (Draw region) or select one in 'Review regions'")
        return []
    return [regions.record(i, verdict=verdict, **fields) for i in indices]
