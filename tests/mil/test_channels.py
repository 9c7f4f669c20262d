"""IMILIA's channels: per-channel tile scores, polarity and the extremes Chowder selects.

The values in tiles.csv must be the model's own per-channel tile scores, the extreme flags
exactly the tiles Chowder's extreme layer picks, and slide.json must hold each channel's
polarity; with the released folds (5 channels, 768-d) when they are present.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import IMILIA_RELEASE, NEEDS_WEIGHTS
from napari_imilia.features.cache import read_features
from napari_imilia.mil import create_model, load_model, save_model
from napari_imilia.mil.channels import channel_labels, extreme_tokens
from napari_imilia.mil.chowder import select_extremes
from napari_imilia.predict.slide import load_prediction, predict_slide

EXTRACTOR = "imilia-stain-stats"
RELEASE = IMILIA_RELEASE


def chowder(path: Path, *, seed: int = 0, n_top: int = 5, n_bottom: int = 4) -> Path:
    torch.manual_seed(seed)
    model = create_model(
        "imilia-chowder", 64, n_channels=5, n_top=n_top, n_bottom=n_bottom, mlp_hidden=[8]
    )
    return save_model(model, path, extractor=EXTRACTOR, mpp=0.5, tile_px=224)


def expected_extremes(
    module, features: np.ndarray
) -> tuple[np.ndarray, list[set[int]], list[set[int]]]:
    """Per-channel scores and the sets of rows whose scores fill Chowder's top and bottom
    slots (read off ``select_extremes``' values, so the test does not reuse the indices)."""
    with torch.no_grad():
        scores = module.score_model(torch.from_numpy(features))  # (N, C)
        extremes = select_extremes(scores[None], None, module.n_top, module.n_bottom)[0]
    scores_np = scores.numpy()
    tops, bottoms = [], []
    for c in range(scores_np.shape[1]):
        top_values = extremes[: module.n_top, c].numpy()
        bottom_values = extremes[module.n_top :, c].numpy()
        tops.append({int(np.flatnonzero(scores_np[:, c] == v)[0]) for v in top_values})
        bottoms.append({int(np.flatnonzero(scores_np[:, c] == v)[0]) for v in bottom_values})
    return scores_np, tops, bottoms


def check_channel_table(tiles: pd.DataFrame, module, features: np.ndarray, prefix: str) -> None:
    scores, tops, bottoms = expected_extremes(module, features)
    tokens = [set(extreme_tokens(v)) for v in tiles["extreme_channels"]]
    for c in range(scores.shape[1]):
        label = f"{prefix}ch{c}"
        np.testing.assert_allclose(tiles[f"score_{label}"], scores[:, c], rtol=1e-5, atol=1e-6)
        assert {n for n, t in enumerate(tokens) if f"{label}+" in t} == tops[c]
        assert {n for n, t in enumerate(tokens) if f"{label}-" in t} == bottoms[c]


def test_five_channel_model_writes_channels_extremes_and_polarity(
    sample_slide: Path, tmp_path: Path
) -> None:
    path = chowder(tmp_path / "chowder5.safetensors")
    result = predict_slide(
        sample_slide, tmp_path / "out", model_path=path, device="cpu", progress=False
    )
    tiles = pd.read_csv(result.tiles_csv, dtype={"tile_id": str}, keep_default_na=False)
    info = json.loads((result.out_dir / "slide.json").read_text())
    labels = [f"ch{c}" for c in range(5)]
    assert [c for c in tiles.columns if c.startswith("score_")] == [f"score_{x}" for x in labels]
    assert len(tiles) > 20  # more tiles than the 9 slots, so the selection really chooses

    model = load_model(path, device="cpu")
    module = model.members[0].module
    features = read_features(tmp_path / "out" / "features" / f"{result.slide_id}.h5").features
    check_channel_table(tiles, module, features, "")
    out = module(torch.from_numpy(features))
    # polarity: the model's own, one entry per channel, with its column
    assert [e["label"] for e in info["channels"]] == labels
    assert [e["polarity"] for e in info["channels"]] == out.channel_polarity.int().tolist()
    assert info["extremes_per_channel"] == {"top": 5, "bottom": 4}
    # the blended score is still the polarity-signed mean of the channels
    blended = (tiles[[f"score_{x}" for x in labels]].to_numpy() * info_polarity(info)).mean(1)
    np.testing.assert_allclose(tiles["score"], blended, rtol=1e-5, atol=1e-6)
    # flags and drive agree with the tokens
    top_any = tiles["extreme_channels"].str.contains(r"\+")
    bottom_any = tiles["extreme_channels"].str.contains("-")
    assert (tiles["extreme_top"].astype(str) == top_any.astype(str)).all()
    assert (tiles["extreme_bottom"].astype(str) == bottom_any.astype(str)).all()
    polarity = dict(zip(labels, info_polarity(info), strict=True))
    for value, drive in zip(tiles["extreme_channels"], tiles["drive"], strict=True):
        expected = sum(
            polarity[t[:-1]] * (1 if t.endswith("+") else -1) for t in extreme_tokens(value)
        )
        assert drive == pytest.approx(expected)
    selected = (tiles["extreme_channels"] != "").sum()
    assert 0 < selected <= 5 * 9

    collection = json.loads((result.out_dir / "tiles.geojson").read_text())
    first = collection["features"][0]["properties"]
    row = tiles.set_index("tile_id").loc[first["name"]]
    assert first["measurements"]["score_ch3"] == pytest.approx(row["score_ch3"], rel=1e-5)
    assert first["measurements"]["extreme_top"] == int(str(row["extreme_top"]) == "True")

    reopened = load_prediction(result.out_dir)
    assert channel_labels(reopened.tiles, reopened.info) == labels
    assert not reopened.tiles["extreme_channels"].isna().any()
    assert reopened.tiles["extreme_top"].dtype == bool


def info_polarity(info: dict) -> np.ndarray:
    return np.array([e["polarity"] for e in info["channels"]], dtype=np.float64)


def test_single_channel_models_have_no_channel_columns(sample_slide: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("abmil", 64, embed_dim=16, attn_dim=8)
    path = save_model(model, tmp_path / "abmil.safetensors", extractor=EXTRACTOR, mpp=0.5)
    result = predict_slide(
        sample_slide, tmp_path / "out", model_path=path, device="cpu", progress=False
    )
    assert not [c for c in result.tiles.columns if c.startswith("score_")]
    assert "extreme_channels" not in result.tiles.columns and "channels" not in result.info
    assert channel_labels(result.tiles, result.info) == []


def test_padding_rows_are_never_flagged_and_cut_tiles_get_nan(tmp_path: Path) -> None:
    model = load_model(chowder(tmp_path / "c.safetensors", n_top=6, n_bottom=6), device="cpu")
    features = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    with pytest.warns(UserWarning, match="cut to its first 5"):
        prediction = model.predict(features, pad_to_tiles=5)
    readout = prediction.channels
    assert readout.scores.shape == (8, 5) and np.isnan(readout.scores[5:]).all()
    assert not readout.top[5:].any() and not readout.bottom[5:].any()
    # 5 real tiles cannot fill 6 slots: every real tile is selected, both ways
    assert readout.top[:5].all() and readout.bottom[:5].all()


def test_ensemble_keeps_each_members_channels(tmp_path: Path) -> None:
    folder = tmp_path / "ensemble"
    folder.mkdir()
    for seed in (0, 1):
        chowder(folder / f"fold_{seed}.safetensors", seed=seed)
    model = load_model(folder, device="cpu")
    features = np.random.default_rng(2).standard_normal((40, 64)).astype(np.float32)
    readout = model.predict(features).channels
    assert readout.labels == [f"m{m}_ch{c}" for m in (0, 1) for c in range(5)]
    for m, member in enumerate(model.members):
        scores, tops, _ = expected_extremes(member.module, features)
        np.testing.assert_allclose(readout.scores[:, m * 5 : m * 5 + 5], scores, rtol=1e-6)
        for c in range(5):
            assert set(np.flatnonzero(readout.top[:, m * 5 + c])) == tops[c]


@pytest.mark.skipif(not (RELEASE / "fold_0.pt").is_file(), reason=NEEDS_WEIGHTS)
def test_released_folds_give_five_channels_and_their_extremes() -> None:
    from napari_imilia.mil.channels import channel_columns

    features = np.random.default_rng(300).standard_normal((300, 768)).astype(np.float32)
    fold = load_model(RELEASE / "fold_0.pt", device="cpu")
    readout = fold.predict(features).channels
    assert readout.labels == [f"ch{c}" for c in range(5)]
    assert (readout.n_top, readout.n_bottom) == (25, 25)
    table = channel_columns(readout)
    check_channel_table(table, fold.members[0].module, features, "")
    assert set(np.unique(readout.polarity)) <= {-1.0, 0.0, 1.0}
    ensemble = load_model(RELEASE, device="cpu")
    readout = ensemble.predict(features).channels
    assert len(readout.labels) == 25 and readout.labels[-1] == "m4_ch4"
    assert readout.top.sum() == 25 * 25 and readout.bottom.sum() == 25 * 25
