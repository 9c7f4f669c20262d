"""`imilia predict`'s bounded waits on one slide: --slide-timeout, --wait-for-lock, and the
checks of --worker-timeout (the cluster side: tests/cohort/test_cohort_faults.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from napari_imilia.cli import main
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.predict.lock import run_lock
from napari_imilia.predict.slide import RESULT_FILES
from support.models import save_small_model


@pytest.fixture(scope="module")
def slide_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("limits")
    slide = write_synthetic_slide(folder / "case.svs", width_px=1536, height_px=1024, seed=2)
    return slide, save_small_model(folder, "max-mil")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--slide-timeout", "-1", "--slide-timeout must be 0 or more, got -1.0"),
        ("--wait-for-lock", "-5", "--wait-for-lock must be 0 or more, got -5.0"),
        ("--worker-timeout", "0", "--worker-timeout must be positive, got 0.0"),
    ],
)
def test_impossible_limits_are_refused(
    option: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["predict", "s.svs", "--out", str(tmp_path / "out"), option, value])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_one_slide_past_its_time_limit_is_one_line(
    slide_and_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    slide, model = slide_and_model
    out = tmp_path / "out"
    args = ["predict", str(slide), "--out", str(out), "--model", str(model), "--device", "cpu"]
    code = main([*args, "--batch-size", "1", "--slide-timeout", "0.1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith("imilia predict: error: ") and "case.svs: stopped after 0.1 s" in err
    assert not (out / "case").exists()


def test_one_slide_waits_for_the_run_writing_its_folder(
    slide_and_model: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    slide, model = slide_and_model
    out = tmp_path / "out"
    args = ["predict", str(slide), "--out", str(out), "--model", str(model), "--device", "cpu"]
    with run_lock(out):  # another run is writing into --out
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "is being written by another run" in err and "--wait-for-lock" in err
        assert not (out / "case").exists()  # refused at the switch: nothing of it written

    def hold() -> None:
        with run_lock(out):
            held.set()
            time.sleep(2)

    held = threading.Event()
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    assert main([*args, "--wait-for-lock", "120"]) == 0
    holder.join()
    assert sorted(p.name for p in (out / "case").iterdir()) == sorted(RESULT_FILES)
