"""Faults on a real loopback cluster (``dask scheduler`` + ``dask worker`` processes): no
fault leaves a run waiting forever, and nothing keeps writing once nobody waits for it.

- a worker frozen with SIGSTOP: removed after ``worker_timeout_s``, its slide runs elsewhere;
- a worker stuck in a loop it never leaves: the slide is an error after its time limit and
  the worker is removed, so later slides do not queue behind it (a slide that can stop
  does so at its next tile batch, and is an error too);
- the client killed (-9): the workers stop the slides they were running, writing nothing;
- the scheduler killed (-9): the client exits 2 with one line, cohort.csv lists what
  finished, and the workers stop too.

Every wait has a bound; processes are ended by their ids.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from napari_imilia.cohort.run import predict_cohort
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.mil import create_model, save_model

sys.path.insert(0, str(Path(__file__).parent))
from loopback_cluster import LoopbackCluster

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
N_SLIDES = 4
#: Makes the slides this worker runs spin forever in Python, deaf to any stop.
SPIN = (
    "import napari_imilia.predict.slide as module\n"
    "def spin(*args, **kwargs):\n"
    "    while True:\n"
    "        pass\n"
    "module.predict_slide = spin\n"
)
#: Makes the slides this worker runs fail at once (the other worker of the stuck test).
QUICK = (
    "import napari_imilia.predict.slide as module\n"
    "from napari_imilia.errors import ImiliaError\n"
    "def quick(*args, **kwargs):\n"
    "    raise ImiliaError('answered at once')\n"
    "module.predict_slide = quick\n"
)


#: Holds a worker's slides, once computed, before their files are written, until ``open``
#: exists in the gate folder (slides in ``pass`` go through); each waiting slide says so.
GATE = """
import pathlib, time
import napari_imilia.predict.slide as module
real = getattr(module, "real_slide_record", module.slide_record)
module.real_slide_record = real
def gated(slide, *args, **kwargs):
    gate = pathlib.Path({folder!r})
    if slide.slide_id not in {passing!r}:
        (gate / ("waiting-" + slide.slide_id)).touch()
        deadline = time.monotonic() + 120
        while not (gate / "open").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return real(slide, *args, **kwargs)
