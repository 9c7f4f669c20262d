"""A small generated slide scored by a small real model."""

from __future__ import annotations

from pathlib import Path


def make_scored_slide(folder: Path) -> tuple[Path, Path]:
    """A small generated slide (20 tissue tiles of 224 px at 0.5 µm/px) scored by a small
    real ABMIL head on the builtin extractor; returns (slide, results folder)."""
    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.features.extractors import create_extractor
    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    slide = write_synthetic_slide(
        folder / "biopsy.svs",
        width_px=1792,
        height_px=1344,
        seed=3,
        inflamed_regions="random",
        n_inflamed_regions=1,
        levels=(1, 4),
    )
    extractor = create_extractor("imilia-stain-stats")
    model = create_model("abmil", in_dim=extractor.dim)
    model_path = save_model(
        model, folder / "model.safetensors", extractor=extractor.name, mpp=0.5, tile_px=224
    )
    predict_slide(slide, folder / "results", model_path=model_path, progress=False)
    return slide, folder / "results"
