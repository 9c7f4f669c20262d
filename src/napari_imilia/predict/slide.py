"""Whole-slide inflammation prediction: slide → tissue → tiles → features → MIL → files.

``predict_slide`` is the one call behind ``imilia predict``, cohorts and the napari panel;
it reads top to bottom as those steps. Per slide it writes, into ``out_dir/<slide_id>/``
(:mod:`napari_imilia.predict.results`, atomically, ``slide.json`` last):

- ``tiles.csv``: tile_id, x, y, width, height (level-0 px), tissue_fraction, score, rank
  (1 = highest score), and attention when the model has it; multi-channel models add one
  ``score_<channel>`` column per channel and the selected extremes (``mil/channels.py``);
- ``slide.json``: slide score (probability), logit, the settings that made it
  (:class:`~napari_imilia.predict.settings.PredictSettings`: model sha256, extractor, MPPs,
  tile size, tiling, tissue), tile count, seconds, software version; multi-channel models
  add each channel's polarity (``channels``) and ``extremes_per_channel``; the 1st and 99th
  percentile of each tile value (``tile_value_ranges``) and the model's reference colour
  scales (``colour_scale``), so heatmaps colour every slide alike (``colour_scale.py``);
- ``heatmap.png``: tile scores over the thumbnail;
- ``tiles.geojson``: the tiles as QuPath objects with their scores as measurements.

Features are cached in ``cache_dir`` (default ``out_dir/features``) as ``<slide_id>.h5``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_imilia import __version__
from napari_imilia.mil.channels import channel_columns, channels_info
from napari_imilia.predict.colour_scale import (
    RANGES_KEY,
    SCALE_KEY,
    model_reference,
    value_ranges,
)
from napari_imilia.predict.results import (
    RESULT_FILES,
    PredictionResult,
    draft_result,
    load_prediction,
    switch_in,
)
from napari_imilia.predict.settings import (
    SETTING_KEYWORDS,
    PredictSettings,
    check_model_fits_extractor,
    check_tissue_params,
    keyword_alias,
    settings_from,
)
from napari_imilia.trust.paths import check_writable_folder, path_inside

__all__ = [
    "RESULT_FILES",
    "PredictSettings",
    "PredictionResult",
    "check_model_fits_extractor",
    "check_tissue_params",
    "default_model_path",
    "load_mil_model",
    "load_models",
    "load_prediction",
    "predict_slide",
]

ProgressCallback = Callable[[int, int], None]


def default_model_path() -> Path:
    """The demonstration MIL model shipped with the package (see docs/demo_model.md)."""
    return Path(__file__).parents[1] / "data" / "demo_model.safetensors"


def predict_slide(
    slide_path: str | Path,
    out_dir: str | Path,
    *,
    settings: PredictSettings | None = None,
    model: Any | None = None,
    extractor: Any | None = None,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    decode_workers: int | None = None,
    progress: bool | ProgressCallback = True,
    cancel: threading.Event | None = None,
    slide_backend: str = "auto",
    model_path: str | Path | list[str | Path] | None = None,
    extractor_name: str | None = None,
    extractor_weights: str | Path | None = None,
    mpp: float | None = None,
    target_mpp: float | None = None,
    tile_px: int | None = None,
    min_tissue_fraction: float | None = None,
    tissue_params: dict[str, Any] | None = None,
    tiling: str | None = None,
    tiles_from: str | Path | None = None,
    protocol: str | None = None,
    num_workers: int | None = None,
    hold_run_lock: bool = True,
    lock_wait_s: float = 0.0,
) -> PredictionResult:
    """Score one slide and write its result files; see the module docstring.

    ``settings`` decide the result; instead of it, the keywords of
    :meth:`~napari_imilia.predict.settings.PredictSettings.from_keywords` may be given
    (``model_path``, ``extractor_name``, ``extractor_weights``, ``mpp``, ``target_mpp``,
    ``tile_px``, ``min_tissue_fraction``, ``tissue_params``, ``tiling``, ``tiles_from``,
    ``protocol``: documented there). ``model``/``extractor`` may be given
    already loaded (the napari panel keeps them). ``batch_size``: tiles per decoded batch
    and per forward pass of an extractor loaded here. ``decode_workers`` (old name
    ``num_workers``): tile decoding processes (None: the machine's default beside the
    extractor's device, :func:`~napari_imilia.tiling.feed.default_decode_workers`; 0: none).
    ``progress``: True for a tqdm bar (tiles/s, ETA), False, or a callable
    ``progress(done_tiles, total_tiles)``; setting ``cancel`` stops between batches, and
    before the result is switched in. ``out_dir``'s run lock (:mod:`~napari_imilia.predict.lock`)
    is held while the files are switched in, waiting ``lock_wait_s`` seconds at most for
    another run writing there (then ``FolderBusyError``; the features stay cached);
    ``hold_run_lock=False`` when the caller holds it (``predict_cohort`` for its slides).
    ``slide_backend``: "auto" (chosen from the file), "tiffslide", "wsidicom" or
    "openslide". Raises ``ImiliaError`` (or a subclass) for anything the user can fix.
    """
    from napari_imilia.tiling.feed import warm_up

    started = time.perf_counter()
    warm_up()  # the tile decoders' fork server imports while models load and tissue is found
    # the setting keywords (model_path ... protocol), as given: the settings they stand for
    asked = {name: value for name, value in locals().items() if name in SETTING_KEYWORDS}
    settings = settings_from(settings, asked)
    decode_workers = keyword_alias(decode_workers, num_workers, "num_workers", "decode_workers")
    cache = check_output_folders(out_dir, cache_dir)  # before any model is loaded
    model, extractor = load_models(
        settings, model=model, extractor=extractor, device=device, batch_size=batch_size
    )
    settings = settings.resolve(model, extractor)
    lock_wait = lock_wait_s if hold_run_lock else None
    steps = _Steps(batch_size, decode_workers, progress, cancel, started, lock_wait)
    return _score_slide_file(
        slide_path, out_dir, cache, settings, model, extractor, steps, slide_backend
    )


@dataclass(frozen=True)
class _Steps:
    """How ``predict_slide``'s steps run: feature batches, decoders, progress, cancel, start,
    and how long to wait for ``out_dir``'s run lock (None: the caller holds it)."""

    batch_size: int
    decode_workers: int | None
    progress: bool | ProgressCallback
    cancel: threading.Event | None
    started: float
    lock_wait_s: float | None


def _score_slide_file(
    slide_path: str | Path,
    out_dir: str | Path,
    cache: Path,
    settings: PredictSettings,
    model: Any,
    extractor: Any,
    steps: _Steps,
    slide_backend: str,
) -> PredictionResult:
    """Open the slide, find tissue and tiles, extract features, score, write the files."""
    from napari_imilia.features.extract import extract_slide_features
    from napari_imilia.slide import open_slide

    with open_slide(slide_path, mpp=settings.mpp, backend=slide_backend) as slide:
        slide.require_mpp()
        slide_dir = path_inside(out_dir, slide.slide_id)
        tissue = find_tissue(slide, settings)
        grid = tile_slide(slide, tissue, settings)
        bag = extract_slide_features(
            slide,
            grid,
            extractor,
            cache_dir=cache,
            batch_size=steps.batch_size,
            decode_workers=steps.decode_workers,
            progress=steps.progress,
            cancel=steps.cancel,
        )
        prediction = score_slide(model, bag.features, settings)
        tiles = tile_table(grid, prediction)
        info = slide_record(slide, settings, model, tissue, prediction, tiles, steps.started)
        with draft_result(slide, tiles, info) as draft, _run_lock(out_dir, steps.lock_wait_s):
            info = switch_in(draft, slide_dir, cancel=steps.cancel)
    return PredictionResult.from_record(info, tiles, slide_dir)


def _run_lock(out_dir: str | Path, wait_s: float | None) -> Any:
    """``out_dir``'s run lock, or nothing when the caller holds it (``wait_s`` None)."""
    from napari_imilia.predict.lock import run_lock

    return contextlib.nullcontext() if wait_s is None else run_lock(out_dir, wait_s=wait_s)


def check_output_folders(out_dir: str | Path, cache_dir: str | Path | None) -> Path:
    """The feature cache folder (default ``out_dir/features``), after checking that files
    can be written into it and into ``out_dir`` (``ImiliaError`` otherwise)."""
    check_writable_folder(out_dir)
    if cache_dir is None:
        return Path(out_dir) / "features"
    check_writable_folder(cache_dir, what="feature cache folder")
    return Path(cache_dir)


def load_models(
    settings: PredictSettings,
    *,
    model: Any | None = None,
    extractor: Any | None = None,
    device: str = "auto",
    batch_size: int = 32,
) -> tuple[Any, Any]:
    """(model, extractor): those given, else loaded from ``settings`` (the demo model when
    it names none; the extractor the model was trained on when it names none), checked to
    fit each other."""
    from napari_imilia.features.extractors import create_extractor

    if model is None:
        model = load_mil_model(settings, device)
    if extractor is None:
        extractor = create_extractor(
            settings.extractor_for(model),
            weights_path=settings.extractor_weights,
            device=device,
            batch_size=batch_size,
        )
    check_model_fits_extractor(model, extractor)
    return model, extractor


def load_mil_model(settings: PredictSettings, device: str = "auto") -> Any:
    """The MIL model ``settings`` name (the bundled demo model when none; several paths: an
    ensemble), on ``device``."""
    from napari_imilia.mil import load_model

    source = settings.model_path or default_model_path()
    return load_model(list(source) if isinstance(source, tuple) else source, device=device)


def find_tissue(slide: Any, settings: PredictSettings) -> Any:
    """The slide's tissue mask with the settings' tissue parameters."""
    from napari_imilia.tiling.tissue import detect_tissue

    return detect_tissue(slide, **settings.tissue_params)


def tile_slide(slide: Any, tissue: Any, settings: PredictSettings) -> Any:
    """The tiles to score: ``settings.tile_px`` px at ``settings.target_mpp`` µm/px with at
    least ``min_tissue_fraction`` tissue, on our grid or IMILIA's DeepZoom tiles."""
    if settings.tiling == "deepzoom":
        from napari_imilia.tiling.deepzoom import deepzoom_grid, load_tiles_coords

        grid = deepzoom_grid(
            slide,
            coords=load_tiles_coords(settings.tiles_from) if settings.tiles_from else None,
            tissue_mask=tissue,
            target_mpp=settings.target_mpp,
            min_tissue_fraction=settings.min_tissue_fraction,
            tile_px=settings.tile_px,
        )
    else:
        from napari_imilia.tiling.grid import make_tile_grid

        grid = make_tile_grid(
            slide,
            tissue,
            target_mpp=settings.target_mpp,
            tile_px=settings.tile_px,
            min_tissue_fraction=settings.min_tissue_fraction,
        )
    from napari_imilia.tiling.grid import require_tiles

    return require_tiles(
        grid,
        slide,
        tile_px=settings.tile_px,
        target_mpp=settings.target_mpp,
        min_tissue_fraction=settings.min_tissue_fraction,
    )


def score_slide(model: Any, features: np.ndarray, settings: PredictSettings) -> Any:
    """The MIL model's prediction for the slide's tile features (N x D)."""
    if settings.protocol == "imilia":  # IMILIA's bags: first 10,000 rows, zero-padded
        from napari_imilia.tiling.deepzoom import IMILIA_MAX_TILES

        return model.predict(features, pad_to_tiles=IMILIA_MAX_TILES)
    return model.predict(features)


def tile_table(grid: Any, prediction: Any) -> pd.DataFrame:
    """``tiles.csv``: the grid's tiles with score, rank (1 = highest), attention and the
    channel columns of a multi-channel model."""
    tiles = grid.to_frame()
    tiles["score"] = prediction.tile_scores.astype(np.float64)
    tiles["rank"] = tiles["score"].rank(ascending=False, method="first").astype(int)
    if prediction.attention is not None:
        tiles["attention"] = prediction.attention.astype(np.float64)
    if prediction.channels is not None:
        extra = channel_columns(prediction.channels).set_index(tiles.index)
        tiles = pd.concat([tiles, extra], axis=1)
    return tiles


def slide_record(
    slide: Any,
    settings: PredictSettings,
    model: Any,
    tissue: Any,
    prediction: Any,
    tiles: pd.DataFrame,
    started: float,
) -> dict[str, Any]:
    """``slide.json``: the slide, its score, the (resolved) settings and what was found."""
    info = {
        "slide": str(slide.path),
        "slide_id": slide.slide_id,
        "slide_format": slide.format_name,
        "slide_backend": slide.backend,
        "score": float(prediction.probability),
        "logit": float(prediction.logit),
        "model": model.name,
        **settings.record(),
        "mpp": slide.require_mpp(),
        "mpp_source": slide.mpp_source,
        "mpp_origin": slide.mpp_origin,
        "tile_footprint_px": int(tiles["width"].iloc[0]),
        "tissue": {
            "saturation_threshold": tissue.saturation_threshold,
            "min_od": tissue.min_od,
            "remove_pen": bool(settings.tissue_params.get("remove_pen", True)),
            "pen_fraction": tissue.pen_fraction,
            "tissue_fraction": tissue.tissue_fraction,
        },
        "n_tiles": len(tiles),
        "seconds": round(time.perf_counter() - started, 3),
        "software": f"napari-imilia {__version__}",
    }
    if prediction.channels is not None:
        info.update(channels_info(prediction.channels))
    # colours that mean the same on every slide (predict.colour_scale)
    info[RANGES_KEY] = value_ranges(tiles)
    info[SCALE_KEY] = model_reference(getattr(model, "config", None), tiles)
    return info
