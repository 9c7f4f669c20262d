"""``imilia predict`` / ``imilia extractors`` through napari_imilia.cli.main, and bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from napari_imilia.cli import build_parser, main
from napari_imilia.mil import config_path_for
from napari_imilia.predict.slide import RESULT_FILES
from support.models import EXTRACTOR, small_model


def test_help_lists_predict_and_extractors(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert re.search(r"^\s+predict\s", text, re.M) and re.search(r"^\s+extractors\s", text, re.M)
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    options = ("--out", "--model", "--extractor", "--device", "--min-tissue", "--parallel-slides")
    for option in (*options, "--decode-workers", "--scheduler-timeout", "--force", "--workers"):
        assert re.search(rf"^  {option}\b", text, re.M), option
    # every option is explained
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    predict = subparsers.choices["predict"]
    for action in predict._actions:
        assert action.help and len(action.help) > 15, action.dest
    assert "tiles.csv" in text and "cohort.csv" in text


def test_extractors_lists_names_then_descriptions(capsys: pytest.CaptureFixture) -> None:
    from napari_imilia.features.extractors import list_extractors

    assert main(["extractors"]) == 0
    names, _, described = capsys.readouterr().out.strip().partition("\n\n")
    expected = [name for name, _ in list_extractors()]
    assert names.splitlines() == expected and "h0-mini" in expected and EXTRACTOR in expected
    assert [line.split(":")[0] for line in described.splitlines()] == expected


def test_predict_one_slide(small_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = small_model(tmp_path)
    out = tmp_path / "out"
    code = main(["predict", str(small_svs), "--out", str(out), "--model", str(model)])
    assert code == 0
    captured = capsys.readouterr()
    assert re.search(r"^small_HE: score 0\.\d{4} \(\d+ tiles, model model", captured.out, re.M)
    # tqdm's bar: done/total [elapsed<remaining, rate]
    assert re.search(r"\d+/\d+ \[\d\d:\d\d<\d\d:\d\d, +[\d.]+tile/s\]", captured.err)
    assert sorted(p.name for p in (out / "small_HE").iterdir()) == sorted(RESULT_FILES)
    assert (out / "features" / "small_HE.h5").is_file()
    assert not (out / "cohort.csv").exists()  # one slide: no cohort table
    info = json.loads((out / "small_HE" / "slide.json").read_text())
    assert info["model"] == "model" and info["extractor"] == EXTRACTOR
    assert info["tissue"]["remove_pen"] is True and 0.05 <= info["tissue"]["min_od"] <= 0.15

    strict = tmp_path / "strict"
    args = ["predict", str(small_svs), "--out", str(strict), "--model", str(model)]
    assert main([*args, "--tissue-saturation", "0.35", "--tissue-min-od", "0.3"]) == 0
    strict_info = json.loads((strict / "small_HE" / "slide.json").read_text())
    assert strict_info["tissue"]["saturation_threshold"] == pytest.approx(0.35)
    assert strict_info["tissue"]["min_od"] == pytest.approx(0.3)
    assert strict_info["tissue"]["tissue_fraction"] < info["tissue"]["tissue_fraction"]
    assert strict_info["n_tiles"] < info["n_tiles"]


def _write_pickle_payload(path: Path, marker: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"weight": Payload()}, path)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "missing checkpoint",
        "corrupt checkpoint",
        "pickle payload",
        "unknown architecture",
        "model too wide",
        "blank slide",
        "missing slide",
        "cuda without a GPU",
        "workers and scheduler",
        "min tissue above 1",
        "tissue saturation above 1",
    ],
)
def test_bad_inputs_exit_2_with_a_message_and_no_files(
    case: str,
    small_svs: Path,
    tiff_writer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    model = small_model(tmp_path)
    slide = small_svs
    extra: list[str] = []
    marker = tmp_path / "pwned"
    if case == "missing checkpoint":
        model, message = tmp_path / "absent.safetensors", "checkpoint not found"
    elif case == "corrupt checkpoint":
        model.write_bytes(b"\x00garbage" * 20)
        config = config_path_for(model)
        config.write_text(json.dumps({**json.loads(config.read_text()), "weights_sha256": None}))
        message = "corrupt or truncated"
    elif case == "pickle payload":
        model = _write_pickle_payload(tmp_path / "evil.pt", marker)
        message = "refuses to unpickle"
    elif case == "unknown architecture":
        config = config_path_for(model)
        config.write_text(json.dumps({**json.loads(config.read_text()), "architecture": "xyz"}))
        message = "unknown MIL architecture 'xyz'"
    elif case == "model too wide":
        model = small_model(tmp_path, in_dim=32, name="wide")
        message = r"expects 32-d tile features .* gives 64-d"
    elif case == "blank slide":
        slide = tiff_writer(tmp_path / "blank.tiff", (1024, 1024))
        message = r"no tissue found in blank\.tiff"
    elif case == "missing slide":
        slide, message = tmp_path / "nowhere.svs", "slide not found"
    elif case == "cuda without a GPU":
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is available here")
        extra, message = ["--device", "cuda"], "no CUDA GPU is available"
    elif case == "workers and scheduler":
        extra, message = ["--parallel-slides", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"
    elif case == "tissue saturation above 1":
        extra, message = ["--tissue-saturation", "1.5"], r"--tissue-saturation\) must be in"
    else:
        extra, message = ["--min-tissue", "2"], "--min-tissue must be between 0 and 1"
    out = tmp_path / "out"
    code = main(["predict", str(slide), "--out", str(out), "--model", str(model), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("imilia predict: error:") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()
    assert not marker.exists()


@pytest.mark.parametrize(
    ("old", "value", "message"),
    [
        ("--workers", "0", "--parallel-slides must be at least 1"),
        ("--num-workers", "-1", "--decode-workers must be 0 or more"),
    ],
)
def test_old_option_names_still_work_with_a_note(
    old: str, value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = build_parser().parse_args(["predict", "s.svs", "--out", str(tmp_path), old, value])
    new = {"--workers": "cluster_workers", "--num-workers": "decode_workers"}[old]
    assert getattr(args, new) == int(value)
    assert main(["predict", "s.svs", "--out", str(tmp_path / "out"), old, value]) == 2
    err = capsys.readouterr().err
    assert f"note: {old} is deprecated, use --" in err and message in err
    assert not (tmp_path / "out").exists()


def test_score_refuses_features_without_coords(tmp_path: Path, capsys) -> None:
    features = tmp_path / "features"
    features.mkdir()
    with h5py.File(features / "S1.h5", "w") as h5:
        h5.create_dataset("features", data=np.zeros((5, 64), np.float32))
    model = small_model(tmp_path)
    out = tmp_path / "scores"
    code = main(["score", "--model", str(model), "--features", str(features), "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "S1.h5 has no 'coords' dataset" in err
    assert not (out / "scores.csv").exists()
