"""The whole IMILIA pipeline on the embedded default, end to end (no Qt): ``imilia demo``.

``run_demo(out_dir)`` takes the generated sample slide (``napari_imilia.demo.sample``) and the
bundled DEMO model (``predict.default_model_path``, trained on generated slides; see
docs/demo_model.md) and writes, into ``out_dir``:

- ``<slide_id>/``: ``imilia predict``'s files (tiles.csv, slide.json, heatmap.png,
  tiles.geojson) and ``imilia inspect``'s files for the top tiles (markers.csv,
  cells.geojson, epithelium.geojson, markers_summary.json, markers_vs_score.png);
- ``<slide_id>/masks/``: cell instance, cell class and epithelium masks of the best tiles
  (``interpret.masks``), and ``<slide_id>/top_tiles.png``, their overlay gallery;
- ``slide_summary.json`` (the slide's metadata) and ``demo_summary.json`` (what was made).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic

SUMMARY_NAME = "slide_summary.json"
DEMO_SUMMARY_NAME = "demo_summary.json"
GALLERY_NAME = "top_tiles.png"


@dataclass
class DemoOutputs:
    """What ``run_demo`` made: the slide, its result folder, score and every file written."""

    slide_path: Path
    out_dir: Path
    slide_dir: Path
    score: float
    model_name: str
    model_is_demo: bool
    n_tiles: int
    n_cells: int
    files: list[Path]


def run_demo(
    out_dir: str | Path,
    *,
    slide_path: str | Path | None = None,
    top_k: int = 20,
    mask_tiles: int = 5,
    progress: bool = True,
) -> DemoOutputs:
    """Score the sample slide (or ``slide_path``) with the bundled demo model, inspect its
    ``top_k`` tiles and write masks of the best ``mask_tiles``; see the module docstring."""
    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.interpret import inspect_slide
    from napari_imilia.predict.slide import predict_slide
    from napari_imilia.slide import open_slide
    from napari_imilia.trust.paths import absolute_path

    if top_k < 1 or mask_tiles < 0:
        raise ImiliaError(f"top_k must be >= 1 and mask_tiles >= 0; got {top_k}, {mask_tiles}")
    out_dir = absolute_path(out_dir)
    slide_path = absolute_path(slide_path) if slide_path is not None else sample_slide_path()
    with open_slide(slide_path) as slide:
        summary = slide.summary()
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")

    prediction = predict_slide(slide_path, out_dir, progress=progress)
    inspection = inspect_slide(
        slide_path, out_dir, tiles=f"top:{top_k}", results_dir=out_dir, progress=progress
    )
    slide_dir = prediction.out_dir
    files = [out_dir / SUMMARY_NAME]
    files += sorted(p for p in slide_dir.iterdir() if p.is_file())
    files += _write_masks(slide_path, prediction.tiles, slide_dir, mask_tiles)
    outputs = DemoOutputs(
        slide_path=slide_path,
        out_dir=out_dir,
        slide_dir=slide_dir,
        score=float(prediction.score),
        model_name=str(prediction.info["model"]),
        model_is_demo=bool(prediction.info.get("model_is_demo")),
        n_tiles=len(prediction.tiles),
        n_cells=int(inspection.n_cells),
        files=sorted(set(files)),
    )
    record = _summary_record(outputs, prediction.info, top_k)
    files.append(write_text_atomic(out_dir / DEMO_SUMMARY_NAME, json.dumps(record, indent=2)))
    outputs.files = sorted(set(files))
    return outputs


def _write_masks(slide_path: Path, tiles: Any, slide_dir: Path, n_tiles: int) -> list[Path]:
    """Masks of the ``n_tiles`` best tiles into ``slide_dir/masks`` and their gallery PNG."""
    from napari_imilia.interpret import TileBox, inspect_tile, read_tile_at_mpp, select_tiles
    from napari_imilia.interpret.masks import write_inspection_masks, write_overlay_gallery
    from napari_imilia.slide import open_slide

    if n_tiles == 0:
        return []
    best = select_tiles(tiles, f"top:{n_tiles}")  # the same ranking imilia inspect uses
    written: list[Path] = []
    images, inspections = [], []
    with open_slide(slide_path) as slide:
        for _, row in best.iterrows():
            inspection = inspect_tile(slide, row)
            rgb, _, _ = read_tile_at_mpp(slide, TileBox.from_row(row), inspection.mpp)
            written += write_inspection_masks(inspection, slide_dir / "masks")
            images.append(rgb)
            inspections.append(inspection)
    written.append(write_overlay_gallery(slide_dir / GALLERY_NAME, images, inspections))
    return written


def _summary_record(outputs: DemoOutputs, info: dict[str, Any], top_k: int) -> dict[str, Any]:
    return {
        "slide": str(outputs.slide_path),
        "slide_id": outputs.slide_dir.name,
        "score": outputs.score,
        "model": outputs.model_name,
        "model_sha256": info.get("model_sha256"),
        "model_is_demo": outputs.model_is_demo,
        "note": "DEMO model trained on generated slides: not for diagnosis",
        "extractor": info.get("extractor"),
        "n_tiles": outputs.n_tiles,
        "inspected_tiles": top_k,
        "n_cells_in_inspected_tiles": outputs.n_cells,
        "files": [str(path.relative_to(outputs.out_dir)) for path in outputs.files],
    }
