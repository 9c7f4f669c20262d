"""The bundled demo model: loads like any model, says it is a demo, finds planted inflammation.

The sample slide's features are computed once (module-scoped prediction with the defaults,
i.e. no model path: the bundled demo model).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.demo.cohort import (
    SLIDE_SEED_BASE,
    demo_cohort_recipe,
    recipe_summary,
    write_cohort,
)
from napari_imilia.demo.sample import read_truth, sample_slide_path
from napari_imilia.errors import DataError
from napari_imilia.mil import load_model
from napari_imilia.predict.slide import default_model_path, predict_slide

REPO_ROOT = Path(__file__).resolve().parents[2]
TOP_TILES = 10


def _centres_in_boxes(tiles: pd.DataFrame, boxes: list[list[float]]) -> pd.Series:
    cx, cy = tiles["x"] + tiles["width"] / 2, tiles["y"] + tiles["height"] / 2
    inside = pd.Series(False, index=tiles.index)
    for x, y, w, h in boxes:
        inside |= (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)
    return inside


@pytest.fixture(scope="module")
def demo_result(sample_slide: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo_predict")
    return predict_slide(sample_slide, out, device="cpu", progress=False)


def test_bundled_model_loads_and_says_it_is_a_demo() -> None:
    path = default_model_path()
    assert path.name == "demo_model.safetensors"
    assert path.stat().st_size < 64 * 1024  # committed: kilobytes
    model = load_model(path, device="cpu")
    config = model.config
    assert config["demo"] is True
    assert config["extractor"] == model.expected_extractor == "imilia-stain-stats"
    assert config["mpp"] == 0.5
    assert config["tile_px"] == 224
    assert model.in_dim == 64
    assert config["architecture"] == "max-mil"
    training = config["training"]
    assert training["script"] == "scripts/train_demo_model.py"
    assert (REPO_ROOT / training["script"]).is_file()
    assert training["n_slides_per_class"] == {"0": 24, "1": 24}
    assert training["extractor"] == "imilia-stain-stats"
    assert training["cv"]["mean_roc_auc"] >= 0.9
    assert len(training["cv"]["folds"]) == training["folds"] == 5
    assert training["software"].startswith("napari-imilia ")


def test_recorded_recipe_is_the_current_recipe() -> None:
    """The committed model was trained on what demo_cohort_recipe draws today (else retrain)."""
    data = json.loads(default_model_path().with_suffix(".json").read_text())["training"]["data"]
    recipe = demo_cohort_recipe(data["n_slides"], data["cohort_seed"])
    assert data == json.loads(json.dumps(recipe_summary(recipe, data["cohort_seed"])))


def test_package_data_ships_the_model() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["napari_imilia"]
    for path in (default_model_path(), default_model_path().with_suffix(".json")):
        relative = path.relative_to(REPO_ROOT / "src" / "napari_imilia").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_predict_with_defaults_marks_the_demo_and_scores_the_sample_high(demo_result) -> None:
    info = json.loads((demo_result.out_dir / "slide.json").read_text())
    assert info["model_is_demo"] is True
    assert info["model"] == "imilia-demo"
    assert info["extractor"] == "imilia-stain-stats"
    assert info["score"] == pytest.approx(demo_result.score)
    assert demo_result.score > 0.5
    assert (demo_result.out_dir / "heatmap.png").is_file()


def test_top_tiles_lie_in_the_planted_inflamed_regions(demo_result, sample_slide: Path) -> None:
    boxes = read_truth(sample_slide)["inflamed_regions_level0_px"]
    assert len(boxes) == 3
    tiles = pd.read_csv(demo_result.tiles_csv)
    top = tiles.nsmallest(TOP_TILES, "rank")
    inside = _centres_in_boxes(top, boxes)
    assert inside.sum() >= 8, top
    # the planted areas hold about 15 % of the tiles: far fewer would land there by chance
    assert _centres_in_boxes(tiles, boxes).mean() < 0.25


def test_normal_sample_scores_low(tmp_path_factory: pytest.TempPathFactory) -> None:
    slide = sample_slide_path(tmp_path_factory.mktemp("normal_sample"), inflamed=False)
    assert read_truth(slide)["inflamed"] is False
    result = predict_slide(slide, slide.parent / "out", device="cpu", progress=False)
    assert result.info["model_is_demo"] is True
    assert result.score < 0.5


def test_recipe_draws_both_classes_deterministically() -> None:
    recipe = demo_cohort_recipe(8, seed=0)
    assert [s.label for s in recipe] == [1, 0] * 4
    assert len({s.slide_id for s in recipe}) == 8
    assert all(s.seed >= SLIDE_SEED_BASE for s in recipe)  # never the sample slide's seed 0
    assert all(1 <= s.n_inflamed_regions <= 3 for s in recipe if s.label == 1)
    assert all(s.n_inflamed_regions == 0 for s in recipe if s.label == 0)
    for positive, negative in zip(recipe[::2], recipe[1::2], strict=True):  # matched pairs
        assert (positive.width_px, positive.height_px, positive.n_pieces) == (
            negative.width_px,
            negative.height_px,
            negative.n_pieces,
        )
        assert positive.seed != negative.seed
    assert demo_cohort_recipe(8, seed=0) == recipe
    assert demo_cohort_recipe(4, seed=0) == recipe[:4]
    assert demo_cohort_recipe(8, seed=1) != recipe
    summary = recipe_summary(demo_cohort_recipe(48), 0)
    assert (summary["n_label_0"], summary["n_label_1"]) == (24, 24)
    for bad in (3, 7):
        with pytest.raises(DataError, match="even number"):
            demo_cohort_recipe(bad)


def test_write_cohort_writes_both_classes_and_reuses_them(tmp_path: Path) -> None:
    small = [
        dataclasses.replace(s, width_px=1024, height_px=768)
        for s in demo_cohort_recipe(4, seed=0)[:2]
    ]
    paths, labels_path = write_cohort(small, tmp_path)
    assert [read_truth(p)["inflamed"] for p in paths] == [True, False]
    assert len(read_truth(paths[0])["inflamed_regions_level0_px"]) == small[0].n_inflamed_regions
    assert labels_path.read_text().splitlines() == [
        "slide_id,label",
        f"{small[0].slide_id},1",
        f"{small[1].slide_id},0",
    ]
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert write_cohort(small, tmp_path)[0] == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # complete slides are kept
