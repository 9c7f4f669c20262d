"""predict_cohort: in this process, on a LocalCluster it starts, and on a given scheduler."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from napari_imilia.cli import main
from napari_imilia.cohort.run import SUMMARY_COLUMNS, predict_cohort
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.errors import ImiliaError
from napari_imilia.mil import create_model, save_model
from napari_imilia.predict.lock import LOCK_FOLDER
from napari_imilia.predict.slide import RESULT_FILES


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two small synthetic slides (1536 x 1024 px at 0.5 µm/px, about 13 tissue tiles each)."""
    folder = tmp_path_factory.mktemp("cohort_slides")
    return [
        write_synthetic_slide(
            folder / f"case_{seed}.svs",
            width_px=1536,
            height_px=1024,
            seed=seed,
            inflamed_regions="random",
            n_inflamed_regions=1,
        )
        for seed in (1, 2)
    ]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("max-mil", 64, hidden=[8])
    folder = tmp_path_factory.mktemp("cohort_model")
    return save_model(model, folder / "mm.safetensors", extractor="imilia-stain-stats", mpp=0.5)


@pytest.fixture(scope="module")
def in_process(
    slides: list[Path], model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame]:
    """The cohort scored in this process, one slide after the other: (out folder, table)."""
    out = tmp_path_factory.mktemp("cohort_here")
    seen: list[str] = []
    table = predict_cohort(
        slides,
        out,
        model_path=model_path,
        device="cpu",
        progress=False,
        on_result=lambda row: seen.append(row["slide_id"]),
    )
    assert seen == ["case_1", "case_2"]
    return out, table


@pytest.fixture(scope="module")
def reference(in_process: tuple[Path, pd.DataFrame]) -> pd.DataFrame:
    return in_process[1]


def check_cohort(out: Path, table: pd.DataFrame, slides: list[Path]) -> None:
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    assert table["slide"].tolist() == [str(s) for s in slides]  # the order given
    assert (table["status"] == "ok").all() and table["error"].isna().all()
    assert table["score"].between(0, 1).all() and (table["n_tiles"] >= 5).all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "cohort.csv"), table, check_dtype=False)
    for slide_id in table["slide_id"]:
        assert sorted(p.name for p in (out / slide_id).iterdir()) == sorted(RESULT_FILES)


def test_in_process(in_process: tuple[Path, pd.DataFrame], slides: list[Path]) -> None:
    out, table = in_process
    check_cohort(out, table, slides)
    assert table["slide_id"].tolist() == ["case_1", "case_2"]
    assert table["score"].nunique() == 2


def test_local_cluster_matches_in_process(
    slides: list[Path], model_path: Path, reference: pd.DataFrame, tmp_path: Path
) -> None:
    table = predict_cohort(
        slides, tmp_path, model_path=model_path, device="cpu", cluster_workers=2, processes=False
    )
    check_cohort(tmp_path, table, slides)
    pd.testing.assert_series_equal(table["score"], reference["score"], rtol=1e-6)


