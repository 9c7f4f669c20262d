"""Decode worker processes a test may have left behind."""

from __future__ import annotations

import psutil


def decode_processes() -> list[psutil.Process]:
    """Live descendants of this process other than multiprocessing's fork server and
    resource tracker (started once per Python process, by design)."""
    from multiprocessing import forkserver, resource_tracker

    keep = {
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    }
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid not in keep and child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def assert_no_decode_processes() -> None:
    _gone, alive = psutil.wait_procs(decode_processes(), timeout=10)
    assert not alive, f"decode processes left running: {[p.pid for p in alive]}"
