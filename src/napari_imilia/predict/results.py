"""One slide's result folder ``OUT/<slide_id>/``: writing it, reading it back, and the one
rule that decides an existing result can be reused (:func:`reusable_result`).

:data:`RESULT_FILES` are first written into a hidden staging folder inside the slide's folder
and moved into place only once all of them exist, ``slide.json`` last: a run that fails leaves
the folder as it was (an earlier result stays complete) and no partial file behind.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.mil.channels import normalise_channel_columns
from napari_imilia.predict.settings import PredictSettings, extractor_key, tissue_settings
from napari_imilia.trust.paths import absolute_path

#: The files ``predict_slide`` writes per slide, in the order they are moved into place.
RESULT_FILES: tuple[str, ...] = ("tiles.csv", "heatmap.png", "tiles.geojson", "slide.json")
#: Columns every ``tiles.csv`` has.
TILE_COLUMNS: tuple[str, ...] = ("tile_id", "x", "y", "width", "height", "score")


@dataclass
class PredictionResult:
    """What ``predict_slide`` computed and where it wrote it."""

    slide_id: str
    slide_path: Path
    score: float
    logit: float
    tiles: pd.DataFrame
    info: dict[str, Any]
    out_dir: Path

    @classmethod
    def from_record(
        cls, info: dict[str, Any], tiles: pd.DataFrame, out_dir: Path
    ) -> PredictionResult:
        """The result of ``slide.json``'s ``info`` and ``tiles.csv``'s ``tiles``."""
        return cls(
            slide_id=str(info["slide_id"]),
            slide_path=Path(info["slide"]),
            score=float(info["score"]),
            logit=float(info["logit"]),
            tiles=tiles,
            info=info,
            out_dir=out_dir,
        )

    @property
    def tiles_csv(self) -> Path:
        return self.out_dir / "tiles.csv"


def load_prediction(result_dir: str | Path) -> PredictionResult:
    """Re-open the files ``predict_slide`` wrote for one slide (``out_dir/<slide_id>``)."""
    result_dir = Path(result_dir)
    info_path, tiles_path = result_dir / "slide.json", result_dir / "tiles.csv"
    if not info_path.is_file() or not tiles_path.is_file():
        raise ImiliaError(f"{result_dir} holds no prediction (slide.json and tiles.csv expected)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        tiles = normalise_channel_columns(pd.read_csv(tiles_path, dtype={"tile_id": str}))
        result = PredictionResult.from_record(info, tiles, result_dir)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ImiliaError(
            f"{result_dir}: slide.json or tiles.csv is damaged ({type(error).__name__}: "
            f"{error}); run the prediction again"
        ) from error
    missing = [c for c in TILE_COLUMNS if c not in tiles]
    if missing:
        raise ImiliaError(f"{tiles_path} lacks column(s) {', '.join(missing)}; predict again")
    return result


# ------------------------------------------------------------------ the reuse rule
def reusable_result(
    slide: str | Path, out_dir: str | Path, settings: PredictSettings, since_s: float | None = None
) -> dict[str, Any] | None:
    """The ``slide.json`` of ``slide``'s result in ``out_dir`` when it may be reused for
    ``settings`` (resolved: :meth:`PredictSettings.resolve`), else None.

    Reused only when the result is complete (all :data:`RESULT_FILES`), its ``slide.json`` is
    readable and newer than the slide (and than ``since_s`` epoch seconds when given), it
    is of the same slide file, and it was made with the same model and extractor (and
    weights), ``mpp`` override (or none), ``target_mpp``, ``tile_px``, tiling, protocol,
    minimum tissue fraction and tissue settings. A setting left None in ``settings`` (an
    extractor default not known without loading it) matches any value. Never reused: a
    model built in memory (no sha256) and tiles read from a ``tiles_from`` file (it may have
    changed). Results written by earlier versions are reused when they record all of these.
    """
    from napari_imilia.slide import slide_id_for

    if settings.model_sha256 is None or settings.tiles_from is not None:
        return None
    folder = Path(out_dir) / slide_id_for(slide)
    try:
        if not all((folder / name).is_file() for name in RESULT_FILES):
            return None
        written_s = (folder / "slide.json").stat().st_mtime
        if written_s < Path(slide).stat().st_mtime or (since_s is not None and written_s < since_s):
            return None  # the slide changed since, or an older result
        info = json.loads((folder / "slide.json").read_text(encoding="utf-8"))
        same = _same_slide(info, slide) and _made_with(info, settings)
    except (OSError, ValueError, KeyError, TypeError, ImiliaError):
        return None  # unreadable, or from a version that did not record it: compute again
    return info if same else None


def _same_slide(info: dict[str, Any], slide: str | Path) -> bool:
    """Whether ``info`` is of ``slide`` (a DICOM file stands for its series' folder)."""
    path = absolute_path(slide)
    if path.suffix.lower() == ".dcm" and path.is_file():
        path = path.parent
    return Path(info["slide"]) == path


def _made_with(info: dict[str, Any], settings: PredictSettings) -> bool:
    """Whether ``slide.json``'s ``info`` records the same settings (see :func:`reusable_result`)."""
    overridden = info["mpp_source"] == "override"
    return (
        info["model_sha256"] == settings.model_sha256
        and extractor_key(info["extractor"]) == extractor_key(str(settings.extractor))
        and _same(info["extractor_sha256"], settings.extractor_sha256)
        and overridden == (settings.mpp is not None)
        and _same_number(info["mpp"], settings.mpp)
        and _same_number(info["target_mpp"], settings.target_mpp)
        and _same_number(info["tile_px"], settings.tile_px)
        and info.get("tiling", "grid") == settings.tiling
        and info.get("protocol") == settings.protocol
        and _same_number(info["min_tissue_fraction"], settings.min_tissue_fraction)
        and tissue_settings(info["tissue_params"]) == settings.tissue
    )


def _same(stored: Any, wanted: Any) -> bool:
    """``wanted`` None means "any" (not known before the extractor is loaded)."""
    return wanted is None or stored == wanted


def _same_number(stored: Any, wanted: Any) -> bool:
    return wanted is None or math.isclose(float(stored), float(wanted), rel_tol=1e-9)


# ------------------------------------------------------------------ writing
def write_result(slide: Any, slide_dir: Path, tiles: pd.DataFrame, info: dict) -> Path:
    """Write :data:`RESULT_FILES` into a staging folder, then move them into ``slide_dir``;
    returns ``slide_dir``."""
    created = [p for p in (slide_dir, *slide_dir.parents) if not p.exists()]  # deepest first
    slide_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=slide_dir))
    try:
        _write_files(slide, staging, tiles, info)
        # slide.json marks a complete result: drop the old one first, move the new one last
        (slide_dir / "slide.json").unlink(missing_ok=True)
        for name in RESULT_FILES:
            (staging / name).replace(slide_dir / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # the folders this call made, when still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return slide_dir


def _write_files(slide: Any, folder: Path, tiles: pd.DataFrame, info: dict) -> None:
    from napari_imilia.export import ExportContext, tiles_to_features, write_geojson
    from napari_imilia.predict.colour_scale import reference_scale
    from napari_imilia.predict.heatmap import score_grid, write_heatmap_png

    write_text_atomic(folder / "tiles.csv", tiles.to_csv(index=False, float_format="%.6g"))
    demo = " (DEMO model)" if info["model_is_demo"] else ""
    title = f"{info['slide_id']}: score {info['score']:.4f} — {info['model']}{demo}"
    scale = reference_scale(info, "score")  # the same colours on every slide of the model
    write_heatmap_png(
        folder / "heatmap.png",
        slide.thumbnail(1024),
        score_grid(tiles),
        slide.dimensions,
        title=title,
        vmin=scale.low,
        vmax=scale.high,
        centre=scale.centre,
        label=f"tile score ({scale.source}; 0 = neutral, higher = more inflammation-like)",
    )
    context = ExportContext(
        slide_id=info["slide_id"],
        slide_path=info["slide"],
        model_name=info["model"],
        model_sha256=info["model_sha256"],
        extractor=info["extractor"],
        mpp=info["mpp"],
        tile_px=info["tile_px"],
    )
    write_geojson(folder / "tiles.geojson", tiles_to_features(tiles, context), context)
    write_text_atomic(folder / "slide.json", json.dumps(info, indent=2) + "\n")
