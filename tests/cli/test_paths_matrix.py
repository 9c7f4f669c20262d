"""Every ``imilia`` subcommand, run from another working folder with relative paths.

A study lives in ``work/data`` (slides, a cohort CSV whose paths are relative to it, models,
weights, EpiSeg tiles, a HistoPLUS cell file, IMILIA-style tile coordinates); every command
runs in ``work/run`` and names all of it as ``../data/...`` and its outputs relative to
``work/run``. Each subcommand of ``imilia --help`` has a case (a new subcommand without one
fails :func:`test_the_matrix_has_every_subcommand`); each case checks that the command
worked, wrote where it was told, and that what it stored holds absolute paths (reopened
from a third folder where it is a cohort). :func:`test_every_path_option_is_resolved` parses
relative values for every path option of every subcommand, including those the matrix does
not run end to end (``train-episeg --dataset``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_imilia._cli.paths import user_path
from napari_imilia.cli import build_parser, main

N_SLIDES = 4
DATA = "../data"


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@contextmanager
def working_folder(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


# ------------------------------------------------------------------------------------ study
def _write_slides(data: Path) -> None:
    from napari_imilia.demo.sample import write_synthetic_slide

    (data / "slides").mkdir(parents=True)
    rows, train = ["slide,active,nancy"], ["slide_id,label"]
    for k in range(N_SLIDES):
        write_synthetic_slide(
            data / "slides" / f"case_0{k}.svs",
            width_px=1344,
            height_px=896,
            seed=10 + k,
            inflamed_regions="random",
            n_inflamed_regions=k % 2,
            levels=(1, 4),
        )
        rows.append(f"slides/case_0{k}.svs,{k % 2},{2 * (k % 2)}")  # relative to the CSV
        train.append(f"case_0{k},{k % 2}")
    (data / "cohort.csv").write_text("\n".join(rows) + "\n")
    (data / "train_labels.csv").write_text("\n".join(train) + "\n")


def _tiny_vit(data: Path) -> Callable[[], None]:
    """A tiny random ViT of H0-mini's layout registered as ``tiny-h0`` (its weights in
    data/vit.safetensors) and a small ABMIL on its features; returns the unregister."""
    from safetensors.torch import save_file

    from napari_imilia.features.extractors import (
        FOUNDATION_SPECS,
        ViTExtractor,
        register_extractor,
        unregister_extractor,
    )
    from napari_imilia.features.vit import VisionTransformer
    from napari_imilia.features.vit.config import scaled_down
    from support.models import save_small_model

    h0 = next(spec for spec in FOUNDATION_SPECS if spec.name == "h0-mini")
    spec = dataclasses.replace(h0, name="tiny-h0", vit=scaled_down(h0.vit, grid=16))
    save_file(
        VisionTransformer(spec.vit).init_random(seed=2).state_dict(), str(data / "vit.safetensors")
    )
    register_extractor(
        "tiny-h0", "test", lambda w, d, b: ViTExtractor(spec, w, device=d, batch_size=b)
    )
    save_small_model(data, "abmil", in_dim=spec.vit.embed_dim, extractor="tiny-h0")
    return lambda: unregister_extractor("tiny-h0")


def _episeg_pairs(data: Path) -> None:
    from PIL import Image

    from napari_imilia.demo.synthetic import render_tile

    for name in ("tiles", "masks"):
        (data / "episeg" / name).mkdir(parents=True)
    for k in range(4):
        tile = render_tile(224, 0.5, seed=k)
        Image.fromarray(tile.rgb).save(data / "episeg" / "tiles" / f"t{k}.png")
        mask = tile.epithelium_mask.astype(np.uint8) * 255
        Image.fromarray(mask).save(data / "episeg" / "masks" / f"t{k}.png")


def _cell_files(data: Path) -> None:
    """A tiny CellViT checkpoint and a HistoPLUS cell file of case_00 (classical cells)."""
    from napari_imilia.interpret.cells import create_cell_backend
    from napari_imilia.interpret.cells.cellvit import CellViT, save_cellvit, scaled_down
    from napari_imilia.interpret.cells.histoplus_json_write import write_histoplus_json
    from napari_imilia.slide import open_slide

    save_cellvit(CellViT(scaled_down()).init_random(seed=3).eval(), data / "cellvit.safetensors")
    with open_slide(data / "slides" / "case_00.svs") as slide:
        rgb = np.asarray(slide.levels[0])[..., :3]
        size = slide.dimensions
    cells = create_cell_backend("classical").segment(
        rgb, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0
    )
    write_histoplus_json(data / "cells.json", [cells], level0_dimensions=size)


def _deepzoom_tiles(data: Path) -> None:
    openslide = pytest.importorskip("openslide")
    from openslide.deepzoom import DeepZoomGenerator

    zoom = DeepZoomGenerator(openslide.OpenSlide(str(data / "slides" / "case_00.svs")), 224, 0)
    level = zoom.level_count - 1
    np.save(data / "tiles_coords.npy", np.array([(level, 1, 1), (level, 2, 1), (level, 3, 2)]))


@pytest.fixture(scope="module")
def work(tmp_path_factory, sample_slide) -> Iterator[Path]:
    """``work/data`` (the study), ``work/run`` (where commands run), ``work/elsewhere``."""
    from napari_imilia.predict.slide import default_model_path

    root = tmp_path_factory.mktemp("paths_matrix")
    data = root / "data"
    _write_slides(data)
    (data / "model").mkdir()
    demo = default_model_path()
    shutil.copy(demo, data / "model" / demo.name)
    shutil.copy(demo.with_suffix(".json"), data / "model" / demo.with_suffix(".json").name)
    unregister = _tiny_vit(data)
    _episeg_pairs(data)
    _cell_files(data)
    _deepzoom_tiles(data)
    for name in ("run", "elsewhere", "shots"):
        (root / name).mkdir()
    previous = os.environ.get("IMILIA_CACHE_DIR")
    os.environ["IMILIA_CACHE_DIR"] = str(sample_slide.parent)  # the demo's sample slide
    try:
        yield root
    finally:
        unregister()
        if previous is None:
            os.environ.pop("IMILIA_CACHE_DIR", None)
        else:
            os.environ["IMILIA_CACHE_DIR"] = previous


# ------------------------------------------------------------------------------------ the runs
#: Each subcommand's command lines, every path relative to work/run; ``needs``: cases run first.
MATRIX: dict[str, dict] = {
    "demo": {
        "argv": [
            ["demo", "--out", "demo_out", "--no-viewer", "--top", "2", "--mask-tiles", "1",
             "--screenshot", "../shots/view.png"],
        ],
    },
    "predict": {
        "argv": [
            ["predict", f"{DATA}/cohort.csv", "--out", "results", "--model",
             f"{DATA}/model/demo_model.safetensors", "--cache-dir", "../cache",
             "--decode-workers", "2"],
            ["predict", f"{DATA}/slides/case_00.svs", "--out", "vit", "--model",
             f"{DATA}/abmil.safetensors", "--extractor", "tiny-h0", "--extractor-weights",
             f"{DATA}/vit.safetensors", "--device", "cpu", "--decode-workers", "0"],
            ["predict", f"{DATA}/slides/case_00.svs", "--out", "deepzoom", "--model",
             f"{DATA}/model/demo_model.safetensors", "--tiles-from", f"{DATA}/tiles_coords.npy"],
        ],
    },
    "inspect": {
        "needs": ["predict", "train-episeg"],
        "argv": [
            ["inspect", f"{DATA}/slides/case_01.svs", "--results", "results", "--out",
             "inspected", "--tiles", "top:4", "--workers", "2"],
            ["inspect", f"{DATA}/slides/case_00.svs", "--results", "results", "--out",
             "inspected_json", "--tiles", "top:2", "--cell-backend", "histoplus-json",
             "--histoplus-json", f"{DATA}/cells.json", "--workers", "1"],
            ["inspect", f"{DATA}/slides/case_00.svs", "--results", "results", "--out",
             "inspected_deep", "--tiles", "top:1", "--cell-backend", "cellvit",
             "--cell-checkpoint", f"{DATA}/cellvit.safetensors", "--cell-protocol",
             "tile-context", "--epithelium", "episeg", "--episeg-probe",
             "probe/episeg.safetensors", "--episeg-extractor-weights", f"{DATA}/vit.safetensors",
             "--device", "cpu", "--workers", "1"],
        ],
    },
    "info": {"argv": [["info", f"{DATA}/slides/case_00.svs", f"{DATA}/slides/case_01.svs",
                       "--json"]]},
    "report": {
        "needs": ["predict"],
        "argv": [["report", "results", "--labels", f"{DATA}/cohort.csv", "--top-tiles", "1"]],
    },
    "models": {"argv": [["models"]]},
    "extractors": {"argv": [["extractors"]]},
    "train": {
        "needs": ["predict"],
        "argv": [["train", "--features", "../cache", "--labels", f"{DATA}/train_labels.csv",
                  "--out", "model/trained.safetensors", "--folds", "2", "--epochs", "2",
                  "--arch", "max-mil"]],
    },
    "score": {
        "needs": ["train"],
        "argv": [["score", "--model", "model/trained.safetensors", "--features", "../cache",
                  "--out", "scored"]],
    },
    "train-episeg": {
        "argv": [["train-episeg", "--tiles", f"{DATA}/episeg/tiles", "--masks",
                  f"{DATA}/episeg/masks", "--extractor", "tiny-h0", "--extractor-weights",
                  f"{DATA}/vit.safetensors", "--out", "probe/episeg.safetensors", "--folds", "2",
                  "--device", "cpu"]],
    },
    "cells": {"argv": [["cells", f"{DATA}/slides/case_02.svs", "--out", "census", "--workers",
                        "1"]]},
    "study": {
        "needs": ["report"],  # a study changes what the report says: set up after it
        "argv": [["study", "results", "--readers", "Dr A,Dr B", "--seed", "3"]],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def ran(work: Path) -> Callable[[str], str]:
    """``ran(command)``: run its case (and the cases it needs) once from work/run; the
    printed output."""
    outputs: dict[str, str] = {}

    def run(command: str) -> str:
        if command not in outputs:
            for needed in MATRIX[command].get("needs", []):
                run(needed)
            printed = []
            for argv in MATRIX[command]["argv"]:
                with working_folder(work / "run"):
                    code, text = _main(argv)
                assert code == 0, f"imilia {' '.join(argv)} exited {code}:\n{text[-3000:]}"
                printed.append(text)
            outputs[command] = "\n".join(printed)
        return outputs[command]

    return run


def _main(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue() + err.getvalue()


def test_the_matrix_has_every_subcommand() -> None:
    assert sorted(MATRIX) == sorted(subparsers())


# ------------------------------------------------------------------------------------ checks
def _check_demo(work: Path, printed: str) -> None:
    out = work / "run" / "demo_out"
    record = json.loads((out / "demo_summary.json").read_text())
    assert (out / record["slide_id"] / "tiles.csv").is_file()
    assert (work / "shots" / "view.png").stat().st_size > 1000
    info = json.loads((out / record["slide_id"] / "slide.json").read_text())
    assert Path(info["slide"]).is_absolute()


def _check_predict(work: Path, printed: str) -> None:
    data, run = work / "data", work / "run"
    table = pd.read_csv(run / "results" / "cohort.csv")
    assert list(table["status"]) == ["ok"] * N_SLIDES
    assert list(table["slide"]) == [str(data / "slides" / f"case_0{k}.svs") for k in range(4)]
    for k in range(N_SLIDES):
        info = json.loads((run / "results" / f"case_0{k}" / "slide.json").read_text())
        assert info["slide"] == str(data / "slides" / f"case_0{k}.svs")
        assert (work / "cache" / f"case_0{k}.h5").is_file()
    vit = json.loads((run / "vit" / "case_00" / "slide.json").read_text())
    assert vit["extractor"] == "tiny-h0" and vit["slide"] == str(data / "slides" / "case_00.svs")
    zoom = pd.read_csv(run / "deepzoom" / "case_00" / "tiles.csv")
    assert len(zoom) == 3


def _check_inspect(work: Path, printed: str) -> None:
    run, data = work / "run", work / "data"
    assert len(pd.read_csv(run / "inspected" / "case_01" / "markers.csv")) == 4
    summary = json.loads((run / "inspected_json" / "case_00" / "markers_summary.json").read_text())
    assert summary["histoplus_json"] == str(data / "cells.json")
    deep = json.loads((run / "inspected_deep" / "case_00" / "markers_summary.json").read_text())
    assert deep["cell_checkpoint"] == str(data / "cellvit.safetensors")
    assert deep["episeg_probe"] == str(run / "probe" / "episeg.safetensors")


def _check_info(work: Path, printed: str) -> None:
    summaries = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert [s["path"] for s in summaries] == [
        str(work / "data" / "slides" / f"case_0{k}.svs") for k in (0, 1)
    ]


def _check_report(work: Path, printed: str) -> None:
    from napari_imilia.cohort.review import COHORT_FILE, Cohort

    results = work / "run" / "results"
    assert "warning" not in printed  # every label row found its slide
    saved = json.loads((results / COHORT_FILE).read_text())
    assert all(Path(s["path"]).is_absolute() for s in saved["slides"])
    assert Path(saved["source"]).is_absolute()
    assert (results / "cohort_report.html").is_file()
    with working_folder(work / "elsewhere"):
        cohort = Cohort.open(results)
    assert len(cohort) == N_SLIDES and cohort.counts()["error"] == 0
    assert [item.labels["active"] for item in cohort.items] == ["0", "1", "0", "1"]


def _check_catalogue(work: Path, printed: str) -> None:
    assert printed.strip()


def _check_train(work: Path, printed: str) -> None:
    config = json.loads((work / "run" / "model" / "trained.json").read_text())
    assert config["training"]["features_dir"] == str(work / "cache")
    assert config["training"]["labels_file"] == str(work / "data" / "train_labels.csv")
    assert (work / "run" / "model" / "cv_metrics.json").is_file()


def _check_score(work: Path, printed: str) -> None:
    scores = pd.read_csv(work / "run" / "scored" / "scores.csv")
    assert sorted(scores["slide_id"]) == [f"case_0{k}" for k in range(N_SLIDES)]
    info = json.loads((work / "run" / "scored" / "score_info.json").read_text())
    assert info["features_dir"] == str(work / "cache")


def _check_train_episeg(work: Path, printed: str) -> None:
    assert (work / "run" / "probe" / "episeg.safetensors").is_file()
    assert (work / "run" / "probe" / "episeg_cv.json").is_file()


def _check_cells(work: Path, printed: str) -> None:
    census = json.loads(
        (work / "run" / "census" / "case_02" / "census" / "census.json").read_text()
    )
    assert census["slide_identity"]["slide"] == str(work / "data" / "slides" / "case_02.svs")


def _check_study(work: Path, printed: str) -> None:
    study = json.loads((work / "run" / "results" / "study.json").read_text())
    assert sorted(study["study"]["readers"]) == ["Dr A", "Dr B"]


CHECKS: dict[str, Callable[[Path, str], None]] = {
    "demo": _check_demo,
    "predict": _check_predict,
    "inspect": _check_inspect,
    "info": _check_info,
    "report": _check_report,
    "models": _check_catalogue,
    "extractors": _check_catalogue,
    "train": _check_train,
    "score": _check_score,
    "train-episeg": _check_train_episeg,
    "cells": _check_cells,
    "study": _check_study,
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(MATRIX))
def test_subcommand_from_another_folder_with_relative_paths(work, ran, command) -> None:
    printed = ran(command)
    CHECKS[command](work, printed)
    assert not (work / "data" / "run").exists()  # nothing landed relative to the wrong folder


# ------------------------------------------------------------------------------------ parsing
#: Every path option, per subcommand (argparse dest names).
PATH_OPTIONS: dict[str, set[str]] = {
    "demo": {"out", "screenshot"},
    "predict": {"slides", "out", "model", "extractor_weights", "tiles_from", "cache_dir"},
    "inspect": {"slide", "out", "results", "cell_checkpoint", "histoplus_json", "episeg_probe",
                "episeg_extractor_weights"},
    "info": {"slides"},
    "report": {"results", "labels"},
    "models": set(),
    "extractors": set(),
    "train": {"features", "labels", "out"},
    "score": {"model", "features", "out"},
    "train-episeg": {"tiles", "masks", "dataset", "extractor_weights", "out"},
    "cells": {"slides", "out", "cell_checkpoint", "histoplus_json", "episeg_probe",
              "episeg_extractor_weights"},
    "study": {"results"},
}  # fmt: skip


def test_every_path_option_is_resolved(tmp_path, monkeypatch) -> None:
    """Each subcommand's path options are ``user_path``; parsed from a folder, a relative
    value comes out absolute against it (``~`` expanded)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for command, parser in subparsers().items():
        declared = {a.dest for a in parser._actions if a.type is user_path}
        assert declared == PATH_OPTIONS[command], command
        argv = [command]
        for action in parser._actions:
            if action.type is not user_path:
                continue
            value = "~/x.csv" if action.dest == "labels" else f"../rel/{action.dest}"
            if action.option_strings:
                argv += [action.option_strings[0], value]
            else:
                argv.append(value)
        argv += {"score": [], "train-episeg": ["--extractor", "x"]}.get(command, [])
        args = build_parser().parse_args(argv)
        for dest in PATH_OPTIONS[command]:
            value = getattr(args, dest)
            for path in value if isinstance(value, list) else [value]:
                expected = tmp_path / "home" if dest == "labels" else tmp_path.parent / "rel"
                assert Path(path).is_absolute() and Path(path).parent == expected, (command, dest)


def test_an_empty_path_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["info", ""])
    assert stop.value.code == 2 and "empty path" in capsys.readouterr().err
