"""Keyboard review on the canvas: A / D / U verdicts, N / P top tiles, I inspect.

The keys are napari actions (``napari.utils.action_manager``) bound on the viewer's keymap,
so they work while the canvas has focus, are listed (and can be changed) in napari's
*Preferences → Shortcuts* under "Viewer key bindings", and keep a shortcut the user chose
there. Alt+A / Alt+D / Alt+U also record verdicts while a Shapes layer is active (that
layer's own A / D keys win over the viewer's). Each action works on the viewer's state,
whatever docks are open: verdicts on its review target (``recording.record_verdict``, with
the class and note typed in the Review dock when one is open), steps through its top tiles
(``ViewerState.top_tiles``, which the Top tiles dock edits), inspects the selected tile
with its inspection choices and loaded tools (``ViewerState.inspections``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.viewer import Viewer

from napari_imilia._napari.layers.placement import centre_on_tile
from napari_imilia._napari.link import link_viewer
from napari_imilia._napari.notify import notify
from napari_imilia._napari.recording import record_verdict as record_on_target
from napari_imilia._napari.state import viewer_state
from napari_imilia.review.progress import step_tile

PACKAGE = "napari-imilia"
_REGISTERED: list[bool] = []


def record_verdict(viewer: Any, verdict: str) -> list[Any]:
    """Record ``verdict`` on the viewer's review target; returns the entries saved."""
    return record_on_target(link_viewer(viewer), verdict)


def step_top_tile(viewer: Any, step: int) -> str | None:
    """Select the next (``step`` 1) or previous (-1) of the state's top tiles and centre on
    it; returns its id (None, after a notification, without a scored slide)."""
    state = viewer_state(viewer)
    session = state.session
    ids = state.top_tile_ids()
    if session is None or not ids:
        notify("info", "napari-imilia: score the slide before stepping through its top tiles")
        return None
    tile_id = step_tile(ids, session.selected_tile_id, step)
    if tile_id is not None:
        session.select_tile(tile_id)
        centre_on_tile(viewer, session, tile_id)
    return tile_id


def inspect_selected(viewer: Any) -> None:
    """Inspect the selected tile with the state's choices and tools (no dock needed); the
    viewer link shows its masks and legend."""
    link_viewer(viewer).state.inspections.inspect()


def _agree(viewer: Viewer) -> None:
    record_verdict(viewer, "agree")


def _disagree(viewer: Viewer) -> None:
    record_verdict(viewer, "disagree")


def _uncertain(viewer: Viewer) -> None:
    record_verdict(viewer, "uncertain")


def _next_tile(viewer: Viewer) -> None:
    step_top_tile(viewer, 1)


def _previous_tile(viewer: Viewer) -> None:
    step_top_tile(viewer, -1)


def _inspect(viewer: Viewer) -> None:
    inspect_selected(viewer)


#: (action name, default keys, description, command).
REVIEW_ACTIONS: tuple[tuple[str, tuple[str, ...], str, Callable[[Viewer], None]], ...] = (
    (f"{PACKAGE}:review_agree", ("A", "Alt-A"), "Review: agree with the selected tile", _agree),
    (
        f"{PACKAGE}:review_disagree",
        ("D", "Alt-D"),
        "Review: disagree with the selected tile",
        _disagree,
    ),
    (
        f"{PACKAGE}:review_uncertain",
        ("U", "Alt-U"),
        "Review: uncertain about the selected tile",
        _uncertain,
    ),
    (f"{PACKAGE}:next_top_tile", ("N",), "Review: next top tile", _next_tile),
    (f"{PACKAGE}:previous_top_tile", ("P",), "Review: previous top tile", _previous_tile),
    (f"{PACKAGE}:inspect_tile", ("I",), "Review: inspect the selected tile", _inspect),
)


def register_review_actions() -> None:
    """Register the review actions on napari's viewer keymap (once per process); a shortcut
    the user set in the preferences is kept, else the defaults are bound."""
    if _REGISTERED:
        return
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    chosen = get_settings().shortcuts.shortcuts
    for name, keys, description, command in REVIEW_ACTIONS:
        action_manager.register_action(name, command, description, ViewerModel)
        if name not in chosen:
            for key in keys:
                action_manager.bind_shortcut(name, key)
    _REGISTERED.append(True)


def keys_help_html() -> str:
    """The review keys as a small HTML table, for the docks."""
    rows = "".join(
        f"<tr><td><b>{' / '.join(keys).replace('-', '+')}</b></td>"
        f"<td>{description.removeprefix('Review: ')}</td></tr>"
        for _name, keys, description, _command in REVIEW_ACTIONS
    )
    return (
        "<b>Keys on the canvas</b> (click the slide first; change them in "
        f"Preferences → Shortcuts):<table cellspacing='4'>{rows}</table>"
    )
