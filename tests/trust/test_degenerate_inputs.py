"""One-line errors instead of tracebacks (issue 20): a corrupt zlib tile, a ``model.json``
with ill-typed fields, NaN / infinite / overflowing weights; and every JSON written is
strict JSON (no ``NaN`` / ``Infinity``), booleans in configs are booleans."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_imilia.cli import main
from napari_imilia.errors import CheckpointError, ImiliaError
from napari_imilia.mil import create_model, load_model, save_model
from support.cohort_data import cohort_data  # noqa: F401 (fixture)


def _strict(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _model(folder: Path, name: str, *, fill: float | None = None, **config) -> Path:
    torch.manual_seed(0)
    model = create_model("max-mil", 64, hidden=[8])
    if fill is not None:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(fill)
    path = save_model(
        model, folder / f"{name}.safetensors", extractor="imilia-stain-stats", mpp=0.5
    )
    if config:
        config_path = path.with_suffix(".json")
        data = json.loads(config_path.read_text())
        for key, value in config.items():
            if key == "hidden":
                data["hparams"]["hidden"] = value
            else:
                data[key] = value
        config_path.write_text(json.dumps(data))  # NaN written as the non-standard NaN
    return path


def _predict(slide: Path, model: Path, out: Path, capsys) -> tuple[int, str]:
    """Exit status and the last line printed on stderr (after the progress bars), which
    must be the whole error: no traceback before it."""
    rc = main(["predict", str(slide), "--model", str(model), "--out", str(out), "--device",
               "cpu", "--decode-workers", "0", "--force"])  # fmt: skip
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]
    return rc, lines[-1] if lines else ""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mpp": "abc"}, "mpp must be a positive number"),
        ({"mpp": float("nan")}, "mpp must be a positive number"),
        ({"tile_px": "224"}, "tile_px must be a tile size"),
        ({"hidden": [-8]}, "negative dimension"),
        ({"demo": "no"}, "demo must be true or false"),
        ({"extractor": 7}, "extractor must be text"),
    ],
)
def test_ill_typed_model_config_is_a_one_line_error(
    tmp_path: Path,
    cohort_data: dict,  # noqa: F811
    capsys,
    config: dict,
    message: str,
) -> None:
    model = _model(tmp_path, "bad", **config)
    with pytest.raises(CheckpointError, match=message):
        load_model(model, device="cpu")
    slide = cohort_data["folder"] / "case_03.tiff"
    rc, err = _predict(slide, model, tmp_path / "out", capsys)
    assert rc == 2 and err.startswith("imilia predict: error: ") and message in err
    assert not (tmp_path / "out" / "case_03" / "slide.json").exists()


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path: Path, fill: float) -> None:
    model = _model(tmp_path, "degenerate", fill=fill)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(model, device="cpu")


def test_float64_weights_overflowing_float32_are_refused_at_load(tmp_path: Path) -> None:
    state = {k: v.double() for k, v in create_model("max-mil", 64, hidden=[8]).state_dict().items()}
    state["tile_scorer.0.weight"][0, 0] = 1e300  # finite in float64, inf once loaded
    path = tmp_path / "overflow.pt"
    torch.save(state, path)
    config = {"architecture": "max-mil", "in_dim": 64, "hparams": {"hidden": [8]}}
    path.with_suffix(".json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(path, device="cpu")


def test_weights_that_overflow_on_features_give_no_infinity(
    tmp_path: Path,
    cohort_data: dict,  # noqa: F811
    capsys,
) -> None:
    model = _model(tmp_path, "huge", fill=3e38)  # finite, but every product overflows
    slide = cohort_data["folder"] / "case_05.tiff"
    rc, err = _predict(slide, model, tmp_path / "out", capsys)  # main: "logit": Infinity
    assert rc == 2 and err.startswith("imilia predict: error: ") and "non-finite" in err
    assert not (tmp_path / "out" / "case_05" / "slide.json").exists()
    features = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    with pytest.raises(CheckpointError, match="degenerate"):
        load_model(model, device="cpu").predict(features)


def test_written_json_is_strict(tmp_path: Path, cohort_data: dict, capsys) -> None:  # noqa: F811
    from napari_imilia.files import json_text, write_json_atomic

    with pytest.raises(ValueError, match="NaN or an infinite"):
        write_json_atomic(tmp_path / "x.json", {"logit": math.inf})
    assert not (tmp_path / "x.json").exists()
    assert json_text({"a": [1, 2]}, indent=None) == '{"a": [1, 2]}\n'
    model = _model(tmp_path, "fine")
    _strict(model.with_suffix(".json").read_text())
    slide = cohort_data["folder"] / "case_05.tiff"
    rc, _ = _predict(slide, model, tmp_path / "out", capsys)
    info = _strict((tmp_path / "out" / "case_05" / "slide.json").read_text())
    assert rc == 0 and math.isfinite(info["logit"]) and 0 <= info["score"] <= 1
    tiles = (tmp_path / "out" / "case_05" / "tiles.csv").read_text()
    assert "inf" not in tiles.lower() and "nan" not in tiles.lower()


def corrupt_tile(source: Path, target: Path, tile: int) -> Path:
    """A copy of a tiled TIFF with bytes of one (zlib) tile overwritten."""
    shutil.copy(source, target)
    with tifffile.TiffFile(target) as tiff:
        offset = tiff.pages[0].dataoffsets[tile]
    with open(target, "r+b") as handle:
        handle.seek(offset + 10)
        handle.write(b"\xff" * 64)
    return target


def test_a_corrupt_zlib_tile_is_a_one_line_error(
    tmp_path: Path,
    cohort_data: dict,  # noqa: F811
    capsys,
) -> None:
    model = _model(tmp_path, "fine")
    slide = corrupt_tile(cohort_data["folder"] / "case_07.tiff", tmp_path / "damaged.tiff", 4)
    rc, err = _predict(slide, model, tmp_path / "out", capsys)  # main: DeflateError traceback
    assert rc == 2 and err.startswith("imilia predict: error: ")
    assert "damaged.tiff: image data cannot be decoded" in err and "copy or export" in err
    assert not (tmp_path / "out" / "damaged").exists()


def test_a_result_saying_demo_as_text_is_damaged(tmp_path: Path, cohort_data: dict, capsys) -> None:  # noqa: F811
    from napari_imilia.predict.results import load_prediction

    model = _model(tmp_path, "fine")
    _predict(cohort_data["folder"] / "case_05.tiff", model, tmp_path / "out", capsys)
    folder = tmp_path / "out" / "case_05"
    assert load_prediction(folder).info["model_is_demo"] is False
    info = json.loads((folder / "slide.json").read_text())
    (folder / "slide.json").write_text(json.dumps({**info, "model_is_demo": "no"}))
    with pytest.raises(ImiliaError, match="model_is_demo is not true or false"):
        load_prediction(folder)  # main: "no" read as a demo model
