"""What stops a running slide, on a dask worker or in this process.

A cohort's slide runs inside :func:`slide_guard`, which hands ``predict_slide`` a
:class:`SlideStop` (a ``threading.Event`` with a reason). ``predict_slide`` looks at it between
tile batches and once more before switching the result into place, so a stopped slide leaves
its folder as it was. It is set when

- the run is cancelled: :func:`cancel_run` on every worker (Ctrl-C, a cancel event, Score
  all's Cancel), or the ``cancel`` event of a run in this process;
- the slide has run longer than its time limit (``time_limit_s``): it then ends as an error
  that names the limit;
- on a dask worker, nobody waits for the slide any more: the scheduler released its task
  (the client was killed or closed) or the worker lost its scheduler. The slide stops, and
  writes nothing more.

A watcher thread per slide checks the last three every :data:`WATCH_S` seconds.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

#: Seconds between two looks of a slide's watcher (time limit, client, scheduler).
WATCH_S = 0.5

_lock = threading.Lock()
_cancelled_runs: set[str] = set()
_running: dict[str, set[threading.Event]] = {}


class SlideStop(threading.Event):
    """Set when a slide must stop; ``reason`` says why, ``timed_out`` when its time limit
    ran out (the slide is then an error, not a cancelled slide)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None
        self.timed_out = False

    def stop(self, reason: str, *, timed_out: bool = False) -> None:
        with _lock:
            if self.is_set():
                return
            self.reason, self.timed_out = reason, timed_out
            self.set()


def time_limit_message(time_limit_s: float) -> str:
    return (
        f"stopped after {time_limit_s:g} s, the per-slide time limit (--slide-timeout, "
        "slide_timeout_s); raise it for very large slides on a CPU"
    )


def cancel_run(run_id: str) -> None:
    """On a worker (through ``Client.run``): stop this run's slides. Running ones stop at
    their next tile batch; ones that start later return at once."""
    with _lock:
        _cancelled_runs.add(run_id)
        running = list(_running.get(run_id, ()))
    for event in running:
        if isinstance(event, SlideStop):
            event.stop("cancelled")
        else:
            event.set()


@contextlib.contextmanager
def run_cancel_event(run_id: str) -> Iterator[threading.Event]:
    """A ``threading.Event`` set when :func:`cancel_run` is called for ``run_id`` in this
    process (already set when it was called before)."""
    with slide_guard(run_id, None) as stop:
        yield stop


@contextlib.contextmanager
def slide_guard(
    run_id: str | None,
    time_limit_s: float | None,
    cancel: threading.Event | None = None,
) -> Iterator[SlideStop]:
    """A :class:`SlideStop` for one slide of run ``run_id`` (see the module docstring):
    set by :func:`cancel_run`, by ``cancel`` when given, after ``time_limit_s`` seconds
    (None or 0: no limit), and on a dask worker when its task is no longer wanted."""
    stop = SlideStop()
    if run_id is not None:
        with _lock:
            cancelled = run_id in _cancelled_runs
            _running.setdefault(run_id, set()).add(stop)
        if cancelled:
            stop.stop("cancelled")
    task = _current_dask_task()
    deadline = time.monotonic() + time_limit_s if time_limit_s else None
    done = threading.Event()
    watcher = None
    if deadline is not None or task is not None or cancel is not None:
        args = (stop, done, deadline, time_limit_s, task, cancel)
        watcher = threading.Thread(target=_watch, args=args, name="imilia-slide-watch", daemon=True)
        watcher.start()
    try:
        yield stop
    finally:
        done.set()
        if watcher is not None:
            watcher.join(timeout=5)
        if run_id is not None:
            with _lock:
                _running[run_id].discard(stop)
                if not _running[run_id]:
                    del _running[run_id]


def _watch(
    stop: SlideStop,
    done: threading.Event,
    deadline: float | None,
    time_limit_s: float | None,
    task: tuple[Any, str] | None,
    cancel: threading.Event | None,
) -> None:
    def pause_s() -> float:  # wake up at the deadline, not up to WATCH_S after it
        left = WATCH_S if deadline is None else deadline - time.monotonic()
        return min(WATCH_S, max(left, 0.01))

    while not done.wait(pause_s()) and not stop.is_set():
        if cancel is not None and cancel.is_set():
            stop.stop("cancelled")
        elif deadline is not None and time.monotonic() >= deadline:
            stop.stop(time_limit_message(float(time_limit_s or 0)), timed_out=True)
        elif task is not None and not _still_wanted(*task):
            stop.stop("nobody waits for this slide any more (its client or scheduler is gone)")


def _current_dask_task() -> tuple[Any, str] | None:
    """(worker, task key) when called inside a dask.distributed task, else None."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError):
        return None
    return (worker, key) if key is not None else None


def _still_wanted(worker: Any, key: str) -> bool:
    """Whether the worker still runs ``key`` for a scheduler it is connected to."""
    from distributed.core import Status

    if worker.status != Status.running:
        return False  # closing: it lost its scheduler, or was told to go
    stream = getattr(worker, "batched_stream", None)
    if stream is not None and (stream.comm is None or stream.comm.closed()):
        return False
    state = worker.state.tasks.get(key)
    return state is not None and state.state in ("executing", "long-running")
