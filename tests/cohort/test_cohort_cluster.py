"""Cohorts on a real loopback cluster: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (free ports, their own folder), ended by their process ids when the module ends.

Covers relative paths, a scheduler without workers and bad addresses, Ctrl-C (SIGINT to a
client process) and a worker killed mid-run. Every wait has a timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from napari_imilia.cli import main
from napari_imilia.cohort.run import predict_cohort
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.mil import create_model, save_model
from napari_imilia.predict.lock import LOCK_FOLDER
from napari_imilia.predict.slide import RESULT_FILES

sys.path.insert(0, str(Path(__file__).parent))
from loopback_cluster import LoopbackCluster, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
N_SLIDES = 6


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One small synthetic slide (1536 x 1024 px, 13 tissue tiles) copied under N names."""
    folder = tmp_path_factory.mktemp("cluster_slides")
    first = write_synthetic_slide(folder / "case_0.svs", width_px=1536, height_px=1024, seed=1)
    copies = [first]
    for i in range(1, N_SLIDES):
        copies.append(Path(shutil.copyfile(first, folder / f"case_{i}.svs")))
    return copies


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("cluster_model")
    model = create_model("max-mil", 64, hidden=[8])
    return save_model(model, folder / "mm.safetensors", extractor="imilia-stain-stats", mpp=0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """Scheduler + 2 workers running in a folder of their own (not the tests')."""
    started = LoopbackCluster(tmp_path_factory.mktemp("cluster_cwd"), n_workers=2)
    request.addfinalizer(started.stop)
    return started


def result_files(out: Path) -> dict[str, int]:
    """Every file below ``out`` with its modification time (ns)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def check_clean(out: Path, slide_ids: list[str]) -> None:
    """Each slide folder holds exactly the result files; no hidden staging or temp file
    (only the lock files in ``out/.imilia``)."""
    hidden = [p for p in out.rglob(".*") if LOCK_FOLDER not in p.relative_to(out).parts]
    assert not hidden, hidden
    for slide_id in slide_ids:
        assert sorted(p.name for p in (out / slide_id).iterdir()) == sorted(RESULT_FILES)


def test_relative_paths_reach_the_workers(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = [os.path.relpath(s, tmp_path) for s in slides[:2]]
    args = ["predict", *relative, "--out", "out", "--model", os.path.relpath(model_path)]
    assert main([*args, "--scheduler", cluster.address, "--device", "cpu"]) == 0
    table = pd.read_csv(tmp_path / "out" / "cohort.csv")
    assert table["status"].tolist() == ["ok", "ok"]
    assert table["slide"].tolist() == [str(s) for s in slides[:2]]  # absolute
    check_clean(tmp_path / "out", ["case_0", "case_1"])
    assert not (cluster.folder / "out").exists()  # nothing written where the workers run


def test_no_worker_and_bad_addresses_fail_before_any_file(
    slides: list[Path], model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    base = ["predict", str(slides[0]), "--out", str(out), "--model", str(model_path)]
    empty = LoopbackCluster(tmp_path / "empty_cluster", n_workers=0)
    try:
        cases = [
            (empty.address, r"has no worker: none joined within 1 s"),
            (f"tcp://127.0.0.1:{free_port()}", r"cannot reach the dask scheduler .* within 1 s"),
            ("127.0.0.1", r"has no port"),
            ("tcp://127.0.0.1:123456", r"not in 1-65535"),
            ("http//nowhere", r"malformed|unknown protocol|has no port"),
        ]
        for address, message in cases:
            started = time.monotonic()
            code = main([*base, "--scheduler", address, "--scheduler-timeout", "1"])
            err = capsys.readouterr().err
            assert code == 2 and re.search(message, err), (address, err)
            assert err.startswith("imilia predict: error:") and len(err.strip().splitlines()) == 1
            assert time.monotonic() - started < 30
            assert not out.exists()
    finally:
        empty.stop()


def test_ctrl_c_stops_the_cluster_run_and_keeps_what_finished(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "napari_imilia.cli", "predict", *map(str, slides)]
    command += ["--out", str(out), "--model", str(model_path), "--scheduler", cluster.address]
    command += ["--device", "cpu", "--batch-size", "2"]
    client = subprocess.Popen(
        command, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/slide.json")) and time.monotonic() < deadline:
            assert client.poll() is None, client.communicate()
            time.sleep(0.1)
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=90)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
    assert client.returncode == 130, err
    assert "interrupted" in err
    finished = sorted(p.parent.name for p in out.glob("*/slide.json"))
    table = pd.read_csv(out / "cohort.csv")
    assert 1 <= len(finished) < N_SLIDES
    assert sorted(table["slide_id"]) == finished and (table["status"] == "ok").all()
    check_clean(out, finished)
    before = result_files(out)
    time.sleep(2.0)  # the slides that were running were stopped, not left writing
    assert result_files(out) == before


def test_a_killed_worker_loses_no_slide_and_recomputes_none(
    cluster: LoopbackCluster, slides: list[Path], model_path: Path, tiff_writer, tmp_path: Path
) -> None:
    """Runs last: it leaves one worker."""
    blank = tiff_writer(tmp_path / "blank.tiff", (512, 512))
    out = tmp_path / "out"
    stamps: dict[str, int] = {}
    killed: list[int] = []

    def arrived(row: dict) -> None:
        if row["status"] == "ok":
            stamps[row["slide_id"]] = (out / row["slide_id"] / "slide.json").stat().st_mtime_ns
        # 3 of 6 slides back: each worker has finished one at least (so the old client,
        # which kept every future, had results on the victim that dask would recompute),
        # and both are busy with the next one
        if not killed and len(stamps) == 3:
            victim = cluster.live_workers()[0]
            cluster.kill_worker(victim)
            killed.append(victim.pid)

    table = predict_cohort(
        [*slides, blank],
        out,
        scheduler=cluster.address,
        model_path=model_path,
        device="cpu",
        on_result=arrived,
        scheduler_timeout_s=20,
    )
    assert killed and len(cluster.live_workers()) == 1
    assert table["status"].tolist() == ["ok"] * N_SLIDES + ["error"]
    ids = [s.stem for s in slides]
    assert sorted(stamps) == sorted(ids)
    for slide_id, stamp in stamps.items():  # none computed again after it arrived
        assert (out / slide_id / "slide.json").stat().st_mtime_ns == stamp, slide_id
    check_clean(out, ids)
    assert not (out / "blank").exists()