module.slide_record = gated
"""
UNGATE = (
    "import napari_imilia.predict.slide as module\n"
    "module.slide_record = getattr(module, 'real_slide_record', module.slide_record)\n"
)


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One synthetic slide (1536 x 1024 px, 13 tissue tiles) under N names."""
    folder = tmp_path_factory.mktemp("fault_slides")
    first = write_synthetic_slide(folder / "case_0.svs", width_px=1536, height_px=1024, seed=1)
    return [first] + [
        Path(shutil.copyfile(first, folder / f"case_{i}.svs")) for i in range(1, N_SLIDES)
    ]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fault_model")
    model = create_model("max-mil", 64, hidden=[8])
    return save_model(model, folder / "mm.safetensors", extractor="imilia-stain-stats", mpp=0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    started = LoopbackCluster(tmp_path_factory.mktemp("fault_cluster"), n_workers=2)
    request.addfinalizer(lambda: _stop_all(started))
    return started


def _stop_all(cluster: LoopbackCluster) -> None:
    for worker in cluster.workers:  # a frozen process cannot act on SIGTERM
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
    cluster.stop()


def _workers(cluster: LoopbackCluster) -> dict[str, str]:
    """Connected workers: name -> address."""
    from distributed import Client

    with Client(cluster.address, timeout="20s") as client:
        found = client.sync(client.scheduler.identity)["workers"]
    return {info["name"]: address for address, info in found.items()}


def _replace(cluster: LoopbackCluster, worker: subprocess.Popen) -> None:
    """End ``worker`` (by its id) and start another, so the next test has two again."""
    if worker.poll() is None:
        os.kill(worker.pid, signal.SIGCONT)
        cluster.kill_worker(worker)
    cluster.add_worker()
    cluster.wait_for_workers(2)


def _in_thread(run, timeout_s: float):
    """``run()`` in a thread, given ``timeout_s`` seconds: a hang fails the test instead of
    stalling the suite (the thread is then abandoned, its cluster ended by the fixture)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"the run did not end within {timeout_s} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _cli(cluster: LoopbackCluster, slides: list[Path], out: Path, model: Path, *extra: str):
    command = [sys.executable, "-m", "napari_imilia.cli", "predict", *map(str, slides)]
    command += ["--out", str(out), "--model", str(model), "--scheduler", cluster.address]
    command += ["--device", "cpu", "--batch-size", "1", *extra]
    return subprocess.Popen(command, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_frozen_worker_is_removed_and_its_slide_runs_elsewhere(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    victim = cluster.live_workers()[0]
    frozen: list[int] = []

    def freeze(row: dict) -> None:
        if not frozen:
            os.kill(victim.pid, signal.SIGSTOP)
            frozen.append(victim.pid)

    try:
        table = _in_thread(
            lambda: predict_cohort(
                slides, tmp_path / "out", scheduler=cluster.address, model_path=model_path,
                device="cpu", on_result=freeze, worker_timeout_s=4, scheduler_timeout_s=20,
            ),
            timeout_s=240,
        )  # fmt: skip
        assert frozen and table["status"].tolist() == ["ok"] * N_SLIDES, table["error"].tolist()
        assert f"worker-{cluster.workers.index(victim)}" not in _workers(cluster)
    finally:
        _replace(cluster, victim)


def test_a_stuck_slide_ends_as_an_error_and_its_worker_is_removed(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    from distributed import Client

    names = _workers(cluster)
    stuck_name, other_name = sorted(names)
    with Client(cluster.address, timeout="20s") as client:
        client.run(exec, SPIN, {}, workers=[names[stuck_name]])
        client.run(exec, QUICK, {}, workers=[names[other_name]])
    table = _in_thread(
        lambda: predict_cohort(
            slides, tmp_path / "out", scheduler=cluster.address, model_path=model_path,
            device="cpu", slide_timeout_s=4, scheduler_timeout_s=20,
        ),
        timeout_s=240,
    )  # fmt: skip
    limit = r"^stopped after 4 s, the per-slide time limit .*could not stop it and was removed"
    stuck = table["error"].str.contains(limit)
    assert stuck.sum() == 1 and (table["error"][~stuck] == "answered at once").all(), table
    assert stuck_name not in _workers(cluster)
    _replace(cluster, cluster.workers[int(stuck_name.split("-")[1])])  # named by its index
    _replace(cluster, cluster.workers[int(other_name.split("-")[1])])  # its slides are fakes


def test_a_slide_past_its_time_limit_stops_and_is_an_error(
    slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    table = predict_cohort(
        slides[:1],
        tmp_path / "out",
        model_path=model_path,
        device="cpu",
        batch_size=1,
        progress=False,
        slide_timeout_s=0.01,
    )  # fmt: skip  (0.5 s let a warm process finish this small slide: a flaky test)
    assert table["status"].tolist() == ["error"]
    assert table["error"].iloc[0].startswith("stopped after 0.01 s, the per-slide time limit")
    assert not (tmp_path / "out" / "case_0").exists()


@contextlib.contextmanager
def _gated(cluster: LoopbackCluster, folder: Path, passing: tuple[str, ...] = ()):
    """Every worker holds its slides at the gate in ``folder`` (see :data:`GATE`)."""
    from distributed import Client

    folder.mkdir()
    with Client(cluster.address, timeout="20s") as client:
        client.run(exec, GATE.format(folder=str(folder), passing=passing), {})
    try:
        yield folder
    finally:
        (folder / "open").touch()
        if cluster.scheduler.poll() is None:
            with Client(cluster.address, timeout="20s") as client:
                client.run(exec, UNGATE, {})


def _wait_for(what, timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.1)


def test_workers_stop_writing_when_their_client_is_killed(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    """Both workers hold a computed slide at the gate when the client is killed; once the
    gate opens, neither writes it."""
    out = tmp_path / "out"
    with _gated(cluster, tmp_path / "gate") as gate:
        client = _cli(cluster, slides, out, model_path)
        try:
            _wait_for(lambda: len(list(gate.glob("waiting-*"))) == 2, 180, client)
            os.kill(client.pid, signal.SIGKILL)
            client.wait(timeout=30)
            time.sleep(3)  # the scheduler releases the client's slides; the workers see it
            (gate / "open").touch()
            time.sleep(5)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
    assert not list(out.glob("*/slide.json")) and not list(out.glob("*/.staging-*"))


def test_cancelling_score_all_stops_the_slides_running_on_the_cluster(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    """Both workers hold a computed slide at the gate when Score all is cancelled: neither is
    written once the gate opens, and the run returns."""
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.scoring import score_unscored

    cohort = Cohort.build(slides[0].parent, tmp_path / "results")
    cancel = threading.Event()
    with _gated(cluster, tmp_path / "gate") as gate:
        outcome: dict = {}

        def score() -> None:
            outcome["progress"] = score_unscored(
                cohort, scheduler=cluster.address, cancel=cancel, model_path=model_path,
                device="cpu",
            )  # fmt: skip

        thread = threading.Thread(target=score, daemon=True)
        thread.start()
        deadline = time.monotonic() + 180
        while len(list(gate.glob("waiting-*"))) < 2:
            assert thread.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.1)
        cancel.set()
        time.sleep(2)  # told to stop while held at the gate
        (gate / "open").touch()
        thread.join(120)
    assert not thread.is_alive() and outcome["progress"].cancelled
    assert not list((tmp_path / "results").glob("*/slide.json"))
    assert cohort.unscored() == list(range(N_SLIDES))


def test_the_client_of_a_killed_scheduler_exits_with_one_line(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    """Runs last: it kills the module's scheduler. case_0 finishes; both workers hold
    their next slide at the gate when the scheduler dies."""
    out = tmp_path / "out"
    with _gated(cluster, tmp_path / "gate", passing=("case_0",)) as gate:
        client = _cli(cluster, slides, out, model_path, "--scheduler-timeout", "5")
        try:
            done = out / "case_0" / "slide.json"
            _wait_for(lambda: done.exists() and len(list(gate.glob("waiting-*"))) == 2, 180,
                      client)  # fmt: skip
            os.kill(cluster.scheduler.pid, signal.SIGKILL)
            code = client.wait(timeout=120)
            _, err = client.communicate(timeout=30)
            (gate / "open").touch()
            time.sleep(5)  # the workers lost their scheduler: they stop too
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
    errors = [line for line in err.splitlines() if "error" in line.lower() or "Trace" in line]
    assert code == 2, err
    assert len(errors) == 1 and errors[0].startswith("imilia predict: error: lost the dask"), err
    assert "cohort.csv lists the 1 of 4 slides that finished" in errors[0], err
    table = pd.read_csv(out / "cohort.csv")
    assert table["slide_id"].tolist() == ["case_0"] and table["status"].tolist() == ["ok"]
    assert [p.parent.name for p in out.glob("*/slide.json")] == ["case_0"]
