"""predict_slide end to end: builtin extractor + a small saved model of each architecture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely.geometry
from PIL import Image

from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.errors import ImiliaError
from napari_imilia.features.cache import read_features
from napari_imilia.features.extractors import create_extractor
from napari_imilia.mil import load_model
from napari_imilia.predict.slide import RESULT_FILES, load_prediction, predict_slide
from napari_imilia.slide import open_slide
from napari_imilia.tiling.tissue import NoTissueError
from support.models import EXTRACTOR, SMALL_HPARAMS, save_small_model

SLIDE_JSON_KEYS = {
    "slide",
    "slide_id",
    "score",
    "logit",
    "model",
    "model_sha256",
    "model_is_demo",
    "extractor",
    "extractor_sha256",
    "mpp",
    "target_mpp",
    "tile_px",
    "n_tiles",
    "seconds",
    "software",
}


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {arch: save_small_model(folder, arch) for arch in SMALL_HPARAMS}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the module: the features do not depend on the MIL model."""
    return tmp_path_factory.mktemp("feature_cache")


def check_result_files(
    slide_dir: Path, slide_path: Path, model_path: Path, cache_dir: Path
) -> pd.DataFrame:
    """Assert the per-slide contract of predict_slide; returns tiles.csv."""
    assert sorted(p.name for p in slide_dir.iterdir()) == sorted(RESULT_FILES)  # no staging
    tiles = pd.read_csv(slide_dir / "tiles.csv")
    info = json.loads((slide_dir / "slide.json").read_text())
    assert set(info) >= SLIDE_JSON_KEYS
    for column in ("tile_id", "x", "y", "width", "height", "tissue_fraction", "score", "rank"):
        assert column in tiles.columns
    assert info["n_tiles"] == len(tiles) > 0
    assert info["extractor"] == EXTRACTOR and info["tile_px"] == 224
    assert math.isclose(info["score"], 1 / (1 + math.exp(-info["logit"])), rel_tol=1e-9)
    assert info["model_sha256"] == load_model(model_path, device="cpu").sha256

    # rank 1 = highest score, ranks 1..N in score order
    assert sorted(tiles["rank"]) == list(range(1, len(tiles) + 1))
    by_rank = tiles.sort_values("rank")["score"].to_numpy()
    assert np.all(np.diff(by_rank) <= 0)
    assert tiles["tissue_fraction"].between(0.5, 1.0).all()

    with open_slide(slide_path) as slide:
        width0, height0 = slide.dimensions
        assert info["mpp"] == pytest.approx(slide.mpp)
    footprint = round(224 * 0.5 / info["mpp"])
    assert (tiles["width"] == footprint).all() and (tiles["height"] == footprint).all()
    assert tiles["x"].between(0, width0 - 1).all() and tiles["y"].between(0, height0 - 1).all()
    assert (tiles["tile_id"] == tiles["x"].astype(str) + "_" + tiles["y"].astype(str)).all()

    # the slide score is the reloaded model's on the cached features
    bag = read_features(cache_dir / f"{slide_dir.name}.h5")
    assert np.array_equal(bag.coords, tiles[["x", "y"]].to_numpy())
    again = load_model(model_path, device="cpu").predict(bag.features)
    assert again.probability == pytest.approx(info["score"], abs=1e-6)
    np.testing.assert_allclose(again.tile_scores, tiles["score"], rtol=1e-5, atol=1e-6)

    # QuPath GeoJSON: one rectangle per tile, scores as measurements
    collection = json.loads((slide_dir / "tiles.geojson").read_text())
    assert collection["imilia"]["model_sha256"] == info["model_sha256"]
    features = {f["properties"]["name"]: f for f in collection["features"]}
    assert set(features) == set(tiles["tile_id"].astype(str))
    for row in tiles.head(20).itertuples():
        feature = features[row.tile_id]
        polygon = shapely.geometry.shape(feature["geometry"])
        assert polygon.is_valid and polygon.area == row.width * row.height
        assert polygon.bounds == (row.x, row.y, row.x + row.width, row.y + row.height)
        measurements = feature["properties"]["measurements"]
        assert measurements["score"] == pytest.approx(row.score, rel=1e-5)
        assert measurements["rank"] == row.rank

    with Image.open(slide_dir / "heatmap.png") as image:
        assert image.format == "PNG" and min(image.size) > 100
    return tiles


