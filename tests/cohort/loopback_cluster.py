"""A real dask cluster on 127.0.0.1 for tests and benchmarks: one ``dask scheduler`` and
``dask worker`` processes (no nanny, one thread each), on free ports, in their own folder,
ended by their process ids."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import napari_imilia

#: Modules the workers import once started, so the first slide does not pay for torch.
WARM_MODULES: tuple[str, ...] = (
    "napari_imilia.cohort.run",
    "napari_imilia.predict.slide",
    "napari_imilia.features.extract",
    "napari_imilia.mil",
    "napari_imilia.features.extractors",
    "napari_imilia.predict.heatmap",
    "napari_imilia.export",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackCluster:
    """``dask scheduler`` (+ ``n_workers`` ``dask worker``) processes run from ``folder``."""

    def __init__(self, folder: Path, n_workers: int = 2, timeout_s: float = 60.0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        src = str(Path(napari_imilia.__file__).parents[1])
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
        }
        self.env.pop("CUDA_VISIBLE_DEVICES", None)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.workers: list[subprocess.Popen] = []
        self.scheduler = self._spawn(
            "scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
            "--no-dashboard", name="scheduler",
        )  # fmt: skip
        try:
            self._wait_for_port(timeout_s)
            for _ in range(n_workers):
                self.add_worker()
            if n_workers:
                self.wait_for_workers(n_workers, timeout_s)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            cwd=self.folder,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def add_worker(self) -> subprocess.Popen:
        name = f"worker-{len(self.workers)}"
        worker = self._spawn(
            "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
            "--host", "127.0.0.1", "--name", name, "--memory-limit", "0",
            "--death-timeout", "30", "--local-directory", str(self.folder / name),
            name=name,
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def _wait_for_port(self, timeout_s: float) -> None:
        host, port = self.address.removeprefix("tcp://").rsplit(":", 1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: see {self.folder}/scheduler.log")
            with socket.socket() as sock:
                if sock.connect_ex((host, int(port))) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"dask scheduler did not listen within {timeout_s} s")

    def wait_for_workers(self, n: int, timeout_s: float = 60.0) -> None:
        """Wait until ``n`` workers are connected and have imported :data:`WARM_MODULES`."""
        import importlib

        from distributed import Client

        with Client(self.address, timeout=f"{timeout_s}s") as client:
            client.wait_for_workers(n, timeout=timeout_s)
            for module in WARM_MODULES:
                client.run(importlib.import_module, module)

    def live_workers(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def kill_worker(self, worker: subprocess.Popen) -> None:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def stop(self) -> None:
        """End every process by its id (SIGTERM, then SIGKILL after 2 s)."""
        processes = [*self.workers, self.scheduler]
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 2
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
