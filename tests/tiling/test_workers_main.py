"""Our worker processes never run the user's script, and die with the process that started them.

Each case runs a user's script in a fresh Python exactly as a user would: a file without an
``if __name__ == "__main__":`` guard, the same text on stdin (``python - <<EOF``), a module
(``python -m``), a Jupyter kernel, a napari script. The script appends one line to
``runs.txt``, then scores a slide with 2 tile decode processes (forkserver) and inspects its
top tiles with 2 processes (spawn); a cohort case scores on a dask LocalCluster. The file
must hold exactly one line: the script's body ran once, never again in a worker.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
#: Tissue tiles of 224 px at 0.5 µm/px on the generated biopsy.
N_TILES = 20

#: The user's script: no main guard, relative paths, tiles decoded by 2 processes.
DECODE = textwrap.dedent(
    """\
    import os

    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.feed import TileFeed
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    with open("runs.txt", "a") as log:  # one line per run of this script's body
        log.write(f"{os.getpid()}\\n")
    slide = open_slide("biopsy.svs")
    grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=224)
    with TileFeed(slide, grid, batch_size=4, decode_workers=2) as feed:
        print("tiles", sum(len(batch) for batch in feed))
    """
)

#: Scoring (2 decode processes) then inspection (2 spawned processes), no main guard.
PIPELINE = textwrap.dedent(
    """\
    import os

    from napari_imilia.interpret import inspect_slide
    from napari_imilia.predict.slide import predict_slide

    with open("runs.txt", "a") as log:  # one line per run of this script's body
        log.write(f"{os.getpid()}\\n")
    result = predict_slide("biopsy.svs", "results", decode_workers=2, device="cpu",
                           progress=False)
    inspection = inspect_slide("biopsy.svs", "results", tiles="top:4", workers=2)
    print("score", round(result.score, 4), "cells", inspection.n_cells)
    """
)

#: A cohort scored on a LocalCluster of 2 worker processes.
COHORT = textwrap.dedent(
    """\
    import os

    from napari_imilia.cohort.run import predict_cohort

    with open("runs.txt", "a") as log:
        log.write(f"{os.getpid()}\\n")
    table = predict_cohort(["biopsy.svs"], "results", cluster_workers=2, device="cpu")
    print("status", list(table["status"]))
    """
)

#: Tiles decoded by 2 processes, for ever (until the test kills it).
DECODE_FOREVER = textwrap.dedent(
    """\
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.feed import TileFeed
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import detect_tissue

    slide = open_slide("biopsy.svs")
    grid = make_tile_grid(slide, detect_tissue(slide), target_mpp=0.5, tile_px=224)
    while True:
        with TileFeed(slide, grid, batch_size=4, decode_workers=2) as feed:
            for number, batch in enumerate(feed):
                if number == 1:
                    print("decoding", flush=True)
    """
)


@pytest.fixture(scope="module")
def biopsy(tmp_path_factory) -> Path:
    from napari_imilia.demo.sample import write_synthetic_slide

    return write_synthetic_slide(
        tmp_path_factory.mktemp("workers_main") / "biopsy.svs",
        width_px=1792,
        height_px=1344,
        seed=3,
        inflamed_regions="random",
        n_inflamed_regions=1,
        levels=(1, 4),
    )


@pytest.fixture
def user_folder(tmp_path, biopsy) -> Path:
    """The user's working folder, holding the slide (scripts name it relatively)."""
    shutil.copy(biopsy, tmp_path / "biopsy.svs")
    return tmp_path


def user_env() -> dict[str, str]:
    """The environment of a user's Python: this source tree, no test variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def run_python(args: list[str], folder: Path, *, stdin: str | None = None, timeout_s: float = 300):
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        input=stdin,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def runs(folder: Path) -> list[str]:
    return (folder / "runs.txt").read_text().splitlines()


def test_only_our_processes_start_without_main(monkeypatch):
    """The preparation data multiprocessing sends a child keeps ``__main__`` for other
    processes and drops it for ours (named imilia-...) and our LocalCluster's workers."""
    import multiprocessing.spawn as spawn

    from napari_imilia import processes

    context = processes.process_context("spawn")
    process = context.Process(target=print)
    assert process.name.startswith(processes.NAME_PREFIX)
    main = sys.modules["__main__"]  # as for a user's script: a file, no module spec
    monkeypatch.setattr(main, "__spec__", None, raising=False)
    monkeypatch.setattr(main, "__file__", "/home/user/job.py", raising=False)
    ours = spawn.get_preparation_data(process.name)
    theirs = spawn.get_preparation_data("Process-7")
    assert theirs["init_main_from_path"] == "/home/user/job.py"
    assert "init_main_from_path" not in ours and "init_main_from_name" not in ours
    assert ours["sys_path"] == theirs["sys_path"] and ours["dir"] == theirs["dir"]
    processes.start_dask_workers_without_main()
    assert processes.starts_without_main(processes.DASK_WORKER_NAME)


