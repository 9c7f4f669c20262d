"""Slides as dask.distributed tasks: connecting, cancelling, and a loop that survives faults.

- The client connects (and waits for a first worker) before anything is written, so a bad
  or empty cluster fails at once with ``ImiliaError``.
- Results are taken and their futures released as they arrive: the scheduler forgets a
  finished slide, so a worker that dies later never makes it compute that slide again.
- Stopping (Ctrl-C, a cancel event, no worker left) tells every worker to stop this run's
  slides between tile batches (:func:`cancel_run`), cancels the slides not started, and waits
  a bounded time for the running ones to end, so nothing keeps writing after the run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from napari_imilia.errors import ImiliaError

RowCallback = Callable[[dict[str, Any]], None]
#: Seconds between two looks at the futures (and progress updates) while slides run.
POLL_S = 0.5
#: Seconds between two checks that the scheduler still has a worker.
WORKER_CHECK_S = 2.0

_lock = threading.Lock()
_cancelled_runs: set[str] = set()
_running: dict[str, set[threading.Event]] = {}


def cancel_run(run_id: str) -> None:
    """On a worker (through ``Client.run``): stop this run's slides. Running ones stop at
    their next tile batch; ones that start later return at once."""
    with _lock:
        _cancelled_runs.add(run_id)
        for event in _running.get(run_id, ()):
            event.set()


@contextlib.contextmanager
def run_cancel_event(run_id: str) -> Iterator[threading.Event]:
    """A ``threading.Event`` set when :func:`cancel_run` is called for ``run_id`` in this
    process (already set when it was called before)."""
    event = threading.Event()
    with _lock:
        if run_id in _cancelled_runs:
            event.set()
        _running.setdefault(run_id, set()).add(event)
    try:
        yield event
    finally:
        with _lock:
            _running[run_id].discard(event)
            if not _running[run_id]:
                del _running[run_id]


def connect(
    scheduler: str | None, cluster_workers: int | None, processes: bool, timeout_s: float
) -> tuple[Any, Any]:
    """(client, cluster): a client of the scheduler at ``scheduler`` (cluster None), or of a
    new ``LocalCluster`` of ``cluster_workers`` single-threaded workers. Raises ``ImiliaError`` when
    the scheduler does not answer, or has no worker, within ``timeout_s`` seconds."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        from napari_imilia.processes import start_dask_workers_without_main

        start_dask_workers_without_main()  # an unguarded user script is not run again
        with _children_ignore_ctrl_c():
            cluster = LocalCluster(
                n_workers=cluster_workers,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=None,
            )
        return Client(cluster), cluster
    try:
        client = Client(scheduler, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError) as error:
        raise ImiliaError(
            f"cannot reach the dask scheduler at {scheduler} within {timeout_s:g} s ({error}); "
            "check the address and that the scheduler is running"
        ) from error
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except (OSError, TimeoutError) as error:
        client.close()
        raise ImiliaError(
            f"the dask scheduler at {scheduler} has no worker: none joined within "
            f"{timeout_s:g} s; start some (dask worker {scheduler}) or wait longer "
            "(--scheduler-timeout)"
        ) from error
    return client, None


@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside ignore SIGINT (inherited): Ctrl-C in a terminal reaches the
    whole process group, and the client, not its LocalCluster's workers, must handle it
    (stop the slides, then close the cluster)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_tasks(
    client: Any,
    task: Callable[..., dict[str, Any]],
    slides: list[str],
    args: tuple[Any, ...],
    run_id: str,
    *,
    on_row: RowCallback,
    on_tick: Callable[[], None],
    error_row: Callable[[str, BaseException], dict[str, Any]],
    cancel: threading.Event | None = None,
    worker_timeout_s: float = 30.0,
    drain_s: float = 30.0,
) -> bool:
    """Run ``task(slide, *args, run_id)`` for every slide; ``on_row(row)`` as each ends.

    Returns True when all ended, False when ``cancel`` was set; on ``KeyboardInterrupt`` it
    stops the slides (see the module docstring) and raises it again. When the scheduler has
    no worker for ``worker_timeout_s`` seconds, the slides not done get an error row.
    """
    from distributed import wait

    pending = {
        client.submit(task, slide, *args, run_id, key=f"imilia-{run_id}-{i}", pure=False): slide
        for i, slide in enumerate(slides)
    }
    workerless_since: float | None = None
    next_worker_check = time.monotonic() + WORKER_CHECK_S
    try:
        while pending:
            if cancel is not None and cancel.is_set():
                _stop(client, pending, run_id, drain_s, on_row, error_row)
                return False
            try:
                done = wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                done = set()
            for future in done:
                on_row(_take(future, pending.pop(future), error_row))
            on_tick()
            if time.monotonic() >= next_worker_check and pending:
                next_worker_check = time.monotonic() + WORKER_CHECK_S
                if client.nthreads():
                    workerless_since = None
                elif workerless_since is None:
                    workerless_since = time.monotonic()
                elif time.monotonic() - workerless_since > worker_timeout_s:
                    lost = ImiliaError(f"no dask worker left for {worker_timeout_s:g} s")
                    client.cancel(list(pending))
                    for future, slide in list(pending.items()):
                        on_row(error_row(slide, lost))
                        future.release()
                    pending.clear()
    except KeyboardInterrupt:
        _stop(client, pending, run_id, drain_s, on_row, error_row)
        raise
    return True


def _take(
    future: Any, slide: str, error_row: Callable[[str, BaseException], dict[str, Any]]
) -> dict[str, Any]:
    """The row of a finished future, which is then released (the scheduler forgets it)."""
    try:
        row = future.result()
    except Exception as error:  # the task was lost (KilledWorker: its workers kept dying)
        row = error_row(slide, error)
    future.release()
    return row


def _stop(
    client: Any,
    pending: dict[Any, str],
    run_id: str,
    drain_s: float,
    on_row: RowCallback,
    error_row: Callable[[str, BaseException], dict[str, Any]],
) -> None:
    """Stop this run: slides not started are cancelled; running ones are told to stop and
    waited for (``drain_s`` s at most; a second Ctrl-C stops waiting). Rows of slides that
    still finished go to ``on_row``; cancelled ones are dropped."""
    from distributed import wait

    try:
        client.run(cancel_run, run_id, on_error="ignore")
        running_keys = {key for keys in client.processing().values() for key in keys}
        running = {f: s for f, s in pending.items() if f.key in running_keys}
        client.cancel([f for f in pending if f not in running])
        if running:
            with contextlib.suppress(TimeoutError):
                wait(list(running), timeout=drain_s)
        for future, slide in running.items():
            if future.done():
                row = _take(future, slide, error_row)
                if row.get("status") != "cancelled":
                    on_row(row)
    except KeyboardInterrupt:
        pass  # asked twice: stop waiting, the caller discards the staging of running slides
    except Exception:  # the workers or scheduler are gone too (Ctrl-C hit the process group)
        pass  # nothing left to stop; cohort.csv is still written for what finished
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(pending))
        pending.clear()
