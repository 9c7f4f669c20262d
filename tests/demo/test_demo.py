"""``run_demo``: the whole pipeline on the embedded default, and the mask/gallery files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_imilia.demo.run import DEMO_SUMMARY_NAME, GALLERY_NAME, SUMMARY_NAME, run_demo
from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.cells.types import CELL_CLASSES
from napari_imilia.interpret.masks import overlay_gallery


@pytest.fixture(scope="module")
def demo(sample_slide: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, slide_path=sample_slide, top_k=6, mask_tiles=2, progress=False)


#: Every file README.md says command 1 writes into imilia_demo/<slide_id>/ (and beside it).
README_SLIDE_FILES = (
    "tiles.csv",
    "slide.json",
    "heatmap.png",
    "tiles.geojson",
    "markers.csv",
    "cells.geojson",
    "epithelium.geojson",
    "markers_summary.json",
    "markers_vs_score.png",
    GALLERY_NAME,
)


def test_demo_writes_every_product_and_marks_the_demo_model(demo) -> None:
    slide_dir = demo.slide_dir
    for name in README_SLIDE_FILES:
        assert (slide_dir / name).is_file(), name
    assert demo.model_is_demo and demo.score > 0.5
    record = json.loads((demo.out_dir / DEMO_SUMMARY_NAME).read_text())
    assert record["model_is_demo"] is True and "not for diagnosis" in record["note"]
    assert record["slide_id"] == slide_dir.name
    assert all((demo.out_dir / name).is_file() for name in record["files"])
    assert (demo.out_dir / SUMMARY_NAME).is_file()
    markers = pd.read_csv(slide_dir / "markers.csv", dtype={"tile_id": str})
    assert len(markers) == 6 and demo.n_cells > 0


def test_demo_masks_are_the_best_tiles_on_one_grid(demo) -> None:
    tiles = pd.read_csv(demo.slide_dir / "tiles.csv", dtype={"tile_id": str})
    best = tiles.sort_values("score", ascending=False)["tile_id"].head(2).tolist()
    masks = demo.slide_dir / "masks"
    assert sorted(p.name for p in masks.iterdir()) == sorted(
        f"{tile}_{kind}" for tile in best for kind in ("cells.tif", "classes.png", "epithelium.png")
    )
    for tile in best:
        labels = tifffile.imread(masks / f"{tile}_cells.tif")
        classes = np.asarray(Image.open(masks / f"{tile}_classes.png"))
        epithelium = np.asarray(Image.open(masks / f"{tile}_epithelium.png"))
        assert labels.shape == classes.shape == epithelium.shape
        assert labels.dtype == np.int32 and labels.max() > 0
        assert set(np.unique(epithelium)) <= {0, 255}
        assert classes.max() < len(CELL_CLASSES)
        assert np.array_equal(classes > 0, labels > 0)  # every cell pixel has a class
    gallery = np.asarray(Image.open(demo.slide_dir / GALLERY_NAME))
    assert gallery.shape[0] == labels.shape[0] and gallery.shape[1] > 2 * labels.shape[1]


def test_bad_demo_parameters_and_gallery_inputs(tmp_path: Path) -> None:
    with pytest.raises(ImiliaError, match="top_k"):
        run_demo(tmp_path, top_k=0)
    with pytest.raises(ValueError, match="one tile image per inspection"):
        overlay_gallery([], [])


def test_imilia_demo_as_typed_with_a_relative_out_from_another_folder(
    sample_slide: Path, tmp_path: Path
) -> None:
    """README command 1's job with its default relative ``--out``, run from an unrelated
    folder (a user's home, say), exits 0 and writes every file the README lists there."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "IMILIA_CACHE_DIR": str(sample_slide.parent)}
    env.pop("DISPLAY", None)
    command = [
        sys.executable,
        "-m",
        "napari_imilia.cli",
        "demo",
        "--out",
        "imilia_demo",
        "--no-viewer",
        "--top",
        "4",
        "--mask-tiles",
        "1",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "imilia_demo"
    record = json.loads((out / DEMO_SUMMARY_NAME).read_text())
    slide_dir = out / record["slide_id"]
    for name in README_SLIDE_FILES:
        assert (slide_dir / name).is_file(), name
    assert (slide_dir / "masks").is_dir() and any((slide_dir / "masks").iterdir())
    assert all(not Path(name).is_absolute() and (out / name).is_file() for name in record["files"])