@pytest.mark.parametrize("how", ["script", "stdin", "module"])
def test_an_unguarded_script_decoding_tiles_runs_once(user_folder, how):
    if how == "script":
        (user_folder / "user_script.py").write_text(DECODE)
        done = run_python(["user_script.py"], user_folder)
    elif how == "stdin":
        done = run_python(["-"], user_folder, stdin=DECODE)
    else:
        (user_folder / "userjob").mkdir()
        (user_folder / "userjob" / "__init__.py").write_text("")
        (user_folder / "userjob" / "__main__.py").write_text(DECODE)
        done = run_python(["-m", "userjob"], user_folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(runs(user_folder)) == 1, done.stderr[-3000:]
    assert done.stdout.split() == ["tiles", str(N_TILES)]
    assert "<stdin>" not in done.stderr


def test_an_unguarded_script_scoring_and_inspecting_runs_once(user_folder):
    (user_folder / "user_script.py").write_text(PIPELINE)
    done = run_python(["user_script.py"], user_folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(runs(user_folder)) == 1, done.stderr[-3000:]
    assert "score" in done.stdout and "cells" in done.stdout
    assert (user_folder / "results" / "biopsy" / "markers.csv").is_file()


def test_the_installed_imilia_command_decodes_with_2_processes(user_folder):
    """The ``imilia`` entry point (its console script), from the slide's folder."""
    imilia = Path(sys.executable).with_name("imilia")
    if not imilia.is_file():
        pytest.skip(f"no imilia entry point beside {sys.executable} (pip install -e .)")
    argv = ["predict", "biopsy.svs", "--out", "results", "--decode-workers", "2", "--device", "cpu"]
    done = subprocess.run(
        [str(imilia), *argv], cwd=user_folder, env=user_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(pd.read_csv(user_folder / "results" / "biopsy" / "tiles.csv")) == N_TILES


def test_a_cohort_on_a_local_cluster_from_stdin_runs_once(user_folder):
    done = run_python(["-"], user_folder, stdin=COHORT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "status ['ok']" in done.stdout, done.stdout + done.stderr[-3000:]
    assert len(runs(user_folder)) == 1


def test_a_jupyter_kernel_runs_the_cell_once(user_folder):
    manager = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    kernel, client = manager.start_new_kernel(
        kernel_name="python3", cwd=str(user_folder), env=user_env()
    )
    outputs: list[dict] = []
    try:
        reply = client.execute_interactive(
            DECODE, timeout=300, output_hook=lambda message: outputs.append(message)
        )
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=True)
    errors = [m["content"] for m in outputs if m["msg_type"] == "error"]
    assert reply["content"]["status"] == "ok", errors
    printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    assert printed.split() == ["tiles", str(N_TILES)]
    assert len(runs(user_folder)) == 1


NAPARI_SCRIPT = textwrap.dedent(
    """\
    import os

    import napari
    from napari.qt.threading import thread_worker

    from napari_imilia.predict.slide import predict_slide

    with open("runs.txt", "a") as log:
        log.write(f"{os.getpid()}\\n")
    viewer = napari.Viewer()
    viewer.open("biopsy.svs", plugin="napari-imilia")

    @thread_worker
    def score():  # as the docks do: the decode processes start from a worker thread
        return predict_slide("biopsy.svs", "results", decode_workers=2, device="cpu",
                             progress=False).score

    worker = score()
    worker.returned.connect(lambda score: print("score", round(score, 4)))
    worker.finished.connect(viewer.close)  # the last window: napari.run() returns
    worker.start()
    napari.run()
    """
)


@pytest.mark.gui
def test_a_napari_script_opens_one_window_and_scores(user_folder):
    done = run_python(["-"], user_folder, stdin=NAPARI_SCRIPT, timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    # napari shows a worker's error and goes on: the score must have been printed
    assert re.search(r"^score [0-9.]+$", done.stdout, re.MULTILINE), done.stdout[-3000:]
    assert "Error" not in done.stdout + done.stderr
    assert len(runs(user_folder)) == 1


def test_decode_processes_die_with_their_parent(user_folder):
    """kill -9 the process while it decodes: its decoders, the fork server and the resource
    tracker end, and no shared memory of theirs is left in /dev/shm."""
    parent = subprocess.Popen(
        [sys.executable, "-"],
        cwd=user_folder,
        env=user_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        parent.stdin.write(DECODE_FOREVER)
        parent.stdin.close()
        assert parent.stdout.readline().strip() == "decoding"
        family = psutil.Process(parent.pid).children(recursive=True)
        names = [" ".join(p.cmdline()) for p in family]
        assert sum("forkserver" in n for n in names) >= 3, names  # the server, 2 decoders
        assert any("resource_tracker" in n for n in names), names
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        _gone, alive = psutil.wait_procs(family, timeout=20)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    pids = {parent.pid, *(p.pid for p in family)}
    left = [f for f in glob.glob("/dev/shm/torch_*") if _creator(f) in pids]
    assert not left


def _creator(shm_name: str) -> int | None:
    """The pid in torch's shared-memory names (``/dev/shm/torch_<pid>_<n>_<n>``)."""
    parts = Path(shm_name).name.split("_")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
