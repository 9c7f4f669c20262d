"""Keyboard review on the canvas: A / D / U verdicts, N / P top tiles, I inspect.

The keys are napari actions (``napari.utils.action_manager``) bound on the viewer's keymap,
so they work while the canvas has focus, are listed (and can be changed) in napari's
*Preferences → Shortcuts* under "Viewer key bindings", and keep a shortcut the user chose
there. Alt+A / Alt+D / Alt+U also record verdicts while a Shapes layer is active (that
layer's own A / D keys win over the viewer's). Each action uses the open dock when there is
one (the Review dock's class and note, the Top tiles dock's list), else works on the
session directly: verdicts on the selected tile with the remembered reviewer name, steps
through the ``DEFAULT_K`` highest-scoring tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.viewer import Viewer

from napari_imilia.errors import ImiliaError
from napari_imilia.review.progress import step_tile

PACKAGE = "napari-imilia"
#: Tiles N / P step through when the Top tiles dock is not open.
DEFAULT_K = 10
_REGISTERED: list[bool] = []


def docked_widget(viewer: Any, cls_name: str) -> Any | None:
    """The open napari-imilia dock widget of class ``cls_name`` in ``viewer``, or None."""
    window = getattr(viewer, "window", None)
    if window is None:
        return None
    for widget in window.dock_widgets.values():
        if type(widget).__name__ == cls_name:
            return widget
    return None


def _notify(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def record_verdict(viewer: Any, verdict: str) -> list[Any]:
    """Record ``verdict`` through the Review dock (its target, class and note) when open,
    else on the session's selected tile; returns the entries saved."""
    from napari_imilia._napari.docks.review.parts import load_reviewer
    from napari_imilia._napari.state import viewer_state

    panel = docked_widget(viewer, "ReviewPanel")
    if panel is not None:
        return panel.record(verdict)
    session = viewer_state(viewer).session
    if session is None or session.selected_tile_id is None:
        _notify("napari-imilia: select a tile (N, Top tiles or a click) before a verdict")
        return []
    tile_id = session.selected_tile_id
    current = [e for e in session.review.for_tile(tile_id) if e.target_kind == "tile"]
    try:
        if current:
            return [session.update_review(current[-1].entry_id, verdict=verdict)]
        return [session.add_review(verdict=verdict, tile_id=tile_id, reviewer=load_reviewer())]
    except ImiliaError as error:
        _notify(f"napari-imilia: review not saved: {error}")
        return []


def step_top_tile(viewer: Any, step: int) -> str | None:
    """Select the next (``step`` 1) or previous (-1) top tile and centre on it: the Top tiles
    dock's list when open, else the ``DEFAULT_K`` highest-scoring tiles."""
    from napari_imilia._napari.link import centre_on_tile
    from napari_imilia._napari.state import viewer_state

    top = docked_widget(viewer, "TopTilesWidget")
    session = viewer_state(viewer).session
    if top is not None:
        top.select_next() if step > 0 else top.select_previous()
        return None if session is None else session.selected_tile_id
    if session is None or session.prediction is None:
        _notify("napari-imilia: score the slide before stepping through its top tiles")
        return None
    ids = [str(t) for t in session.ranked_tiles(DEFAULT_K)["tile_id"]]
    tile_id = step_tile(ids, session.selected_tile_id, step)
    if tile_id is not None:
        session.select_tile(tile_id)
        centre_on_tile(viewer, session, tile_id)
    return tile_id


def inspect_selected(viewer: Any) -> None:
    """Inspect the selected tile in the Tile inspector dock (opened when closed)."""
    inspector = docked_widget(viewer, "TileInspectorWidget")
    if inspector is None:
        _dock, inspector = viewer.window.add_plugin_dock_widget(PACKAGE, "Tile inspector")
    inspector.inspect_tile()


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
