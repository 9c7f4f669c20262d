"""How a dock joins its viewer: :func:`dock_viewer_link`, and its signal connections to the
viewer's state and session, dropped when the dock is destroyed.

Every dock starts from ``dock_viewer_link(viewer)``: the viewer link (which draws every layer
from the viewer's state, whatever docks are open) with the review keys registered on the
canvas. A dock connects to ``ViewerState.session_changed`` and to its session's psygnal signals.
psygnal keeps the dock's Python object reachable after napari deletes the Qt widget, so a
later signal would call into a deleted widget; ``DockLinks`` records every connection and
drops them all on the widget's ``destroyed`` signal (through a function holding no
reference to the widget).

A dock in a hidden tab of a shown window does not follow the state while hidden: its calls
wait (the latest of each) and run, in order, when the dock is painted again (its tab
raised). Stepping through a cohort then costs only the docks on the screen; a dock shows the
state when it comes back, as a dock opened late does. In a hidden window (scripts, tests)
every call runs at once.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from qtpy.QtCore import QEvent, QObject, QTimer

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


def on_screen_or_headless(widget: Any) -> bool:
    """False only for a widget of a shown window that is not on the screen (a hidden tab)."""
    try:
        return not widget.window().isVisible() or not widget.visibleRegion().isEmpty()
    except RuntimeError:  # the Qt side was deleted
        return False


class _PaintWatch(QObject):
    """Tells its owner when the watched widget is shown or painted again (a dock whose
    content fills it, e.g. a scroll area, is shown without a paint of its own)."""

    def __init__(
        self, widget: Any, on_paint: Callable[[], None], on_idle: Callable[[], None]
    ) -> None:
        super().__init__(widget)
        self._on_paint = on_paint
        #: runs ``on_idle`` in the next turn of the event loop (owned here, so it lives as
        #: long as the widget)
        self.idle = QTimer(self)
        self.idle.setSingleShot(True)
        self.idle.setInterval(0)
        self.idle.timeout.connect(on_idle)
        widget.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:
        if event.type() in (QEvent.Type.Paint, QEvent.Type.Show):
            self._on_paint()
        return False


class DockLinks:
    """The connections of one dock widget (see the module docstring)."""

    def __init__(self, widget: Any) -> None:
        self._permanent: list[tuple[Any, Callable[..., Any]]] = []
        self._session: list[tuple[Any, Callable[..., Any]]] = []
        self._widget = weakref.ref(widget)
        self._waiting: dict[Any, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._waiting_session: dict[Any, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._flush_queued = False
        self._watch = _PaintWatch(widget, self._on_paint, self.flush)
        widget.destroyed.connect(partial(_drop_all, self._permanent, self._session))

    def connect(self, signal: Any, slot: Callable[..., Any]) -> None:
        """A connection kept for the dock's life (e.g. ``session_changed``)."""
        gated = self._gate(slot, self._waiting)
        signal.connect(gated)
        self._permanent.append((signal, gated))

    def connect_session(self, session: Any, slots: dict[str, Callable[..., Any]]) -> None:
        """Drop the previous session's connections, then connect ``slots`` (signal name ->
        slot) to ``session`` (None: connect nothing)."""
        _drop(self._session)
        self._waiting_session.clear()
        if session is None:
            return
        for name, slot in slots.items():
            signal = getattr(session, name)
            gated = self._gate(slot, self._waiting_session)
            signal.connect(gated)
            self._session.append((signal, gated))

    # ------------------------------------------------------------------ hidden docks
    def _gate(self, slot: Callable[..., Any], waiting: dict) -> Callable[..., Any]:
        """``slot`` run now when the dock is on the screen, else kept for when it is."""
        if hasattr(slot, "__self__"):  # a bound method: held weakly, as psygnal would
            method: Any = weakref.WeakMethod(slot)
            key: Any = (slot.__func__, id(slot.__self__))
            strong = None
        else:
            method, key, strong = None, slot, slot

        def gated(*args: Any) -> None:
            target = strong if method is None else method()
            widget = self._widget()
            if target is None or widget is None:
                return
            if on_screen_or_headless(widget):
                target(*args)
                return
            if waiting is self._waiting:  # a new state: what the old session queued is moot
                self._waiting_session.clear()
            waiting.pop(key, None)
            waiting[key] = (target, args)

        return gated

    @property
    def waiting(self) -> int:
        """Calls kept for when the dock is on the screen again."""
        return len(self._waiting) + len(self._waiting_session)

    def _on_paint(self) -> None:
        if self.waiting and not self._flush_queued:
            self._flush_queued = True
            self._watch.idle.start()

    def flush(self) -> None:
        """Run the calls kept while the dock was hidden, the state's first."""
        self._flush_queued = False
        for waiting in (self._waiting, self._waiting_session):
            while waiting:
                key = next(iter(waiting))
                target, args = waiting.pop(key)
                target(*args)
