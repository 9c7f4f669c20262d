"""The worker processes napari-imilia starts: never running the user's script, gone with it.

Every process pool we start goes through this module: the tile decoders
(:mod:`napari_imilia.tiling.feed`, forkserver, a torch ``DataLoader``), batch inspection
(:mod:`napari_imilia.interpret.pool`, spawn) and the workers of a dask ``LocalCluster``
(:mod:`napari_imilia.cohort.cluster`). Two rules hold for all of them:

- **They never import the user's** ``__main__``. Python's spawn and forkserver children
  normally run the parent's main script again (as ``__mp_main__``) before they start: a
  script without an ``if __name__ == "__main__":`` guard runs its whole body once more per
  worker (a second napari window, slides scored twice), and a script read from stdin
  (``python - <<EOF``) makes every worker fail with ``FileNotFoundError: '<stdin>'``. Our
  workers need nothing from ``__main__`` (their code and arguments live in napari_imilia,
  and dask ships functions by value), so the processes made by :func:`process_context`,
  named ``imilia-…``, and dask's Nanny workers started by our ``LocalCluster`` are started
  without it. Other processes of the same Python are left as they are.
- **They die with the process that started them.** :func:`watch_parent` (the pools' worker
  initialiser) ends a worker as soon as the process that started it has ended, even by
  ``kill -9``, so that no decoder is left running or holding memory. A fork server's
  children must watch that process themselves: they keep the fork server alive (they hold
  its "parent alive" pipe) and their own parent is the fork server. Once they are gone the
  fork server and multiprocessing's resource tracker end too; dask's workers watch their
  Nanny themselves.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import threading
import time
from collections.abc import Callable
from multiprocessing import context as mp_context
from multiprocessing import spawn
from typing import Any

#: Prefix of the names of the processes :func:`process_context` makes.
NAME_PREFIX = "imilia-"
#: The name dask.distributed gives a Nanny's worker process (a LocalCluster's workers).
DASK_WORKER_NAME = "Dask Worker process (from Nanny)"
#: Seconds between two checks, in a worker, that its parent is still alive (where Linux
#: gives no pidfd to wait on).
PARENT_CHECK_S = 0.25
#: What a worker's ``__main__`` setup is made of in multiprocessing's preparation data.
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")

_lock = threading.Lock()
_without_main: set[str] = set()
_original_preparation: Callable[[str], dict[str, Any]] | None = None


def _preparation_data(name: str) -> dict[str, Any]:
    """multiprocessing's preparation data of a new process, without the ``__main__`` keys
    for the processes of :func:`starts_without_main`."""
    assert _original_preparation is not None
    data = _original_preparation(name)
    if starts_without_main(name):
        for key in _MAIN_KEYS:
            data.pop(key, None)
    return data


def starts_without_main(process_name: str) -> bool:
    """Whether a process of this name starts without the user's ``__main__``."""
    return process_name.startswith(NAME_PREFIX) or process_name in _without_main


def _install() -> None:
    """Route multiprocessing's preparation data through :func:`_preparation_data` (once)."""
    global _original_preparation
    with _lock:
        if _original_preparation is None:
            _original_preparation = spawn.get_preparation_data
            spawn.get_preparation_data = _preparation_data


def start_dask_workers_without_main() -> None:
    """Let the Nanny workers of a dask ``LocalCluster`` start without the user's
    ``__main__`` (call before creating it). Safe for any LocalCluster: dask sends the
    user's functions by value (cloudpickle), never by a reference into ``__main__``."""
    _install()
    with _lock:
        _without_main.add(DASK_WORKER_NAME)


def process_context(method: str, *, preload: list[str] | None = None) -> Any:
    """A multiprocessing context (``"spawn"`` or ``"forkserver"``) whose processes are ours:
    named ``imilia-<name>``, started without the user's ``__main__``. ``preload``: modules the
    fork server imports once (forkserver only). Give it to ``DataLoader`` or
    ``ProcessPoolExecutor`` as their ``multiprocessing_context`` / ``mp_context``, with
    :func:`watch_parent` as their worker initialiser."""
    if method not in ("spawn", "forkserver"):
        raise ValueError(f"method must be 'spawn' or 'forkserver', got {method!r}")
    _install()
    base = multiprocessing.get_context(method)
    if preload is not None and method == "forkserver":
        base.set_forkserver_preload(preload)
    return _CONTEXTS[method]


class _Named:
    """Mixin: the process is named ``imilia-<name>`` (see :func:`starts_without_main`)."""

    name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.name.startswith(NAME_PREFIX):
            self.name = f"{NAME_PREFIX}{self.name}"


class ImiliaSpawnProcess(_Named, mp_context.SpawnProcess):
    """A spawned process of ours."""


class ImiliaForkServerProcess(_Named, mp_context.ForkServerProcess):
    """A process of ours forked by the fork server."""


class _SpawnContext(mp_context.SpawnContext):
    Process = ImiliaSpawnProcess


class _ForkServerContext(mp_context.ForkServerContext):
    Process = ImiliaForkServerProcess


_CONTEXTS: dict[str, Any] = {"spawn": _SpawnContext(), "forkserver": _ForkServerContext()}


def watch_parent(*_: object) -> None:
    """In a worker: end this process as soon as the process that started it has gone.

    The starter is :func:`multiprocessing.parent_process` (for a fork server's child, the
    process that asked for it, not the fork server), watched by a daemon thread: through a
    pidfd where Linux has them (woken at once), else every :data:`PARENT_CHECK_S` s. Takes
    and ignores any arguments, so it serves as a ``DataLoader`` ``worker_init_fn`` and a pool
    ``initializer`` alike."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid else os.getppid()
    threading.Thread(
        target=_exit_when_gone, args=(pid,), name="imilia-watch-parent", daemon=True
    ).start()


def _exit_when_gone(pid: int) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd here (macOS, old Linux): poll
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once the process has ended
        os._exit(1)
    while _alive(pid):
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