def test_explicit_scheduler_address(
    slides: list[Path], model_path: Path, reference: pd.DataFrame, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        table = predict_cohort(
            slides,
            tmp_path,
            scheduler=cluster.scheduler_address,
            model_path=model_path,
            device="cpu",
        )
    check_cohort(tmp_path, table, slides)
    pd.testing.assert_series_equal(table["score"], reference["score"], rtol=1e-6)


def test_a_failing_slide_does_not_stop_the_others(
    slides: list[Path], model_path: Path, tiff_writer, tmp_path: Path
) -> None:
    blank = tiff_writer(tmp_path / "blank.tiff", (512, 512))
    out = tmp_path / "out"
    table = predict_cohort(
        [slides[0], blank], out, model_path=model_path, device="cpu", progress=False
    )
    assert table["status"].tolist() == ["ok", "error"]
    assert table.loc[1, "slide_id"] == "blank"
    assert "no tissue found in blank.tiff" in table.loc[1, "error"]
    assert not (out / "blank").exists()
    assert (out / "case_1" / "slide.json").is_file()


def test_bad_cohorts_fail_before_any_work(slides: list[Path], model_path: Path, tmp_path) -> None:
    twin = tmp_path / "other" / "case_1.svs"
    twin.parent.mkdir()
    twin.write_bytes(slides[0].read_bytes())
    out = tmp_path / "out"
    with pytest.raises(ImiliaError, match=r"share the slide id.*case_1"):
        predict_cohort([slides[0], twin], out, model_path=model_path)
    with pytest.raises(ImiliaError, match="checkpoint not found"):
        predict_cohort(slides, out, model_path=tmp_path / "absent.safetensors", cluster_workers=2)
    if not torch.cuda.is_available():
        with pytest.raises(ImiliaError, match="no CUDA GPU"):
            predict_cohort(slides, out, model_path=model_path, device="cuda", cluster_workers=2)
    assert not out.exists()


def test_cli_cohort(slides: list[Path], model_path: Path, tiff_writer, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = ["predict", *map(str, slides), "--out", str(out), "--model", str(model_path)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert re.search(r"^case_1: score 0\.\d{4} \(\d+ tiles\)$", captured.out, re.M)
    assert "2 of 2 slides scored" in captured.out
    check_cohort(out, pd.read_csv(out / "cohort.csv"), slides)

    blank = tiff_writer(tmp_path / "blank.tiff", (512, 512))
    args.insert(3, str(blank))  # third slide, before the options
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(r"blank\.tiff: error: no tissue found", err)
    assert pd.read_csv(out / "cohort.csv")["status"].tolist() == ["ok", "ok", "error"]


def stray_files(out: Path) -> list[Path]:
    """Hidden staging folders and temporary files anywhere below ``out`` (not the lock
    files in ``out/.imilia``)."""
    return [p for p in out.rglob(".*") if LOCK_FOLDER not in p.relative_to(out).parts]


def test_rerun_reuses_merges_and_keeps_integers(
    slides: list[Path], model_path: Path, tiff_writer, tmp_path: Path
) -> None:
    """A folder, then a glob: finished slides are reused (same settings), the table merged."""
    from napari_imilia.mil import load_model
    from napari_imilia.predict.results import reusable_result
    from napari_imilia.predict.settings import PredictSettings

    blank = tiff_writer(tmp_path / "blank.tiff", (512, 512))
    out = tmp_path / "out"
    options = {"model_path": model_path, "device": "cpu", "progress": False}
    first = predict_cohort([slides[0], blank], out, **options)
    assert first["status"].tolist() == ["ok", "error"]
    lines = (out / "cohort.csv").read_text().splitlines()
    assert [line.split(",")[4] for line in lines[1:]] == [str(first.loc[0, "n_tiles"]), ""]
    info = out / "case_1" / "slide.json"
    stamp = info.stat().st_mtime_ns

    # an interrupted earlier run left a staging folder and a temporary feature file
    (out / "case_1" / ".staging-x1").mkdir()
    (out / "case_1" / ".staging-x1" / "tiles.csv").write_text("partial")
    stale = out / "features" / ".case_2.h5.abc.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))  # a killed run's, hours ago
    seen: list[dict] = []
    second = predict_cohort([slides[0].parent], out, on_result=seen.append, **options)
    assert [(row["slide_id"], bool(row.get("reused"))) for row in seen] == [
        ("case_1", True),
        ("case_2", False),
    ]
    assert info.stat().st_mtime_ns == stamp  # not computed again
    assert second["slide"].tolist() == [str(s) for s in slides]
    assert not stray_files(out)
    merged = pd.read_csv(out / "cohort.csv")
    assert merged["slide_id"].tolist() == ["case_1", "blank", "case_2"]  # blank's row kept
    assert merged["status"].tolist() == ["ok", "error", "ok"]
    assert merged.loc[0, "score"] == pytest.approx(first.loc[0, "score"])

    # other settings, or force, compute it again (the one rule: tests/predict/test_reuse.py)
    model = load_model(model_path, device="cpu")
    asked = PredictSettings.from_keywords(model_path=model_path)
    assert reusable_result(slides[0], out, asked.resolve(model)) is not None
    for changed in ({"min_tissue_fraction": 0.6}, {"tissue_params": {"min_od": 0.1}}):
        other = PredictSettings.from_keywords(model_path=model_path, **changed)
        assert reusable_result(slides[0], out, other.resolve(model)) is None
    seen.clear()
    predict_cohort(
        [str(slides[0].parent / "case_1*")], out, force=True, on_result=seen.append, **options
    )
    assert [row.get("reused") for row in seen] == [None]
    assert info.stat().st_mtime_ns != stamp
    assert pd.read_csv(out / "cohort.csv")["slide_id"].tolist() == ["case_1", "blank", "case_2"]


def test_interrupt_keeps_what_finished(slides: list[Path], model_path: Path, tmp_path: Path):
    """Ctrl-C in the second slide's extraction: cohort.csv holds the first, nothing partial."""
    from napari_imilia.cohort.run import CohortInterrupted

    def progress(done: int, total: int) -> None:
        if len(stamps) == 1:  # the second slide is running
            raise KeyboardInterrupt

    stamps: list[str] = []
    out = tmp_path / "out"
    with pytest.raises(CohortInterrupted) as stopped:
        predict_cohort(
            slides,
            out,
            model_path=model_path,
            device="cpu",
            batch_size=2,
            progress=progress,
            on_result=lambda row: stamps.append(row["slide_id"]),
        )
    assert stamps == ["case_1"]
    assert stopped.value.table["slide_id"].tolist() == ["case_1"]
    assert pd.read_csv(out / "cohort.csv")["slide_id"].tolist() == ["case_1"]
    assert not (out / "case_2").exists() and not stray_files(out)


def test_cancel_event_returns_what_finished(slides: list[Path], model_path: Path, tmp_path):
    import threading

    cancel = threading.Event()
    table = predict_cohort(
        slides,
        tmp_path,
        model_path=model_path,
        device="cpu",
        progress=False,
        cancel=cancel,
        on_result=lambda row: cancel.set(),
    )
    assert table["slide_id"].tolist() == ["case_1"]
    assert not (tmp_path / "case_2").exists()


def test_inputs_are_checked_and_made_absolute(slides: list[Path], tmp_path: Path, monkeypatch):
    from napari_imilia.cohort.inputs import absolute_options, check_scheduler_address
    from napari_imilia.predict.settings import PredictSettings

    monkeypatch.chdir(slides[0].parent.parent)
    settings = PredictSettings.from_keywords(model_path=["a.pt", "b.pt"], mpp=0.5).absolute()
    assert all(Path(p).is_absolute() for p in settings.model_path) and settings.mpp == 0.5
    options = absolute_options({"cache_dir": "c", "device": "cpu"})
    assert Path(options["cache_dir"]) == Path.cwd() / "c" and options["device"] == "cpu"
    assert check_scheduler_address("127.0.0.1:8786") == "tcp://127.0.0.1:8786"
    for bad, message in (
        ("127.0.0.1", "has no port"),
        ("tcp://127.0.0.1", "has no port"),
        ("tcp://:8786", "has no host"),
        ("tcp://host:99999", "not in 1-65535"),
        ("udp://host:1", "unknown protocol udp://"),
        ("  ", "is empty"),
    ):
        with pytest.raises(ImiliaError, match=message):
            check_scheduler_address(bad)


def test_old_keyword_names_still_work(
    in_process: tuple[Path, pd.DataFrame], slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    """n_workers= (now cluster_workers=) and num_workers= (now decode_workers=), documented
    as old names, still work and say so."""
    import shutil

    from napari_imilia.predict.slide import predict_slide

    out = Path(shutil.copytree(in_process[0], tmp_path / "out"))
    seen: list[dict] = []
    with pytest.warns(DeprecationWarning, match="n_workers= is the old name of cluster_workers="):
        predict_cohort(slides, out, model_path=model_path, n_workers=1, on_result=seen.append)
    assert [row.get("reused") for row in seen] == [True, True]  # in this process, reused
    with pytest.warns(DeprecationWarning, match="num_workers= is the old name of decode_workers="):
        result = predict_slide(
            slides[0], tmp_path / "one", model_path=model_path, num_workers=0, progress=False
        )
    assert result.info["n_tiles"] == in_process[1].loc[0, "n_tiles"]
