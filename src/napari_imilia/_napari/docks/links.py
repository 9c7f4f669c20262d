"""Signal connections of a dock to its viewer's session, dropped when the dock is destroyed,
and inspection workers awaited at exit.

A dock connects to ``ViewerState.session_changed`` and to its session's psygnal signals.
psygnal keeps the dock's Python object reachable after napari deletes the Qt widget, so a
later signal would call into a deleted widget; ``DockLinks`` records every connection and
drops them all on the widget's ``destroyed`` signal (through a function holding no
reference to the widget). ``track_worker`` marks a worker thread as running until its
``finished`` signal (delivered in the worker's own thread); at interpreter exit the running
ones make the exit wait for Qt's thread pool (up to ``EXIT_WAIT_S``), so Qt is not torn
down under a worker still emitting its signals.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from qtpy.QtCore import Qt

#: Seconds to wait at exit for inspection workers still running.
EXIT_WAIT_S = 10.0
_RUNNING: set[threading.Event] = set()


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


def track_worker(worker: Any) -> threading.Event:
    """An event set when ``worker`` finishes (in its thread); awaited at exit until then."""
    done = threading.Event()
    _RUNNING.add(done)

    def finished() -> None:
        done.set()
        _RUNNING.discard(done)

    worker.finished.connect(finished, Qt.ConnectionType.DirectConnection)
    return done


@atexit.register
def _await_running() -> None:
    """At exit, let running inspection workers return (their thread still emits after
    ``finished``, so wait for the thread pool, bounded by ``EXIT_WAIT_S``)."""
    if any(not done.is_set() for done in list(_RUNNING)):
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(int(EXIT_WAIT_S * 1000))
