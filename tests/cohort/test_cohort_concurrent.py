"""Two `imilia predict` runs into one --out (the same slides, two models), started together.

On main this corrupted the folder (3 of 3 tries): one run died on a staging file the other's
clean-up deleted, and cohort.csv listed a finished slide as an error and took scores from the
model slide.json did not name. Now one run writes at a time: the second refuses at once,
naming the first, or waits with --wait-for-lock; cohort.csv always says what the slide
folders hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import napari_imilia
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.mil import create_model, save_model
from napari_imilia.predict.lock import LOCK_FOLDER
from napari_imilia.predict.slide import RESULT_FILES

N_SLIDES = 4


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("concurrent_slides")
    first = write_synthetic_slide(folder / "case_0.svs", width_px=1536, height_px=1024, seed=1)
    return [first] + [
        Path(shutil.copyfile(first, folder / f"case_{i}.svs")) for i in range(1, N_SLIDES)
    ]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("concurrent_models")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("max-mil", 64, hidden=[8])
        path = folder / f"m{seed}.safetensors"
        paths.append(save_model(model, path, extractor="imilia-stain-stats", mpp=0.5))
    return paths


def start(slides: list[Path], out: Path, model: Path, *extra: str) -> subprocess.Popen:
    src = str(Path(napari_imilia.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "napari_imilia.cli", "predict", *map(str, slides)]
    command += ["--out", str(out), "--model", str(model), "--device", "cpu", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def finish(runs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    try:
        return [(run.wait(timeout=300), run.communicate(timeout=30)[1]) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=10)


def check_folder(out: Path, slides: list[Path]) -> set[str]:
    """cohort.csv says what each slide folder holds, every slide is complete, nothing stray;
    returns the model(s) the folder's results were made with."""
    table = pd.read_csv(out / "cohort.csv")
    assert table["status"].tolist() == ["ok"] * len(slides), table
    made_with = set()
    for row in table.itertuples():
        info = json.loads((out / row.slide_id / "slide.json").read_text())
        assert row.score == pytest.approx(info["score"], abs=1e-12), row.slide_id
        assert sorted(p.name for p in (out / row.slide_id).iterdir()) == sorted(RESULT_FILES)
        made_with.add(info["model_sha256"])
    hidden = [p for p in out.rglob(".*") if LOCK_FOLDER not in p.relative_to(out).parts]
    assert not hidden, hidden
    return made_with


def test_a_second_run_into_a_busy_folder_is_refused(
    slides: list[Path], models: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    outcomes = finish([start(slides, out, model) for model in models])
    codes = [code for code, _ in outcomes]
    assert 0 in codes, outcomes
    for code, err in outcomes:
        if code != 0:  # refused at once, in one line naming the other run
            assert code == 2, err
            line = err.strip()
            assert line.startswith("imilia predict: error: ") and "\n" not in line, err
            assert "is being written by another run" in line and "--wait-for-lock" in line
            assert "predict" in line and "process " in line
    assert len(check_folder(out, slides)) == 1


def test_a_second_run_can_wait_for_the_first(
    slides: list[Path], models: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    runs = [start(slides, out, model, "--wait-for-lock", "300") for model in models]
    outcomes = finish(runs)
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert len(check_folder(out, slides)) == 1  # all from the run that ended last
