"""PredictSettings: built from the keywords, defaults resolved once from model and extractor."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from napari_imilia.errors import ImiliaError
from napari_imilia.features.extractors import create_extractor
from napari_imilia.features.extractors.builtin import builtin_digest
from napari_imilia.mil import load_model
from napari_imilia.predict.settings import PredictSettings, keyword_alias, settings_from
from support.models import EXTRACTOR, save_small_model


def test_keywords_are_checked_and_tissue_settings_normalised(tmp_path: Path) -> None:
    # the CLI's automatic tissue options and no tissue options at all ask for the same mask
    cli = PredictSettings.from_keywords(
        tissue_params={"saturation_threshold": None, "min_od": None, "remove_pen": True}
    )
    assert cli == PredictSettings() and cli.tissue_params == {}
    pale = PredictSettings.from_keywords(tissue_params={"min_od": 0.1, "remove_pen": False})
    assert pale.tissue == (("min_od", 0.1), ("remove_pen", False))
    assert PredictSettings.from_keywords(model_path=["one.pt"]).model_path == "one.pt"
    assert PredictSettings.from_keywords(model_path=["a.pt", "b.pt"]).model_path == (
        "a.pt",
        "b.pt",
    )
    assert PredictSettings.from_keywords(protocol="imilia").tiling == "deepzoom"
    coords = tmp_path / "tiles_coords.npy"
    coords.write_bytes(b"")
    assert PredictSettings.from_keywords(tiles_from=coords).tiling == "deepzoom"
    for bad, message in (
        ({"tissue_params": {"colour": 1}}, "unknown tissue parameter"),
        ({"tissue_params": {"saturation_threshold": 1.5}}, "must be in"),
        ({"tiling": "hexagons"}, "unknown tiling"),
        ({"tiles_from": tmp_path / "absent.npy"}, "does not exist"),
    ):
        with pytest.raises(ImiliaError, match=message):
            PredictSettings.from_keywords(**bad)


def test_settings_or_keywords_not_both() -> None:
    keywords = {"mpp": 0.25, "device": "cpu"}
    assert settings_from(None, keywords).mpp == 0.25 and keywords == {"device": "cpu"}
    with pytest.raises(TypeError, match="not both"):
        settings_from(PredictSettings(), {"target_mpp": 1.0})
    assert settings_from(PredictSettings(tile_px=256), {"tiling": None}).tile_px == 256
    with pytest.warns(DeprecationWarning, match="old name of decode_workers"):
        assert keyword_alias(None, 2, "num_workers", "decode_workers") == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert keyword_alias(3, None, "num_workers", "decode_workers") == 3
    with pytest.raises(TypeError, match="not both"):
        keyword_alias(1, 2, "n_workers", "cluster_workers")


def test_resolve_takes_the_asked_then_the_model_then_the_extractor(tmp_path: Path) -> None:
    model = load_model(save_small_model(tmp_path, "max-mil"), device="cpu")  # 0.5 µm/px, 224
    extractor = create_extractor(EXTRACTOR, device="cpu")
    resolved = PredictSettings().resolve(model, extractor)
    assert (resolved.extractor, resolved.target_mpp, resolved.tile_px) == (EXTRACTOR, 0.5, 224)
    assert resolved.model_sha256 == model.sha256 and not resolved.model_is_demo
    assert resolved.extractor_sha256 == extractor.weights_sha256 == builtin_digest()
    asked = PredictSettings(target_mpp=1.0, tile_px=256).resolve(model, extractor)
    assert (asked.target_mpp, asked.tile_px) == (1.0, 256)
    # without the extractor loaded (slides sent to dask workers): its digest, no guesses
    unloaded = PredictSettings().resolve(model)
    assert unloaded.extractor == EXTRACTOR and unloaded.extractor_sha256 == builtin_digest()
    model.config.pop("mpp")
    assert PredictSettings().resolve(model).target_mpp is None  # "whatever it says"
    assert PredictSettings().resolve(model, extractor).target_mpp == extractor.target_mpp

    anonymous = load_model(save_small_model(tmp_path / "x", "max-mil", extractor=None), "cpu")
    with pytest.raises(ImiliaError, match="does not say which extractor"):
        PredictSettings().resolve(anonymous)


def test_absolute_expands_and_keeps_links(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = PredictSettings(model_path="~/m.safetensors", extractor_weights="w.bin").absolute()
    assert settings.model_path == str(tmp_path / "home" / "m.safetensors")
    assert settings.extractor_weights == str(tmp_path / "w.bin") and settings.tiles_from is None
