"""The one reuse rule (``predict.results.reusable_result``), through the Slide and model dock's
Run (``_napari.inference.run_inference``) and through ``imilia predict`` on a folder
(``predict_cohort``): a result is reused with the same settings, and a changed MPP override,
target MPP, tile size, tiling, protocol, tissue setting, model, extractor or extractor weights
always computes it again."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from napari_imilia._napari.inference import InferenceRequest, ModelCache, run_inference
from napari_imilia.cli import main
from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.features.extractors import register_extractor, unregister_extractor
from napari_imilia.features.extractors.builtin import StainStatsExtractor
from napari_imilia.files import sha256_file
from support.models import save_small_model, small_model

WEIGHTED = "test-weighted"


class WeightedStainStats(StainStatsExtractor):
    """The builtin features times a factor read from a weights file (its sha256 recorded)."""

    def __init__(self, weights_path: Path) -> None:
        super().__init__()
        self.name = WEIGHTED
        self.factor = float(Path(weights_path).read_text())
        self.weights_sha256 = sha256_file(weights_path)

    def embed(self, tiles_uint8):
        return super().embed(tiles_uint8) * self.factor


@pytest.fixture(scope="module", autouse=True)
def weighted_extractor():
    register_extractor(
        WEIGHTED, "test: stain stats times a factor", lambda w, d, b: WeightedStainStats(w)
    )
    yield
    unregister_extractor(WEIGHTED)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small synthetic slide (0.5 µm/px, about 13 tissue tiles) in its own folder, two
    models on 64-d features that name no extractor, two weights files."""
    root = tmp_path_factory.mktemp("reuse")
    slide = write_synthetic_slide(
        root / "slides" / "case.svs", width_px=1536, height_px=1024, seed=1, n_inflamed_regions=1
    )
    (root / "a.weights").write_text("1.0")
    (root / "b.weights").write_text("2.0")
    for name in ("model", "other"):
        (root / name).mkdir()
    return {
        "slide": slide,
        "model": save_small_model(root / "model", "abmil", extractor=None),
        "other_model": save_small_model(root / "other", "abmil", seed=1, extractor=None),
        "weights": root / "a.weights",
        "other_weights": root / "b.weights",
        "root": root,
    }


def no_second_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """predict_slide raises from now on: a run that computes says so in its error."""

    def must_not_run(*args, **kwargs):
        raise RuntimeError("predict_slide ran")

    monkeypatch.setattr("napari_imilia.predict.slide.predict_slide", must_not_run)


# ----------------------------------------------------------------------------- the dock
def test_dock_run_after_an_mpp_override_does_not_reuse_the_old_result(
    small_svs: Path, tmp_path: Path
) -> None:
    """The reported bug: on small_HE.svs (0.499 µm/px) a Run with MPP 0.25 returned the
    0.499 result (45 tiles) as cached."""
    model = str(small_model(tmp_path))
    cache, root = ModelCache(), tmp_path / "results"
    own = run_inference(InferenceRequest(small_svs, root, model), cache)
    assert own.error is None and own.result.info["mpp"] == pytest.approx(0.499)
    assert len(own.result.tiles) == 45

    corrected = run_inference(InferenceRequest(small_svs, root, model, mpp=0.25), cache)
    assert corrected.error is None and not corrected.cached
    info = corrected.result.info
    assert (info["mpp"], info["mpp_source"]) == (0.25, "override")
    assert len(corrected.result.tiles) < 45  # half the physical size: fewer tiles

    again = run_inference(InferenceRequest(small_svs, root, model, mpp=0.25), cache)
    assert again.cached and again.result.info["mpp"] == 0.25
    back = run_inference(InferenceRequest(small_svs, root, model), cache)
    assert not back.cached and back.result.info["mpp_source"] == "metadata"


def dock_request(work: dict[str, Path], root: Path, **changed) -> InferenceRequest:
    fields = {
        "model_path": str(work["model"]),
        "extractor": WEIGHTED,
        "extractor_weights": str(work["weights"]),
        **changed,
    }
    return InferenceRequest(work["slide"], root, **fields)


