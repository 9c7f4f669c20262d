"""How a dock joins its viewer: :func:`dock_viewer_link`, and its signal connections to the
viewer's state and session, dropped when the dock is destroyed.

Every dock starts from ``dock_viewer_link(viewer)``: the viewer link (which draws every layer
from the viewer's state, whatever docks are open) with the review keys registered on the
canvas. A dock connects to ``ViewerState.session_changed`` and to its session's psygnal signals.
psygnal keeps the dock's Python object reachable after napari deletes the Qt widget, so a
later signal would call into a deleted widget; ``DockLinks`` records every connection and
drops them all on the widget's ``destroyed`` signal (through a function holding no
reference to the widget).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

from napari_imilia._napari.docks.text import plain_status_bar
from napari_imilia._napari.keys import register_review_actions
from napari_imilia._napari.link import ViewerLink, link_viewer


def dock_viewer_link(viewer: Any) -> ViewerLink:
    """The viewer's link (see the module docstring), the review keys registered and the
    status bar showing file names as plain text (:func:`~.text.plain_status_bar`)."""
    register_review_actions()
    plain_status_bar(viewer)
    return link_viewer(viewer)


def _drop(connections: list[tuple[Any, Callable[..., Any]]], *_: Any) -> None:
    while connections:
        signal, slot = connections.pop()
        with contextlib.suppress(Exception):
            signal.disconnect(slot)


def _drop_all(*lists_and_args: Any) -> None:
    for item in lists_and_args:
        if isinstance(item, list):
            _drop(item)


class DockLinks:
    """The connections of one dock widget (see the module docstring)."""

    def __init__(self, widget: Any) -> None:
        self._permanent: list[tuple[Any, Callable[..., Any]]] = []
        self._session: list[tuple[Any, Callable[..., Any]]] = []
        widget.destroyed.connect(partial(_drop_all, self._permanent, self._session))

    def connect(self, signal: Any, slot: Callable[..., Any]) -> None:
        """A connection kept for the dock's life (e.g. ``session_changed``)."""
        signal.connect(slot)
        self._permanent.append((signal, slot))

    def connect_session(self, session: Any, slots: dict[str, Callable[..., Any]]) -> None:
        """Drop the previous session's connections, then connect ``slots`` (signal name ->
        slot) to ``session`` (None: connect nothing)."""
        _drop(self._session)
        if session is None:
            return
        for name, slot in slots.items():
            signal = getattr(session, name)
            signal.connect(slot)
            self._session.append((signal, slot))
