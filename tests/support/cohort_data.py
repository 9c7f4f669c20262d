"""A small generated cohort for the cohort review tests: written once per test session.

12 tiled TIFFs (768 x 768 px at 0.5 µm/px, a few tiles each): a tissue block whose colour
goes from pale pink (label inactive) to dark purple (dense nuclei, label active), plus one
unreadable ``.svs``; ``labels.csv`` names them all with ``active`` and ``nancy`` columns.
Also a tiny max-MIL model on the weight-free stain-statistics features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiled_tiff

N_SLIDES = 12
SIZE_PX = 768


def _pattern(darkness: float, seed: int):
    rng = np.random.default_rng(seed)
    noise = rng.integers(-12, 13, size=(SIZE_PX, SIZE_PX, 3))

    def fill(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        image = np.full((*ys.shape, 3), 250, np.int32)
        inside = (ys >= 64) & (ys < SIZE_PX - 64) & (xs >= 64) & (xs < SIZE_PX - 64)
        pink = np.array([225, 150, 190])
        purple = np.array([110, 50, 150])
        colour = (1 - darkness) * pink + darkness * purple
        yy = np.clip(ys, 0, SIZE_PX - 1)
        xx = np.clip(xs, 0, SIZE_PX - 1)
        image[inside] = (colour + noise[yy, xx])[inside]
        return np.clip(image, 0, 255).astype(np.uint8)

    return fill


def write_cohort_slides(folder: Path) -> dict[str, Path]:
    """Write the cohort into ``folder`` (kept when already there); returns the paths."""
    slides_dir = folder / "slides"
    done = folder / "complete"
    if not done.exists():
        slides_dir.mkdir(parents=True, exist_ok=True)
        (slides_dir / "sub").mkdir(exist_ok=True)
        rows = ["slide,active,nancy"]
        for i in range(N_SLIDES):
            active = i % 2
            darkness = (0.55 + 0.4 * (i / N_SLIDES)) if active else 0.45 * (i / N_SLIDES)
            where = slides_dir / ("sub" if i >= 8 else "") / f"case_{i:02d}.tiff"
            write_tiled_tiff(where, (SIZE_PX, SIZE_PX), pattern=_pattern(darkness, i))
            nancy = (2 + i % 3) if active else (i % 2)
            rows.append(f"{where.relative_to(folder)},{active},{nancy}")
        bad = slides_dir / "broken.svs"
        bad.write_bytes(b"this is not a slide" * 100)
        rows.append(f"{bad.relative_to(folder)},1,3")
        (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        done.touch()
    return {"folder": slides_dir, "csv": folder / "labels.csv"}


def tiny_model(folder: Path) -> Path:
    """A max-MIL model on 64-d stain-statistics features at 0.5 µm/px (seeded)."""
    import torch

    from napari_imilia.mil import create_model, save_model

    path = folder / "tiny.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = create_model("max-mil", 64, hidden=[8])
        save_model(model, path, extractor="imilia-stain-stats", mpp=0.5)
    return path


@pytest.fixture(scope="session")
def cohort_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.getbasetemp() / "generated_cohort"
    root.mkdir(exist_ok=True)
    data = write_cohort_slides(root)
    data["model"] = tiny_model(root)
    return data


@pytest.fixture(scope="session")
def scored_results(cohort_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated cohort built from its folder and scored once (every slide but the
    broken one); tests copy this folder before changing it."""
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.scoring import score_unscored

    root = tmp_path_factory.getbasetemp() / "generated_cohort_scored"
    if not (root / "cohort.csv").is_file():
        cohort = Cohort.build(cohort_data["folder"], root)
        score_unscored(cohort, model_path=cohort_data["model"], device="cpu")
    return root
