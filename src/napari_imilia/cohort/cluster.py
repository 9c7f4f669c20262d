"""Slides as dask.distributed tasks: connecting, cancelling, and a loop that survives faults.

- The client connects (and waits for a first worker) before anything is written, so a bad
  or empty cluster fails at once with ``ImiliaError``.
- Results are taken and their futures released as they arrive: the scheduler forgets a
  finished slide, so a worker that dies later never makes it compute that slide again.
- While slides run the loop watches the cluster (:mod:`~napari_imilia.cohort.watch`): a
  frozen worker is removed and its slides run elsewhere; a slide past its time limit that
  its worker cannot stop ends as an error and that worker is removed.
- Stopping (Ctrl-C, a cancel event, no worker left) tells every worker to stop this run's
  slides between tile batches (:func:`cancel_run`, a bounded call), cancels the slides not
  started, waits a bounded time for the running ones, then cancels them too: their workers
  see it and write nothing more (:mod:`~napari_imilia.cohort.guard`).
- Losing the scheduler (killed, its host gone) raises :class:`SchedulerLost` at once; the
  caller still writes ``cohort.csv`` for what finished. Workers see it too and stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from typing import Any

from napari_imilia.cohort.guard import cancel_run, run_cancel_event, time_limit_message
from napari_imilia.cohort.watch import GRACE_S, WORKER_TIMEOUT_S, ClusterWatch, call, remove_worker
from napari_imilia.errors import ImiliaError

__all__ = [
    "RunClient",
    "SchedulerLost",
    "cancel_run",
    "connect",
    "run_cancel_event",
    "run_tasks",
]

RowCallback = Callable[[dict[str, Any]], None]
ErrorRow = Callable[[str, BaseException], dict[str, Any]]
#: Seconds between two looks at the futures (and progress updates) while slides run.
POLL_S = 0.5
#: Seconds between two looks at the cluster (workers, liveness, time limits).
WORKER_CHECK_S = 2.0


class SchedulerLost(ImiliaError):
    """The connection to the dask scheduler was lost while slides ran."""


class RunClient:
    """A run's dask client (and the LocalCluster it started, when no ``address``),
    connected on first need (:func:`connect`) and closed by :func:`close_quietly`."""

    def __init__(
        self, address: str | None, cluster_workers: int | None, processes: bool, timeout_s: float
    ) -> None:
        self.address, self.cluster_workers, self.processes = address, cluster_workers, processes
        self.timeout_s = timeout_s
        self.client: Any = None
        self.local: Any = None

    def connect(self) -> Any:
        if self.client is None:
            self.client, self.local = connect(
                self.address, self.cluster_workers, self.processes, self.timeout_s
            )
        return self.client

    def close(self) -> None:
        close_quietly(self.client, self.local, self.timeout_s)
        self.client = self.local = None


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
    error_row: ErrorRow,
    cancel: threading.Event | None = None,
    workerless_s: float = 30.0,
    liveness_s: float = WORKER_TIMEOUT_S,
    slide_timeout_s: float | None = None,
    grace_s: float = GRACE_S,
    drain_s: float = 30.0,
) -> bool:
    """Run ``task(slide, *args, run_id)`` for every slide; ``on_row(row)`` as each ends.

    Returns True when all ended, False when ``cancel`` was set; on ``KeyboardInterrupt`` it
    stops the slides (see the module docstring) and raises it again. When the scheduler has
    no worker for ``workerless_s`` seconds, the slides not done get an error row. A worker
    silent for ``liveness_s`` seconds is removed; a slide running ``grace_s`` seconds past
    ``slide_timeout_s`` gets an error row and its worker is removed. Raises
    :class:`SchedulerLost` when the scheduler is gone.
    """
    pending = {
        client.submit(task, slide, *args, run_id, key=f"imilia-{run_id}-{i}", pure=False): slide
        for i, slide in enumerate(slides)
    }
    watch = ClusterWatch(
        client, worker_timeout_s=liveness_s, slide_timeout_s=slide_timeout_s, grace_s=grace_s
    )
    workerless_since: float | None = None
    next_look = time.monotonic() + WORKER_CHECK_S
    try:
        while pending:
            if cancel is not None and cancel.is_set():
                _stop(client, pending, run_id, drain_s, on_row, error_row)
                return False
            for future in _finished(client, pending):
                on_row(_take(client, future, pending.pop(future), error_row))
            on_tick()
            if time.monotonic() >= next_look and pending:
                next_look = time.monotonic() + WORKER_CHECK_S
                threads = _look(client, watch, pending, on_row, error_row, slide_timeout_s)
                if threads is None or threads:
                    workerless_since = None
                elif workerless_since is None:
                    workerless_since = time.monotonic()
                elif time.monotonic() - workerless_since > workerless_s:
                    _give_up(client, pending, on_row, error_row, workerless_s)
    except KeyboardInterrupt:
        _stop(client, pending, run_id, drain_s, on_row, error_row)
        raise
    return True


def _finished(client: Any, pending: dict[Any, str]) -> set[Any]:
    """The pending futures that ended within :data:`POLL_S` seconds."""
    from distributed import wait

    try:
        return wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED").done
    except TimeoutError:
        return set()
    except (CancelledError, OSError) as error:
        if client.status != "running":
            raise _lost(client, error) from error
        return {future for future in pending if future.status == "cancelled"}


def _take(client: Any, future: Any, slide: str, error_row: ErrorRow) -> dict[str, Any]:
    """The row of a finished future, which is then released (the scheduler forgets it)."""
    try:
        row = future.result()
    except CancelledError as error:  # nobody here cancelled it: the scheduler is gone
        if client.status != "running":
            raise _lost(client, error) from error
        row = error_row(slide, ImiliaError("its task was cancelled on the dask cluster"))
    except Exception as error:  # the task was lost (KilledWorker: its workers kept dying)
        row = error_row(slide, error)
    future.release()
    return row


def _lost(client: Any, error: BaseException) -> SchedulerLost:
    address = getattr(client.scheduler, "address", None) or "?"
    return SchedulerLost(
        f"lost the dask scheduler at {address} while slides ran ({type(error).__name__}); "
        "check that it still runs"
    )


def _look(
    client: Any,
    watch: ClusterWatch,
    pending: dict[Any, str],
    on_row: RowCallback,
    error_row: ErrorRow,
    slide_timeout_s: float | None,
) -> int | None:
    """One look at the cluster (:class:`ClusterWatch`): slides past their time limit end
    as errors, frozen and stuck workers are removed. Returns the number of worker threads
    (None when the scheduler did not answer in time)."""
    try:
        findings = watch.look({future.key for future in pending})
    except (TimeoutError, OSError) as error:
        if client.status != "running":
            raise _lost(client, error) from error
        return None  # a slow answer: look again next time
    overdue = set(findings.overdue)
    for future, slide in list(pending.items()):
        if future.key in overdue:
            with contextlib.suppress(Exception):
                client.cancel([future], force=True)
            stuck = ImiliaError(
                f"{time_limit_message(float(slide_timeout_s or 0))}; its worker could not stop "
                "it and was removed from the scheduler"
            )
            on_row(error_row(slide, stuck))
            del pending[future]
    for address in dict.fromkeys([*findings.stuck, *findings.frozen]):
        with contextlib.suppress(Exception):
            remove_worker(client, address)
    return findings.threads


def _give_up(
    client: Any, pending: dict[Any, str], on_row: RowCallback, error_row: ErrorRow, after_s: float
) -> None:
    lost = ImiliaError(f"no dask worker left for {after_s:g} s")
    with contextlib.suppress(Exception):
        client.cancel(list(pending))
    for future, slide in list(pending.items()):
        on_row(error_row(slide, lost))
        future.release()
    pending.clear()


def _stop(
    client: Any,
    pending: dict[Any, str],
    run_id: str,
    drain_s: float,
    on_row: RowCallback,
    error_row: ErrorRow,
) -> None:
    """Stop this run: slides not started are cancelled; running ones are told to stop and
    waited for (``drain_s`` s at most; a second Ctrl-C stops waiting), then cancelled. Rows
    of slides that still finished go to ``on_row``; cancelled ones are dropped."""
    from distributed import wait

    try:
        with contextlib.suppress(TimeoutError):  # a frozen worker does not answer
            call(client, client._run, cancel_run, run_id, on_error="ignore")
        processing = call(client, client.scheduler.processing)
        running_keys = {key for keys in processing.values() for key in keys}
        running = {f: s for f, s in pending.items() if f.key in running_keys}
        client.cancel([f for f in pending if f not in running])
        if running:
            with contextlib.suppress(TimeoutError):
                wait(list(running), timeout=drain_s)
        for future, slide in running.items():
            if future.done():
                row = _take(client, future, slide, error_row)
                if row.get("status") != "cancelled":
                    on_row(row)
    except KeyboardInterrupt:
        pass  # asked twice: stop waiting; cancelled below, so the workers stop writing
    except Exception:  # the workers or scheduler are gone too (Ctrl-C hit the process group)
        pass  # nothing left to stop; cohort.csv is still written for what finished
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(pending))
        pending.clear()


def close_quietly(client: Any, cluster: Any, timeout_s: float) -> None:
    """Close the client (and the cluster it started) within about ``timeout_s`` seconds,
    also when the scheduler is gone; distributed's reconnection tracebacks are not shown."""
    quiet = logging.getLogger("distributed.client")
    level = quiet.level
    if client is not None and client.status != "running":
        quiet.setLevel(logging.CRITICAL)
    try:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=timeout_s)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=timeout_s)
    finally:
        quiet.setLevel(level)