@pytest.fixture(scope="module")
def dock_results(work: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dock's result with its defaults (and the test extractor with weights a)."""
    root = tmp_path_factory.mktemp("dock_results")
    outcome = run_inference(dock_request(work, root), ModelCache())
    assert outcome.error is None and not outcome.cached
    return root


@pytest.mark.parametrize(
    "changed",
    [
        {"mpp": 0.25},
        {"target_mpp": 1.0},
        {"tile_px": 256},
        {"model_path": "other_model"},
        {"extractor": "imilia-stain-stats", "extractor_weights": ""},
        {"extractor_weights": "other_weights"},
    ],
    ids=["mpp", "target_mpp", "tile_px", "model", "extractor", "extractor_weights"],
)
def test_dock_recomputes_when_a_setting_changes(
    changed: dict, work: dict[str, Path], dock_results: Path, tmp_path: Path, monkeypatch
) -> None:
    root = Path(shutil.copytree(dock_results, tmp_path / "results"))
    no_second_run(monkeypatch)
    same = run_inference(dock_request(work, root), ModelCache())
    assert same.cached and same.error is None
    changed = {k: str(work[v]) if v in work else v for k, v in changed.items()}
    outcome = run_inference(dock_request(work, root, **changed), ModelCache())
    assert not outcome.cached and "predict_slide ran" in str(outcome.error)


@pytest.mark.parametrize(
    "made_with",
    [
        {"tiling": "deepzoom"},
        {"protocol": "imilia"},
        {"tissue_params": {"min_od": 0.1}},
        {"tissue_params": {"remove_pen": False}},
        {"min_tissue_fraction": 0.6},
        {"mpp": 0.5},
    ],
    ids=["tiling", "protocol", "tissue", "pen_marks", "min_tissue", "mpp"],
)
def test_dock_does_not_reuse_a_result_made_with_other_settings(
    made_with: dict, work: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    """A result the CLI made with settings the dock does not set (or an MPP override, even
    one equal to the slide's own): the dock's Run computes its own."""
    from napari_imilia.predict.slide import predict_slide

    root = tmp_path / "results"
    predict_slide(
        work["slide"],
        root,
        model_path=work["model"],
        extractor_name=WEIGHTED,
        extractor_weights=work["weights"],
        progress=False,
        **made_with,
    )
    no_second_run(monkeypatch)
    outcome = run_inference(dock_request(work, root), ModelCache())
    assert not outcome.cached and "predict_slide ran" in str(outcome.error)


# ----------------------------------------------------------------------------- the CLI
def cli_args(work: dict[str, Path], out: Path, **changed: str) -> list[str]:
    options = {
        "--model": str(work["model"]),
        "--extractor": WEIGHTED,
        "--extractor-weights": str(work["weights"]),
        **changed,
    }
    args = ["predict", str(work["slide"].parent), "--out", str(out)]
    for name, value in options.items():
        if value is not None:
            args += [name] if value == "" else [name, value]
    return args


@pytest.fixture(scope="module")
def cli_results(work: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_results")
    assert main(cli_args(work, out)) == 0
    return out


@pytest.mark.parametrize(
    "changed",
    [
        {"--mpp": "0.25"},
        {"--target-mpp": "1.0"},
        {"--tile-px": "256"},
        {"--tiling": "deepzoom"},
        {"--protocol": "imilia"},
        {"--tissue-min-od": "0.1"},
        {"--tissue-saturation": "0.2"},
        {"--keep-pen-marks": ""},
        {"--min-tissue": "0.6"},
        {"--model": "other_model"},
        {"--extractor": "imilia-stain-stats", "--extractor-weights": None},
        {"--extractor-weights": "other_weights"},
    ],
    ids=lambda changed: "+".join(changed),
)
def test_cli_recomputes_when_a_setting_changes(
    changed: dict, work: dict[str, Path], cli_results: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = Path(shutil.copytree(cli_results, tmp_path / "out"))
    no_second_run(monkeypatch)
    assert main(cli_args(work, out)) == 0
    assert re.search(r"^case: score 0\.\d+ \(\d+ tiles, reused\)$", capsys.readouterr().out, re.M)
    changed = {k: str(work[v]) if v in work else v for k, v in changed.items()}
    assert main(cli_args(work, out, **changed)) == 2
    captured = capsys.readouterr()
    assert "reused)" not in captured.out
    assert "error: RuntimeError: predict_slide ran" in captured.err


def test_cli_reuses_a_result_an_earlier_version_wrote(
    work: dict[str, Path], cli_results: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """slide.json as 0.x wrote it: tissue_params with automatic (null) entries, no tiling or
    protocol. The same settings reuse it; other settings do not."""
    out = Path(shutil.copytree(cli_results, tmp_path / "out"))
    info_path = out / "case" / "slide.json"
    info = json.loads(info_path.read_text())
    info["tissue_params"] = {"saturation_threshold": None, "min_od": None, "remove_pen": True}
    del info["tiling"], info["protocol"]
    info_path.write_text(json.dumps(info))
    no_second_run(monkeypatch)
    assert main(cli_args(work, out)) == 0
    assert re.search(r"^case: score 0\.\d+ \(\d+ tiles, reused\)$", capsys.readouterr().out, re.M)
    assert main(cli_args(work, out, **{"--tissue-min-od": "0.1"})) == 2
    assert "error: RuntimeError: predict_slide ran" in capsys.readouterr().err