@pytest.mark.parametrize("arch", list(SMALL_HPARAMS))
def test_predict_sample_slide_with_each_architecture(
    arch: str,
    sample_slide: Path,
    model_paths: dict[str, Path],
    shared_cache: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    result = predict_slide(
        sample_slide,
        out,
        model_path=model_paths[arch],
        device="cpu",
        cache_dir=shared_cache,
        progress=False,
    )
    assert result.out_dir == out / result.slide_id
    tiles = check_result_files(result.out_dir, sample_slide, model_paths[arch], shared_cache)
    if arch == "abmil":
        assert tiles["attention"].sum() == pytest.approx(1.0, abs=1e-4)
        assert (tiles["attention"] > 0).all()
    else:
        assert "attention" not in tiles.columns
    if arch == "max-mil":  # the slide logit is the highest tile logit
        assert result.logit == pytest.approx(tiles["score"].max(), abs=1e-5)
    reopened = load_prediction(result.out_dir)
    assert reopened.score == result.score and reopened.slide_id == result.slide_id
    pd.testing.assert_frame_equal(
        reopened.tiles[["x", "y", "rank"]], result.tiles[["x", "y", "rank"]]
    )


def test_load_prediction_reports_missing_and_damaged_results(tmp_path: Path) -> None:
    with pytest.raises(ImiliaError, match="holds no prediction"):
        load_prediction(tmp_path)
    (tmp_path / "tiles.csv").write_text("tile_id,x,y,width,height,score\n0_0,0,0,224,224,0.5\n")
    (tmp_path / "slide.json").write_text('{"slide_id": "s"')
    with pytest.raises(ImiliaError, match="damaged"):
        load_prediction(tmp_path)
    (tmp_path / "slide.json").write_text('{"slide_id": "s", "slide": "s.svs", "score": 0.5}')
    with pytest.raises(ImiliaError, match=r"damaged.*logit"):
        load_prediction(tmp_path)


def test_predict_real_svs(small_svs: Path, model_paths: dict[str, Path], tmp_path: Path) -> None:
    result = predict_slide(
        small_svs, tmp_path, model_path=model_paths["max-mil"], device="cpu", progress=False
    )
    assert result.slide_id == "small_HE"
    assert result.info["mpp"] == pytest.approx(0.499)
    tiles = check_result_files(
        result.out_dir, small_svs, model_paths["max-mil"], tmp_path / "features"
    )
    assert (tiles["width"] == 224).all()  # 224 px at 0.5 µm/px on a 0.499 µm/px slide


class RenamedExtractor:
    """The builtin extractor under another name: same dimension, different cache key."""

    def __init__(self) -> None:
        self._inner = create_extractor(EXTRACTOR, device="cpu")
        self.name, self.dim = "renamed-stain-stats", self._inner.dim
        self.tile_px, self.target_mpp = self._inner.tile_px, self._inner.target_mpp
        self.weights_sha256 = "b" * 64

    def embed(self, tiles_uint8: np.ndarray) -> np.ndarray:
        return self._inner.embed(tiles_uint8)


def test_reopening_uses_the_feature_cache_unless_extractor_or_tiling_change(
    tmp_path: Path,
) -> None:
    slide = write_synthetic_slide(
        tmp_path / "small.svs", width_px=1536, height_px=1024, seed=1, inflamed_regions=()
    )
    model_path = save_small_model(tmp_path, "abmil", extractor=None)
    calls: list[tuple[int, int]] = []

    def run(**kwargs) -> Path:
        calls.clear()
        predict_slide(
            slide,
            tmp_path / "out",
            model_path=model_path,
            device="cpu",
            batch_size=4,
            progress=lambda done, total: calls.append((done, total)),
            **kwargs,
        )
        return tmp_path / "out" / "features" / "small.h5"

    cache = run(extractor_name=EXTRACTOR)
    n = calls[-1][1]
    assert calls[0] == (0, n) and len(calls) > 1  # computed batch by batch
    stamp = cache.stat().st_mtime_ns
    run(extractor_name=EXTRACTOR)
    assert calls == [(n, n)]  # straight from the cache
    assert cache.stat().st_mtime_ns == stamp

    run(extractor_name=EXTRACTOR, min_tissue_fraction=0.9)  # another tiling
    assert calls[0][0] == 0 and calls[-1][1] < n
    run(extractor=RenamedExtractor())  # another extractor
    assert calls[0] == (0, n)
    assert read_features(cache).attrs["extractor"] == "renamed-stain-stats"


def test_failed_write_leaves_the_earlier_result_and_no_partial_file(
    sample_slide: Path,
    model_paths: dict[str, Path],
    shared_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import napari_imilia.export as export

    options = {
        "model_path": model_paths["abmil"],
        "device": "cpu",
        "progress": False,
        "cache_dir": shared_cache,
    }
    first = predict_slide(sample_slide, tmp_path, **options)
    before = {name: (first.out_dir / name).read_bytes() for name in RESULT_FILES}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_geojson", broken)
    with pytest.raises(OSError, match="disk full"):
        predict_slide(sample_slide, tmp_path, **{**options, "model_path": model_paths["max-mil"]})
    assert {p.name: p.read_bytes() for p in first.out_dir.iterdir()} == before

    fresh = tmp_path / "fresh"
    with pytest.raises(OSError, match="disk full"):
        predict_slide(sample_slide, fresh, **options)
    assert not fresh.exists()


def test_model_that_does_not_fit_the_extractor(small_svs: Path, tmp_path: Path) -> None:
    path = save_small_model(tmp_path, "max-mil", in_dim=32, extractor=None)
    with pytest.raises(ImiliaError, match=r"expects 32-d tile features .* gives 64-d"):
        predict_slide(small_svs, tmp_path / "out", model_path=path, extractor_name=EXTRACTOR)
    other = save_small_model(tmp_path, "abmil", extractor="h0-mini")
    extractor = create_extractor(EXTRACTOR, device="cpu")
    with pytest.raises(ImiliaError, match="trained on h0-mini features"):
        predict_slide(small_svs, tmp_path / "out", model_path=other, extractor=extractor)
    assert not (tmp_path / "out").exists()


def test_blank_slide_has_no_tissue(
    tiff_writer, model_paths: dict[str, Path], tmp_path: Path
) -> None:
    blank = tiff_writer(tmp_path / "blank.tiff", (1024, 1024))
    with pytest.raises(NoTissueError, match=r"no tissue found in blank\.tiff"):
        predict_slide(blank, tmp_path / "out", model_path=model_paths["abmil"], device="cpu")
    assert not (tmp_path / "out").exists()


def test_batch_size_reaches_the_extractor_it_loads(
    small_svs: Path, model_paths: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    import napari_imilia.features.extractors as extractors

    made = []
    real_create = extractors.create_extractor

    def recording_create(*args, **kwargs):
        made.append(real_create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(extractors, "create_extractor", recording_create)
    predict_slide(
        small_svs,
        tmp_path,
        model_path=model_paths["max-mil"],
        device="cpu",
        batch_size=5,
        progress=False,
    )
    assert [e.batch_size for e in made] == [5]


def test_unknown_tissue_parameter_is_named_before_any_work(
    small_svs: Path, model_paths: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ImiliaError, match=r"unknown tissue parameter.*saturation.*known:"):
        predict_slide(
            small_svs,
            tmp_path / "out",
            model_path=model_paths["abmil"],
            tissue_params={"saturation": 0.2},
        )
    assert not (tmp_path / "out").exists()
