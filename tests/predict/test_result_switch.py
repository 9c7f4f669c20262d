"""One writer per results folder, and readers that never see half of a result.

The run lock refuses (or waits for) a second run and names the first; it goes with its
process, however it ends. Staging folders are only removed when nobody writes them. A
reader process hammering a slide's folder while its result is switched hundreds of times
between two models always gets slide.json and tiles.csv of one and the same model.
"""

from __future__ import annotations

import json
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

from napari_imilia.cohort.summary import remove_stray_files
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.errors import ImiliaError
from napari_imilia.mil import load_model
from napari_imilia.predict.lock import (
    LOCK_FOLDER,
    FolderBusyError,
    run_lock,
    slide_write_lock,
)
from napari_imilia.predict.results import load_prediction, reusable_result, write_result
from napari_imilia.predict.settings import PredictSettings
from napari_imilia.predict.slide import predict_slide
from napari_imilia.slide import open_slide
from support.models import save_small_model

READER = """
import json, sys
from pathlib import Path
from napari_imilia.errors import ImiliaError
from napari_imilia.predict.results import load_prediction

folder, ready, stop, report = map(Path, sys.argv[1:5])
pairs, errors, reads = {}, [], 0
ready.write_text("ready")
while not stop.exists():
    try:
        result = load_prediction(folder)
        scores = ",".join(f"{v:.6g}" for v in result.tiles["score"])
        key = result.info["model_sha256"] + " " + scores
        pairs[key] = pairs.get(key, 0) + 1
    except ImiliaError as error:
        errors.append(str(error))
    reads += 1
report.write_text(json.dumps({"reads": reads, "pairs": pairs, "errors": errors[:5],
                              "n_errors": len(errors)}))
"""


@pytest.fixture(scope="module")
def two_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small slide scored by two models (other weights): slide, and a result folder each."""
    folder = tmp_path_factory.mktemp("switch")
    slide = write_synthetic_slide(folder / "case.svs", width_px=1536, height_px=1024, seed=3)
    made = {"slide": slide}
    for seed in (0, 1):
        (folder / f"m{seed}").mkdir()
        model = save_small_model(folder / f"m{seed}", "max-mil", seed=seed)
        out = folder / f"out{seed}"
        predict_slide(slide, out, model_path=model, device="cpu", progress=False,
                      cache_dir=folder / "cache")  # fmt: skip
        made[f"model{seed}"], made[f"out{seed}"] = model, out / "case"
    return made


def test_a_second_run_is_refused_and_told_who_writes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with run_lock(out):
        with pytest.raises(FolderBusyError) as busy, run_lock(out):
            pass
        message = str(busy.value)
        assert f"process {os.getpid()}" in message and "--wait-for-lock SECONDS" in message
        assert "is being written by another run" in message and "\n" not in message
    # a waiting run gets the folder once the first is done
    holder = threading.Thread(target=_hold, args=(out, 1.5))
    holder.start()
    time.sleep(0.5)
    started = time.monotonic()
    with run_lock(out, wait_s=60):
        assert time.monotonic() - started >= 0.5
    holder.join()


def _hold(out: Path, seconds: float) -> None:
    with run_lock(out):
        time.sleep(seconds)


def test_a_killed_run_leaves_the_folder_free(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys, time\nfrom napari_imilia.predict.lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match=rf"process {holder.pid} "), run_lock(out):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with run_lock(out):  # flock went with the process
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)


def test_lock_files_are_never_followed_out_of_the_folder(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / LOCK_FOLDER).symlink_to(elsewhere)
    with pytest.raises(ImiliaError, match=r"\.imilia is not a folder \(a link"), run_lock(out):
        pass
    (out / LOCK_FOLDER).unlink()
    (out / LOCK_FOLDER).mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / LOCK_FOLDER / "run.lock").symlink_to(victim)
    with pytest.raises(ImiliaError, match=r"cannot lock .*run\.lock"), run_lock(out):
        pass
    assert victim.read_text() == "keep" and not list(elsewhere.iterdir())


def test_clean_up_keeps_the_staging_someone_writes(tmp_path: Path) -> None:
    slide_dir = tmp_path / "out" / "case"
    slide_dir.mkdir(parents=True)
    staging = slide_dir / ".staging-live"
    staging.mkdir()
    (staging / "tiles.csv").write_text("being written")
    with slide_write_lock(slide_dir):  # another writer, between staging and switch
        assert remove_stray_files(tmp_path / "out", tmp_path / "cache", ["case"]) == []
        assert (staging / "tiles.csv").read_text() == "being written"
    assert remove_stray_files(tmp_path / "out", tmp_path / "cache", ["case"]) == [staging]
    assert not staging.exists()


def test_a_switch_cut_short_is_neither_read_nor_reused(
    two_results: dict[str, Path], tmp_path: Path
) -> None:
    """A run killed between moving tiles.csv and slide.json in leaves the old slide.json
    beside the new tiles.csv: never read as a result, never reused."""
    folder = Path(shutil.copytree(two_results["out0"], tmp_path / "out" / "case"))
    shutil.copyfile(two_results["out1"] / "tiles.csv", folder / "tiles.csv")
    with pytest.raises(
        ImiliaError, match=r"tiles\.csv is not the one slide\.json was written with"
    ):
        load_prediction(folder)
    model = load_model(two_results["model0"], device="cpu")
    settings = PredictSettings.from_keywords(model_path=two_results["model0"]).resolve(model)
    assert reusable_result(two_results["slide"], tmp_path / "out", settings) is None
    shutil.copyfile(two_results["out0"] / "tiles.csv", folder / "tiles.csv")
    assert reusable_result(two_results["slide"], tmp_path / "out", settings) is not None


def test_readers_never_see_half_of_a_switch(
    two_results: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    """A reader process loads the slide's result in a loop while it is switched 300 times
    between the two models' results (what `imilia predict --force` does per slide; the
    heatmap, drawn by matplotlib in a second, is a plain image here)."""
    import napari_imilia.predict.heatmap as heatmap

    monkeypatch.setattr(heatmap, "write_heatmap_png", _plain_png)
    folder = Path(shutil.copytree(two_results["out0"], tmp_path / "out" / "case"))
    results = [load_prediction(two_results[f"out{seed}"]) for seed in (0, 1)]
    expected = {
        r.info["model_sha256"] + " " + ",".join(f"{v:.6g}" for v in r.tiles["score"])
        for r in results
    }
    ready, stop, report = tmp_path / "ready", tmp_path / "stop", tmp_path / "report.json"
    src = str(Path(load_prediction.__code__.co_filename).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(folder), str(ready), str(stop), str(report)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert reader.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        tiles = [pd.read_csv(two_results[f"out{seed}"] / "tiles.csv") for seed in (0, 1)]
        with open_slide(two_results["slide"]) as slide:
            for i in range(300):
                info = {k: v for k, v in results[i % 2].info.items() if k != "files"}
                write_result(slide, folder, tiles[i % 2], info)
        stop.write_text("stop")
        reader.wait(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(timeout=10)
    seen = json.loads(report.read_text())
    assert seen["n_errors"] == 0, seen["errors"]
    assert set(seen["pairs"]) <= expected, set(seen["pairs"]) - expected
    assert seen["reads"] > 100


def _plain_png(path: Path, *args: object, **kwargs: object) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), "white").save(path)
