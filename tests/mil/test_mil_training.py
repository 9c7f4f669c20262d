"""Cross-validated training (planted signal, null labels, determinism) and the CLI commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_imilia.cli import main
from napari_imilia.errors import DataError
from napari_imilia.features.cache import write_features
from napari_imilia.mil import list_models, load_model, train_cross_validation

DIM = 16
FAST = {
    "imilia-chowder": {"n_channels": 2, "n_top": 3, "n_bottom": 3, "mlp_hidden": [16]},
    "abmil": {"embed_dim": 16, "attn_dim": 8},
    "max-mil": {"hidden": [16]},
}
TRAIN = {"folds": 5, "epochs": 15, "lr": 1e-2, "batch_size": 8}


def planted_bags(n_slides: int = 40, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Bags of 20-40 N(0, 1) tiles; each positive slide has 4 tiles shifted by +3 on 4 dims."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1] * (n_slides // 2))
    bags = []
    for label in labels:
        x = rng.standard_normal((int(rng.integers(20, 41)), DIM)).astype(np.float32)
        if label:
            x[rng.choice(len(x), 4, replace=False), :4] += 3.0
        bags.append(x)
    return bags, labels


@pytest.mark.parametrize("arch", sorted(FAST))
def test_training_recovers_a_planted_signal(arch: str) -> None:
    bags, labels = planted_bags()
    result = train_cross_validation(
        bags, labels, arch, seed=0, hparams=FAST[arch], final_model=False, **TRAIN
    )
    assert len(result.folds) == 5 and result.final_model is None
    assert result.mean_roc_auc >= 0.95, result.metrics()["folds"]
    assert not np.isnan(result.oof_probability).any()


@pytest.mark.parametrize("arch", sorted(FAST))
def test_shuffled_labels_give_chance_level_auc(arch: str) -> None:
    bags, labels = planted_bags()
    aucs = []
    for permutation_seed in range(3):
        shuffled = np.random.default_rng(100 + permutation_seed).permutation(labels)
        result = train_cross_validation(
            bags,
            shuffled,
            arch,
            seed=permutation_seed,
            hparams=FAST[arch],
            final_model=False,
            **TRAIN,
        )
        aucs.append(result.pooled_roc_auc)
    assert 0.25 <= float(np.mean(aucs)) <= 0.75, aucs


@pytest.mark.parametrize("arch", sorted(FAST))
def test_same_seed_gives_identical_metrics_and_weights(arch: str) -> None:
    bags, labels = planted_bags(n_slides=20)
    global_state = torch.get_rng_state()
    runs = [
        train_cross_validation(
            bags,
            labels,
            arch,
            seed=seed,
            hparams=FAST[arch],
            folds=2,
            epochs=3,
            lr=1e-2,
        )
        for seed in (7, 7, 8)
    ]
    assert torch.equal(torch.get_rng_state(), global_state)  # global RNG untouched
    assert json.dumps(runs[0].metrics()) == json.dumps(runs[1].metrics())
    first, second, other = (r.final_model.state_dict() for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_training_input_errors() -> None:
    bags, labels = planted_bags(n_slides=10)
    with pytest.raises(DataError, match="every slide has label 0"):
        train_cross_validation(bags, np.zeros(10, int), "abmil", folds=2)
    with pytest.raises(DataError, match="fewer than the 6 folds"):
        train_cross_validation(bags, labels, "abmil", folds=6)
    with pytest.raises(DataError, match="0/1"):
        train_cross_validation(bags, labels * 2, "abmil", folds=2)


# --- CLI ---------------------------------------------------------------------------------


def write_feature_dir(folder: Path, n_slides: int = 20) -> tuple[Path, list[str]]:
    bags, labels = planted_bags(n_slides=n_slides, seed=1)
    ids = [f"S{i:02d}" for i in range(n_slides)]
    for slide_id, x in zip(ids, bags, strict=True):
        coords = np.stack([np.arange(len(x)) * 224, np.zeros(len(x))], axis=1)
        attrs = {"extractor": "toy-16", "target_mpp": 0.5, "tile_px": 224, "slide_id": slide_id}
        write_features(folder / f"{slide_id}.h5", x, coords, attrs)
    table = pd.DataFrame({"slide_id": ids, "label": labels})
    table.to_csv(folder.parent / "labels.csv", index=False)
    return folder.parent / "labels.csv", ids


def test_cli_models_lists_names_then_descriptions(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [name for name, _ in list_models()]
    assert lines[: len(names)] == names
    assert lines[len(names)] == ""
    assert all(
        line.startswith(f"{n}: ") for n, line in zip(names, lines[len(names) + 1 :], strict=True)
    )


def test_cli_train_then_score(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels, ids = write_feature_dir(tmp_path / "features")
    out = tmp_path / "model" / "model.safetensors"
    args = [
        "train",
        "--features",
        str(tmp_path / "features"),
        "--labels",
        str(labels),
        "--out",
        str(out),
        "--arch",
        "abmil",
        "--folds",
        "2",
        "--epochs",
        "10",
        "--hparam",
        "embed_dim=16",
        "--hparam",
        "attn_dim=8",
        "--lr",
        "0.01",
    ]
    assert main(args) == 0
    metrics = json.loads((out.parent / "cv_metrics.json").read_text())
    assert len(metrics["folds"]) == 2 and metrics["n_slides"] == 20
    config = json.loads(out.with_suffix(".json").read_text())
    assert config["architecture"] == "abmil" and config["hparams"]["embed_dim"] == 16
    assert config["extractor"] == "toy-16" and config["mpp"] == 0.5 and config["tile_px"] == 224
    training = config["training"]
    assert training["folds"] == 2 and training["seed"] == 0 and training["epochs"] == 10
    assert len(training["labels_sha256"]) == 64 and config["demo"] is False
    assert training["cv"]["mean_roc_auc"] == metrics["mean_roc_auc"]
    assert "mean ROC-AUC" in capsys.readouterr().out
    again = tmp_path / "again" / "model.safetensors"
    assert main([*args[:5], "--out", str(again), *args[7:]]) == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same weights, same bytes
    rerun = json.loads((again.parent / "cv_metrics.json").read_text())
    assert rerun["folds"] == metrics["folds"]

    scores_dir = tmp_path / "scores"
    assert (
        main(
            [
                "score",
                "--model",
                str(out),
                "--features",
                str(tmp_path / "features"),
                "--out",
                str(scores_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    scores = pd.read_csv(scores_dir / "scores.csv", dtype={"slide_id": str})
    assert scores["slide_id"].tolist() == ids
    assert list(scores.columns[:3]) == ["slide_id", "score", "logit"]
    assert scores["score"].between(0, 1).all()
    model = load_model(out, device="cpu")
    tiles = pd.read_csv(scores_dir / "tiles" / "S03.csv")
    assert list(tiles.columns) == ["tile_id", "x", "y", "score", "attention"]
    assert tiles["attention"].sum() == pytest.approx(1.0, abs=1e-4)
    assert tiles["x"].tolist() == list(range(0, 224 * len(tiles), 224))
    # the same ids as predict's tiles.csv, so they can be passed to `imilia inspect --tiles`
    expected_ids = [f"{x}_{y}" for x, y in zip(tiles["x"], tiles["y"], strict=True)]
    assert tiles["tile_id"].tolist() == expected_ids
    from napari_imilia.features.cache import read_features

    expected = model.predict(read_features(tmp_path / "features" / "S03.h5").features)
    assert scores.loc[3, "score"] == pytest.approx(expected.probability, abs=1e-6)
    info = json.loads((scores_dir / "score_info.json").read_text())
    assert info["model_sha256"] == model.sha256


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("slide,label\nS00,0\n", r"lacks column\(s\) slide_id"),
        ("slide_id,label\nS00,0\nS01,1\nGHOST,1\nS02,0\n", "no feature file.*GHOST"),
        ("slide_id,label\nS00,0\nS01,2\n", "label must be 0 or 1.*S01"),
        ("slide_id,label\nS00,0\nS00,1\n", "more than once: S00"),
        ("slide_id,label\nS00,0\nS02,0\nS04,0\n", "every slide has label 0"),
        ("slide_id,label\nS00,0\nS01,1\nS02,0\nS03,1\nS04,0\n", "only 2 slide"),
    ],
)
def test_cli_train_bad_labels_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, table: str, message: str
) -> None:
    write_feature_dir(tmp_path / "features", n_slides=6)
    labels = tmp_path / "bad.csv"
    labels.write_text(table)
    out = tmp_path / "m.safetensors"
    code = main(
        [
            "train",
            "--features",
            str(tmp_path / "features"),
            "--labels",
            str(labels),
            "--out",
            str(out),
            "--folds",
            "3",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("imilia train: error:")
    assert re.search(message, err), err
    assert not out.exists()


def test_cli_score_dimension_mismatch_exit_2(tmp_path: Path, capsys) -> None:
    from napari_imilia.mil import create_model, save_model

    write_feature_dir(tmp_path / "features", n_slides=2)
    model = save_model(
        create_model("max-mil", 8, hidden=[4]), tmp_path / "m.safetensors", extractor="other-8"
    )
    code = main(
        [
            "score",
            "--model",
            str(model),
            "--features",
            str(tmp_path / "features"),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "expects 8-d features (extractor other-8) but got 16-d" in capsys.readouterr().err


def test_cli_train_refuses_features_without_coords(tmp_path: Path, capsys) -> None:
    import h5py

    labels, ids = write_feature_dir(tmp_path / "features", n_slides=6)
    with h5py.File(tmp_path / "features" / f"{ids[2]}.h5", "a") as h5:
        del h5["coords"]
    out = tmp_path / "m.safetensors"
    args = ["train", "--features", str(tmp_path / "features"), "--labels", str(labels)]
    assert main([*args, "--out", str(out), "--folds", "3"]) == 2
    assert f"{ids[2]}.h5 has no 'coords' dataset" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "cv_metrics.json").exists()
