"""Colour scales shared across slides: recorded with each result, combined over a cohort,
centred where a tile pushes the slide neither way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_imilia.predict.colour_scale import (
    FALLBACK_LOGIT_HALF_RANGE,
    RANGES_KEY,
    SCALE_KEY,
    ColourScale,
    centred_positions,
    cohort_scale,
    fallback_scale,
    model_reference,
    reference_scale,
    results_scale,
    value_ranges,
)


def _tiles(scores, attention=None) -> pd.DataFrame:
    tiles = pd.DataFrame({"tile_id": [str(i) for i in range(len(scores))], "score": scores})
    if attention is not None:
        tiles["attention"] = attention
    return tiles


def test_value_ranges_are_percentiles_and_attention_is_in_multiples_of_uniform() -> None:
    scores = np.linspace(-4.0, 6.0, 101)
    attention = np.full(101, 1 / 101)
    attention[0] += 0.5  # one tile takes half the attention (sum is no longer 1: fine here)
    ranges = value_ranges(_tiles(scores, attention))
    assert ranges["score"]["low"] == pytest.approx(np.percentile(scores, 1))
    assert ranges["score"]["high"] == pytest.approx(np.percentile(scores, 99))
    assert ranges["attention"]["low"] == pytest.approx(1.0)  # uniform weight = 1 x 1/N
    assert set(ranges) == {"score", "attention"}


def test_cohort_scale_spans_the_slides_and_keeps_zero_in_the_middle() -> None:
    inactive = {"score": {"low": -4.2, "high": -3.2}}
    active = {"score": {"low": -3.8, "high": 6.1}}
    scale = cohort_scale([inactive, active, None, {"other": {}}], "score")
    assert (scale.low, scale.high, scale.centre) == (-4.2, 6.1, 0.0)
    assert scale.source == "cohort of 2 slides"
    low, centre, high = scale.limits()
    positions = centred_positions(np.array([-3.2, 0.0, 6.1]), low, centre, high)
    assert positions[1] == pytest.approx(0.5) and positions[2] == pytest.approx(1.0)
    assert positions[0] < 0.15  # the inactive slide's hottest tile: the dark end
    # one slide is not a cohort's scale; only inactive slides: the high side mirrors the low
    assert cohort_scale([active], "score") is None
    only_inactive = cohort_scale([inactive, inactive], "score")
    assert (only_inactive.low, only_inactive.high) == (-4.2, 4.2)


def test_attention_scales_are_centred_at_the_uniform_weight_of_each_slide() -> None:
    ranges = [{"attention": {"low": 0.2, "high": 5.0}}, {"attention": {"low": 0.1, "high": 3.0}}]
    scale = cohort_scale(ranges, "attention")
    assert scale.per_uniform and scale.centre == 1.0
    assert scale.limits(50) == pytest.approx((0.1 / 50, 1 / 50, 5.0 / 50))
    assert fallback_scale("attention").limits(10) == pytest.approx((0.0, 0.1, 0.4))


def test_model_reference_from_model_json_else_the_documented_fallback() -> None:
    tiles = _tiles([-1.0, 2.0], attention=[0.3, 0.7])
    saved = model_reference({"tile_score_reference": {"low": -4.4, "high": 10.2}}, tiles)
    assert saved["score"]["low"] == -4.4 and saved["score"]["source"] == "model reference"
    assert saved["attention"]["source"].startswith("default")  # no attention reference
    inside = model_reference({"training": {"tile_score_reference": {"low": -2, "high": 3}}}, tiles)
    assert inside["score"]["high"] == 3.0
    bare = model_reference(None, tiles)["score"]
    assert (bare["low"], bare["high"]) == (-FALLBACK_LOGIT_HALF_RANGE, FALLBACK_LOGIT_HALF_RANGE)
    damaged = model_reference({"tile_score_reference": {"low": "x", "high": 1}}, tiles)
    assert damaged["score"]["source"].startswith("default")
    # read back from slide.json; an old result without it gets the fallback
    assert reference_scale({SCALE_KEY: saved}, "score") == ColourScale.from_dict(saved["score"])
    assert reference_scale({}, "score") == fallback_scale("score")
    with pytest.raises(ValueError, match="finite"):
        ColourScale.from_dict({"low": float("nan"), "high": 1, "centre": 0})


def test_the_demo_model_carries_its_training_slides_reference() -> None:
    from napari_imilia.predict.slide import default_model_path

    config = json.loads(default_model_path().with_suffix(".json").read_text(encoding="utf-8"))
    scale = reference_scale({SCALE_KEY: model_reference(config, _tiles([0.0]))}, "score")
    assert scale.source == "model reference" and scale.low < 0 < scale.high


def test_predict_records_ranges_and_the_models_scale_and_colours_the_png_alike(
    tmp_path: Path,
) -> None:
    from PIL import Image

    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.predict.slide import predict_slide

    slide = write_synthetic_slide(
        tmp_path / "s.svs", width_px=1536, height_px=1024, seed=5, levels=(1, 4)
    )
    result = predict_slide(slide, tmp_path / "out", device="cpu", progress=False, decode_workers=0)
    info = json.loads((result.out_dir / "slide.json").read_text(encoding="utf-8"))
    expected = value_ranges(result.tiles)["score"]
    assert info[RANGES_KEY]["score"] == pytest.approx(expected)
    assert info[SCALE_KEY]["score"]["source"] == "model reference"  # the demo model's
    assert Image.open(result.out_dir / "heatmap.png").size[0] > 100
    assert results_scale(tmp_path / "out") is None  # one slide: no cohort scale
