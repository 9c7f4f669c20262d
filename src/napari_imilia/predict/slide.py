"""Whole-slide inflammation prediction: tissue → tiles → features → MIL → result files.

``predict_slide`` is the one call behind ``imilia predict`` and the napari panel. Per slide it
writes, into ``out_dir/<slide_id>/`` (each file atomically):

- ``tiles.csv``: tile_id, x, y, width, height (level-0 px), tissue_fraction, score, rank
  (1 = highest score), and attention when the model has it; multi-channel models add one
  ``score_<channel>`` column per channel and the selected extremes (``channels.py``);
- ``slide.json``: slide score (probability), logit, model name and sha256, extractor, MPPs,
  tile size, tile count, seconds, software version; multi-channel models add each channel's
  polarity (``channels``) and ``extremes_per_channel``;
- ``heatmap.png``: tile scores over the thumbnail;
- ``tiles.geojson``: the tiles as QuPath objects with their scores as measurements.

Features are cached in ``cache_dir`` (default ``out_dir/features``) as ``<slide_id>.h5``.
The four files are first written into a hidden staging folder inside ``out_dir/<slide_id>``
and moved into place only once all of them exist, ``slide.json`` last: a run that fails
leaves the folder as it was (an earlier result stays complete) and no partial file behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia import __version__
from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.mil.channels import channel_columns, channels_info, normalise_channel_columns
from napari_imilia.trust.paths import check_writable_folder, path_inside

ProgressCallback = Callable[[int, int], None]
#: The files ``predict_slide`` writes per slide, in the order they are moved into place.
RESULT_FILES: tuple[str, ...] = ("tiles.csv", "heatmap.png", "tiles.geojson", "slide.json")


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

    @property
    def tiles_csv(self) -> Path:
        return self.out_dir / "tiles.csv"


def default_model_path() -> Path:
    """The demonstration MIL model shipped with the package (see docs/demo_model.md)."""
    return Path(__file__).parents[1] / "data" / "demo_model.safetensors"


def load_prediction(result_dir: str | Path) -> PredictionResult:
    """Re-open the files ``predict_slide`` wrote for one slide (``out_dir/<slide_id>``)."""
    result_dir = Path(result_dir)
    info_path, tiles_path = result_dir / "slide.json", result_dir / "tiles.csv"
    if not info_path.is_file() or not tiles_path.is_file():
        raise ImiliaError(f"{result_dir} holds no prediction (slide.json and tiles.csv expected)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        tiles = normalise_channel_columns(pd.read_csv(tiles_path, dtype={"tile_id": str}))
        result = PredictionResult(
            slide_id=str(info["slide_id"]),
            slide_path=Path(info["slide"]),
            score=float(info["score"]),
            logit=float(info["logit"]),
            tiles=tiles,
            info=info,
            out_dir=result_dir,
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ImiliaError(
            f"{result_dir}: slide.json or tiles.csv is damaged ({type(error).__name__}: "
            f"{error}); run the prediction again"
        ) from error
    missing = [c for c in ("tile_id", "x", "y", "width", "height", "score") if c not in tiles]
    if missing:
        raise ImiliaError(f"{tiles_path} lacks column(s) {', '.join(missing)}; predict again")
    return result


def predict_slide(
    slide_path: str | Path,
    out_dir: str | Path,
    *,
    model: Any | None = None,
    model_path: str | Path | list[str | Path] | None = None,
    extractor: Any | None = None,
    extractor_name: str | None = None,
    extractor_weights: str | Path | None = None,
    device: str = "auto",
    mpp: float | None = None,
    target_mpp: float | None = None,
    tile_px: int | None = None,
    min_tissue_fraction: float = 0.5,
    tissue_params: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool | ProgressCallback = True,
    cancel: threading.Event | None = None,
    slide_backend: str = "auto",
    tiling: str = "grid",
    tiles_from: str | Path | None = None,
    protocol: str | None = None,
) -> PredictionResult:
    """Score one slide and write its result files; see the module docstring.

    ``model``/``extractor`` may be given already loaded (the napari panel keeps them);
    otherwise they are loaded from ``model_path`` (default: the demo model) and
    ``extractor_name`` (default: the extractor the model was trained on). ``mpp`` overrides
    the slide's level-0 µm/px; ``target_mpp`` (µm/px) and ``tile_px`` default to the model's,
    then the extractor's; tiles with less than ``min_tissue_fraction`` (0-1) tissue are
    dropped. ``tissue_params`` go to :func:`~napari_imilia.tiling.tissue.detect_tissue`
    (``saturation_threshold``, ``min_od``, ``remove_pen``, ``min_tissue_area_um2`` (µm²),
    ``fill_holes_um2`` (µm²), ``mask_mpp`` (µm/px)). ``batch_size``: tiles per decoded batch
    and per forward pass of an extractor loaded here (an extractor passed in keeps its own).
    ``num_workers``: tile decoding processes (None: the machine's default beside the
    extractor's device, :func:`~napari_imilia.tiling.feed.default_num_workers`; 0: none).
    ``progress``: True for a tqdm bar (tiles/s, ETA), False, or a callable
    ``progress(done_tiles, total_tiles)``; setting ``cancel`` stops between batches.
    ``slide_backend``: "auto" (chosen from the file) or the library to read the slide with
    ("tiffslide", "wsidicom", "openslide"); slide.json records the format and backend used.
    ``tiling``: ``grid`` (ours) or ``deepzoom`` (IMILIA's openslide DeepZoom tiles at the level
    nearest to ``target_mpp``, tissue-filtered); ``tiles_from``: IMILIA's ``tiles_coords.npy``
    for this slide (DeepZoom level, column, row), implies ``deepzoom``; ``protocol="imilia"``:
    DeepZoom tiles and bags cut / zero-padded to IMILIA's 10,000 rows
    (``napari_imilia.tiling.deepzoom``). Raises ``ImiliaError`` (or a subclass) for anything
    the user can fix.
    """
    from napari_imilia.features.extract import extract_slide_features
    from napari_imilia.features.extractors import create_extractor
    from napari_imilia.mil import load_model
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.feed import warm_up
    from napari_imilia.tiling.grid import make_tile_grid
    from napari_imilia.tiling.tissue import NoTissueError, detect_tissue

    started = time.perf_counter()
    warm_up()  # the tile decoders' fork server imports while models load and tissue is found
    tissue_kwargs = check_tissue_params(tissue_params)
    from napari_imilia.tiling.deepzoom import IMILIA_MAX_TILES, check_tiling

    tiling = check_tiling(tiling, tiles_from, protocol)
    check_writable_folder(out_dir)  # before any model is loaded or feature extracted
    if cache_dir is not None:
        check_writable_folder(cache_dir, what="feature cache folder")
    if model is None:
        model = load_model(model_path or default_model_path(), device=device)
    config = dict(getattr(model, "config", {}) or {})
    if extractor is None:
        name = extractor_name or model.expected_extractor
        if not name:
            raise ImiliaError(
                f"model {model.name} does not say which extractor made its features; "
                "pass --extractor NAME"
            )
        extractor = create_extractor(
            name, weights_path=extractor_weights, device=device, batch_size=batch_size
        )
    check_model_fits_extractor(model, extractor)
    target_mpp = float(target_mpp or config.get("mpp") or extractor.target_mpp)
    tile_px = int(tile_px or config.get("tile_px") or extractor.tile_px)

    with open_slide(slide_path, mpp=mpp, backend=slide_backend) as slide:
        slide_mpp = slide.require_mpp()
        slide_dir = path_inside(out_dir, slide.slide_id)
        tissue = detect_tissue(slide, **tissue_kwargs)
        if tiling == "deepzoom":
            from napari_imilia.tiling.deepzoom import deepzoom_grid, load_tiles_coords

            grid = deepzoom_grid(
                slide,
                coords=load_tiles_coords(tiles_from) if tiles_from else None,
                tissue_mask=tissue,
                target_mpp=target_mpp,
                min_tissue_fraction=min_tissue_fraction,
                tile_px=tile_px,
            )
        else:
            grid = make_tile_grid(
                slide,
                tissue,
                target_mpp=target_mpp,
                tile_px=tile_px,
                min_tissue_fraction=min_tissue_fraction,
            )
        if grid.n_tiles == 0:
            raise NoTissueError(
                f"no tile of {slide.path.name} ({tile_px} px at {target_mpp} µm/px) has at "
                f"least {min_tissue_fraction:.0%} tissue; check the slide or lower "
                "--min-tissue (min_tissue_fraction)"
            )
        bag = extract_slide_features(
            slide,
            grid,
            extractor,
            cache_dir=Path(cache_dir) if cache_dir else Path(out_dir) / "features",
            batch_size=batch_size,
            num_workers=num_workers,
            progress=progress,
            cancel=cancel,
        )
        if protocol == "imilia":  # IMILIA's bags: first 10,000 rows, zero-padded to 10,000
            prediction = model.predict(bag.features, pad_to_tiles=IMILIA_MAX_TILES)
        else:
            prediction = model.predict(bag.features)
        tiles = grid.to_frame()
        tiles["score"] = prediction.tile_scores.astype(np.float64)
        tiles["rank"] = tiles["score"].rank(ascending=False, method="first").astype(int)
        if prediction.attention is not None:
            tiles["attention"] = prediction.attention.astype(np.float64)
        if prediction.channels is not None:
            extra = channel_columns(prediction.channels).set_index(tiles.index)
            tiles = pd.concat([tiles, extra], axis=1)
        info = {
            "slide": str(slide.path),
            "slide_id": slide.slide_id,
            "slide_format": slide.format_name,
            "slide_backend": slide.backend,
            "score": float(prediction.probability),
            "logit": float(prediction.logit),
            "model": model.name,
            "model_sha256": model.sha256,
            "model_is_demo": bool(config.get("demo", False)),
            "extractor": extractor.name,
            "extractor_sha256": extractor.weights_sha256,
            "mpp": slide_mpp,
            "mpp_source": slide.mpp_source,
            "mpp_origin": slide.mpp_origin,
            "target_mpp": target_mpp,
            "tile_px": tile_px,
            "tile_footprint_px": int(tiles["width"].iloc[0]),
            "tiling": tiling,
            "protocol": protocol,
            "min_tissue_fraction": float(min_tissue_fraction),
            "tissue": {
                "saturation_threshold": tissue.saturation_threshold,
                "min_od": tissue.min_od,
                "remove_pen": bool(tissue_kwargs.get("remove_pen", True)),
                "pen_fraction": tissue.pen_fraction,
                "tissue_fraction": tissue.tissue_fraction,
            },
            "tissue_params": tissue_kwargs,  # as asked (None: automatic); a cohort rerun
            # reuses this result only when they are the same
            "n_tiles": len(tiles),
            "seconds": round(time.perf_counter() - started, 3),
            "software": f"napari-imilia {__version__}",
        }
        if prediction.channels is not None:
            info.update(channels_info(prediction.channels))
        _write_outputs(slide, slide_dir, tiles, info)
    return PredictionResult(
        slide_id=info["slide_id"],
        slide_path=Path(info["slide"]),
        score=info["score"],
        logit=info["logit"],
        tiles=tiles,
        info=info,
        out_dir=slide_dir,
    )


TISSUE_PARAMS: tuple[str, ...] = (
    "saturation_threshold",
    "min_od",
    "remove_pen",
    "min_tissue_area_um2",
    "fill_holes_um2",
    "mask_mpp",
)


def check_tissue_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` for ``detect_tissue``, or ``ImiliaError`` naming an unknown or bad entry."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(TISSUE_PARAMS))
    if unknown:
        raise ImiliaError(
            f"unknown tissue parameter(s) {', '.join(unknown)}; known: {', '.join(TISSUE_PARAMS)}"
        )
    saturation = params.get("saturation_threshold")
    if saturation is not None and not 0.0 <= float(saturation) < 1.0:
        raise ImiliaError(
            f"tissue saturation threshold (--tissue-saturation) must be in [0, 1), got {saturation}"
        )
    for name, flag in (
        ("min_od", " (--tissue-min-od)"),
        ("min_tissue_area_um2", ""),
        ("fill_holes_um2", ""),
    ):
        if params.get(name) is not None and float(params[name]) < 0:
            raise ImiliaError(
                f"tissue parameter {name}{flag} must be 0 or more, got {params[name]}"
            )
    return params


def check_model_fits_extractor(model: Any, extractor: Any) -> None:
    """Raise when the model's input dimension or expected extractor disagree with ``extractor``."""
    if model.in_dim != extractor.dim:
        raise ImiliaError(
            f"model {model.name} expects {model.in_dim}-d tile features "
            f"(extractor {model.expected_extractor or 'unknown'}) but extractor {extractor.name} "
            f"gives {extractor.dim}-d features; choose the extractor the model was trained on"
        )
    expected = model.expected_extractor
    if expected and _extractor_key(expected) != _extractor_key(extractor.name):
        raise ImiliaError(
            f"model {model.name} was trained on {expected} features, not {extractor.name}; "
            f"pass --extractor {expected}"
        )


def _extractor_key(name: str) -> str:
    """``H0_mini``, ``bioptimus/h0-mini`` and ``h0-mini`` name the same extractor."""
    return name.strip().lower().rsplit("/", 1)[-1].replace("_", "-")


def _write_outputs(slide: Any, slide_dir: Path, tiles: pd.DataFrame, info: dict) -> None:
    """Write :data:`RESULT_FILES` into a staging folder, then move them into ``slide_dir``."""
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


def _write_files(slide: Any, folder: Path, tiles: pd.DataFrame, info: dict) -> None:
    from napari_imilia.export import ExportContext, tiles_to_features, write_geojson
    from napari_imilia.predict.heatmap import score_grid, write_heatmap_png

    write_text_atomic(folder / "tiles.csv", tiles.to_csv(index=False, float_format="%.6g"))
    demo = " (DEMO model)" if info["model_is_demo"] else ""
    title = f"{info['slide_id']}: score {info['score']:.4f} — {info['model']}{demo}"
    write_heatmap_png(
        folder / "heatmap.png",
        slide.thumbnail(1024),
        score_grid(tiles),
        slide.dimensions,
        title=title,
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
