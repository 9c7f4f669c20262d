"""Worker threads of the napari wing that must not outlive Qt: awaited at interpreter exit.

``track_worker`` marks a ``thread_worker`` as running until its ``finished`` signal
(delivered in the worker's own thread); at interpreter exit the running ones make the exit
wait for Qt's thread pool (up to ``EXIT_WAIT_S``), so Qt is not torn down under a worker
still emitting its signals.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from qtpy.QtCore import Qt

#: Seconds to wait at exit for workers still running.
EXIT_WAIT_S = 10.0
_RUNNING: set[threading.Event] = set()


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
    """At exit, let running workers return (their thread still emits after ``finished``,
    so wait for the thread pool, bounded by ``EXIT_WAIT_S``)."""
    if any(not done.is_set() for done in list(_RUNNING)):
        from qtpy.QtCore import QThreadPool

        QThreadPool.globalInstance().waitForDone(int(EXIT_WAIT_S * 1000))
