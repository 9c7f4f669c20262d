"""The Slide and model panel's Qt-free parts: settings file, model summary, run outcomes
(cancel, incompatible model, cached reuse), progress rate, heatmap values, coordinates."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_imilia._napari import settings as _settings
from napari_imilia._napari.inference import (
    InferenceRequest,
    ModelCache,
    ProgressRate,
    format_seconds,
    read_model_summary,
    run_inference,
)
from napari_imilia._napari.layers.placement import (
    level0_pixel_at,
    tile_centre_world,
    tile_outline_px,
)
from napari_imilia.errors import CheckpointError
from napari_imilia.mil import create_model, save_model
from napari_imilia.user_dirs import CONFIG_ENV

EXTRACTOR = "imilia-stain-stats"


def small_model(path: Path, *, in_dim: int = 64, demo: bool = False, extractor=EXTRACTOR) -> Path:
    """A real ABMIL head on the builtin extractor's 64-d features, saved with the real saver."""
    torch.manual_seed(0)
    model = create_model("abmil", in_dim=in_dim).eval()
    return save_model(
        model, path, extractor=extractor, mpp=0.5, tile_px=224, demo=demo, name=path.stem
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_model(tmp_path_factory.mktemp("model") / "abmil-small.safetensors")


# ----------------------------------------------------------------------------- settings
def test_settings_round_trip_atomically_and_keep_recent_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "cfg"))
    assert _settings.load_settings() == _settings.PanelSettings()  # no file: defaults
    settings = _settings.PanelSettings(model_path="/m.safetensors", device="cpu", tile_px=256)
    for i in range(_settings.MAX_RECENT + 3):
        settings.add_recent(f"/slides/s{i}.svs")
    settings.add_recent("/slides/s5.svs")
    path = _settings.save_settings(settings)
    assert path == tmp_path / "cfg" / _settings.SETTINGS_NAME
    assert [p.name for p in path.parent.iterdir()] == [_settings.SETTINGS_NAME]  # no temp file
    loaded = _settings.load_settings()
    assert loaded == settings
    assert len(loaded.recent_slides) == _settings.MAX_RECENT
    assert loaded.recent_slides[:2] == ["/slides/s5.svs", "/slides/s12.svs"]


