"""EpiSeg trained and evaluated as IMILIA does, on IBDColEpi's patch-dataset layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_imilia.errors import DataError
from napari_imilia.interpret.epithelium.ibdcolepi import load_patch_dataset, split_folders
from napari_imilia.interpret.epithelium.probe import patch_fractions_from_mask


def _write_split(root: Path, split: str, seeds: list[int], size: int = 224) -> None:
    from napari_imilia.demo.synthetic import render_tile

    images = root / "patch-dataset-HE" / split / "Images_tif"
    labels = root / "patch-dataset-HE" / split / "Labels_tif"
    images.mkdir(parents=True), labels.mkdir(parents=True)
    for seed in seeds:
        tile = render_tile(size, 0.5, seed=seed)
        name = f"ID-{seed}_HE_active_{seed:03d}.tif"
        tifffile.imwrite(images / name, tile.rgb)
        tifffile.imwrite(labels / name, tile.epithelium_mask.astype(np.uint8) * 255)


def test_layout_resize_and_patch_labels(tmp_path):
    root = tmp_path / "ibdcolepi"
    images = root / "patch-dataset-HE" / "Trainset" / "Images_tif"
    labels = root / "patch-dataset-HE" / "Trainset" / "Labels_tif"
    images.mkdir(parents=True), labels.mkdir(parents=True)
    rgb = np.zeros((500, 600, 3), np.uint8)
    rgb[:, :300] = (200, 80, 150)
    label = np.zeros((500, 600), np.uint8)
    label[:250, :] = 1  # labels may be 0/1: anything > 0 is epithelium
    tifffile.imwrite(images / "a.tif", rgb)
    tifffile.imwrite(labels / "a.tif", label)
    data = load_patch_dataset(root, "Trainset")
    assert data.names == ["a.tif"]
    assert data.images.shape == (1, 1022, 1022, 3) and data.labels.shape == (1, 1022, 1022)
    assert data.labels[0, :511].all() and not data.labels[0, 511:].any()  # nearest: half
    fractions = patch_fractions_from_mask(data.labels[0], (73, 73))
    expected = data.labels[0].reshape(73, 14, 73, 14).mean(axis=(1, 3))
    assert np.allclose(fractions, expected)  # 14 x 14 means
    assert fractions[36, 0] == pytest.approx(7 / 14)  # the patch row cut by the label's edge
    assert load_patch_dataset(root / "patch-dataset-HE", "Trainset").names == ["a.tif"]

    with pytest.raises(DataError, match=r"Testset/Images_tif"):
        split_folders(root, "Testset")
    tifffile.imwrite(images / "b.tif", rgb)
    with pytest.raises(DataError, match="same names"):
        load_patch_dataset(root, "Trainset")
    with pytest.raises(DataError, match="multiple of 14"):
        load_patch_dataset(root, "Trainset", image_px=1000)


def test_train_episeg_on_the_patch_dataset(tmp_path, capsys):
    """`imilia train-episeg --dataset` with a tiny random ViT of H0-mini's layout: trains on
    Trainset at 1022 px (73 x 73 tokens), reports AP and the PR curve on Testset."""
    from safetensors.torch import save_file

    from napari_imilia.cli import main
    from napari_imilia.features.extractors import (
        FOUNDATION_SPECS,
        ViTExtractor,
        register_extractor,
        unregister_extractor,
    )
    from napari_imilia.features.vit import VisionTransformer
    from napari_imilia.features.vit.config import scaled_down
    from napari_imilia.interpret.epithelium import load_episeg_probe

    h0 = next(spec for spec in FOUNDATION_SPECS if spec.name == "h0-mini")
    spec = dataclasses.replace(h0, name="tiny-h0-ibd", vit=scaled_down(h0.vit, grid=16))
    weights = tmp_path / "tiny.safetensors"
    save_file(VisionTransformer(spec.vit).init_random(seed=2).state_dict(), str(weights))
    root = tmp_path / "IBDColEpi"
    _write_split(root, "Trainset", [0, 1, 2, 3])
    _write_split(root, "Testset", [10, 11])
    register_extractor(
        "tiny-h0-ibd", "test", lambda w, d, b: ViTExtractor(spec, w, device=d, batch_size=b)
    )
    try:
        probe_path = tmp_path / "out" / "episeg.safetensors"
        argv = ["train-episeg", "--dataset", str(root), "--extractor", "tiny-h0-ibd"]
        argv += ["--extractor-weights", str(weights), "--out", str(probe_path)]
        assert main([*argv, "--folds", "2", "--device", "cpu", "--batch-size", "2"]) == 0
        printed = capsys.readouterr().out
        assert "test set (2 images, 10658 patches): average precision" in printed
        report = json.loads((probe_path.parent / "episeg_test.json").read_text())
        assert report["n_patches"] == 2 * 73 * 73 and report["threshold"] == 0.75
        assert 0.0 < report["average_precision"] <= 1.0
        curve = report["pr_curve"]
        assert len(curve["precision"]) == len(curve["recall"]) == len(curve["thresholds"]) + 1
        assert curve["recall"][0] == 1.0 and curve["recall"][-1] == 0.0
        assert (probe_path.parent / "episeg_pr_curve.png").stat().st_size > 1000
        cv = json.loads((probe_path.parent / "episeg_cv.json").read_text())
        assert len(cv["fold_ap"]) == 2 and len(cv["tiles"]) == 4
        probe = load_episeg_probe(probe_path)
        assert probe.threshold == 0.75 and probe.extractor_name == "tiny-h0-ibd"

        capsys.readouterr()
        assert main(["train-episeg", "--extractor", "x", "--out", str(probe_path)]) == 2
        assert "--dataset" in capsys.readouterr().err
    finally:
        unregister_extractor("tiny-h0-ibd")