def test_bad_settings_files_give_defaults(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert _settings.load_settings(path) == _settings.PanelSettings()
    path.write_text(json.dumps({"device": "tpu", "tile_px": "x", "target_mpp": 0.25, "zz": 1}))
    loaded = _settings.load_settings(path)
    assert (loaded.device, loaded.tile_px, loaded.target_mpp) == ("auto", 0, 0.25)


# ----------------------------------------------------------------------------- model summary
def test_model_summary_flags_demo_models_and_reports_missing_files(tmp_path, monkeypatch):
    demo = small_model(tmp_path / "demo.safetensors", demo=True)
    summary = read_model_summary(str(demo))
    assert summary.demo and summary.in_dim == 64 and summary.extractor == EXTRACTOR
    assert summary.describe().startswith("DEMO MODEL")
    with pytest.raises(CheckpointError, match="not found"):
        read_model_summary(str(tmp_path / "nope.safetensors"))
    # empty = the bundled demo model
    monkeypatch.setattr("napari_imilia.predict.slide.default_model_path", lambda: demo)
    assert read_model_summary("").path == demo
    monkeypatch.setattr("napari_imilia.predict.slide.default_model_path", lambda: tmp_path / "x")
    with pytest.raises(CheckpointError, match="bundled demo model is missing"):
        read_model_summary("")


# ----------------------------------------------------------------------------- runs
def test_run_cached_reuse_and_incompatible_model(small_svs, model_path, tmp_path, monkeypatch):
    request = InferenceRequest(small_svs, tmp_path / "results", model_path=str(model_path))
    cache = ModelCache()
    seen: list[tuple[int, int]] = []
    first = run_inference(request, cache, progress=lambda d, t: seen.append((d, t)))
    assert first.error is None and not first.cached
    assert seen[-1][0] == seen[-1][1] == len(first.result.tiles)
    slide_json = first.result.out_dir / "slide.json"
    stamp = slide_json.stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("predict_slide ran although the result was cached")

    monkeypatch.setattr("napari_imilia.predict.slide.predict_slide", must_not_run)
    again = run_inference(request, cache)
    assert again.cached and again.error is None
    assert again.result.score == pytest.approx(first.result.score)
    assert slide_json.stat().st_mtime_ns == stamp
    # another tile size is another result: not reused
    other = run_inference(
        InferenceRequest(small_svs, tmp_path / "results", str(model_path), tile_px=256), cache
    )
    assert other.error is not None and "predict_slide ran" in other.error

    wrong = small_model(tmp_path / "wrong.safetensors", in_dim=32, extractor=None)
    outcome = run_inference(
        InferenceRequest(small_svs, tmp_path / "r2", str(wrong), extractor=EXTRACTOR), cache
    )
    assert outcome.result is None and "expects 32-d" in outcome.error
    assert not (tmp_path / "r2").exists()
    outcome = run_inference(InferenceRequest(small_svs, tmp_path / "r2", str(wrong)), cache)
    assert "does not say which extractor" in outcome.error


def test_cancel_mid_run_writes_nothing(small_svs, model_path, tmp_path):
    cancel = threading.Event()

    def cancel_after_first_batch(done: int, total: int) -> None:
        if done > 0:
            cancel.set()

    root = tmp_path / "results"
    request = InferenceRequest(small_svs, root, model_path=str(model_path))
    outcome = run_inference(request, ModelCache(), progress=cancel_after_first_batch, cancel=cancel)
    assert outcome.cancelled and outcome.result is None and outcome.error is None
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []


def test_progress_rate_and_time_format():
    clock = iter([10.0, 12.0, 14.0])
    rate = ProgressRate(clock=lambda: next(clock))
    rate.update(0, 100)
    assert rate.tiles_per_s is None
    rate.update(20, 100)
    assert rate.tiles_per_s == pytest.approx(10.0) and rate.eta_s == pytest.approx(8.0)
    rate.update(60, 100)
    assert rate.tiles_per_s == pytest.approx(15.0)
    assert rate.describe() == "60 / 100 tiles · 15.0 tiles/s · ETA 0:03"
    assert (format_seconds(75), format_seconds(3725)) == ("1:15", "1:02:05")


# ----------------------------------------------------------------------------- geometry
def test_level0_world_conversions_follow_the_slide_layer_convention():
    tile = pd.Series({"x": 448, "y": 224, "width": 224, "height": 224})
    assert tile_centre_world(tile, 0.5) == (pytest.approx(167.75), pytest.approx(279.75))
    assert level0_pixel_at((167.75, 279.75), 0.5) == (560, 336)  # (x, y): the centre pixel
    assert level0_pixel_at((0.0, 0.24), 0.5) == (0, 0)
    assert level0_pixel_at((0.0, 0.26), 0.5) == (1, 0)
    outline = tile_outline_px(tile)
    assert outline.min(axis=0).tolist() == [223.5, 447.5]
    assert outline.max(axis=0).tolist() == [447.5, 671.5]


def test_heatmap_values_threshold_and_rank():
    pytest.importorskip("qtpy")
    from napari_imilia._napari.docks.heatmap import HeatmapOptions, heatmap_image

    tiles = pd.DataFrame(
        {
            "tile_id": ["a", "b", "c"],
            "x": [0, 100, 100],
            "y": [0, 0, 100],
            "width": [100] * 3,
            "height": [100] * 3,
            "score": [-1.0, 3.0, 1.0],
        }
    )
    raw = heatmap_image(tiles, HeatmapOptions())
    assert raw.values.shape == (2, 2) and np.isnan(raw.values[1, 0])
    assert raw.value_range == (-1.0, 3.0)
    shown = heatmap_image(tiles, HeatmapOptions(threshold=0.5))
    assert np.isnan(shown.values[0, 0]) and shown.values[1, 1] == 1.0
    ranked = heatmap_image(tiles, HeatmapOptions(rank_normalised=True, threshold=0.5))
    assert ranked.value_range == (0.0, 1.0)
    assert ranked.values[0, 1] == 1.0 and ranked.values[1, 1] == 0.5
    assert np.isnan(ranked.values[0, 0])
