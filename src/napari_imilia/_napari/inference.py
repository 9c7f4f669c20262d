"""What the Slide and model panel's Run button does, without Qt: load, check, reuse or predict.

:func:`run_inference` runs in a napari ``thread_worker``. It loads the MIL model and the
feature extractor (kept in a :class:`ModelCache` between runs), checks that they fit, reuses
the slide's earlier result when the same model, extractor, MPP and tile size made it, and
otherwise calls :func:`napari_imilia.predict.slide.predict_slide`. It never raises: every outcome
(result, user error, cancellation) comes back as an :class:`InferenceOutcome` that the panel
turns into layers or a notification.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_imilia._napari.models import ModelCache
from napari_imilia.errors import CheckpointError, ImiliaError

LOGGER = logging.getLogger(__name__)
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class InferenceRequest:
    """One Run: which slide, where results go, and the panel's model choices.

    ``model_path`` "" is the bundled demo model; ``extractor`` "" is the model's own;
    ``target_mpp`` (µm/px) / ``tile_px`` None are the model's; ``mpp`` overrides the slide's
    level-0 µm/px (None: the slide's metadata).
    """

    slide_path: Path
    results_root: Path
    model_path: str = ""
    extractor: str = ""
    extractor_weights: str = ""
    device: str = "auto"
    target_mpp: float | None = None
    tile_px: int | None = None
    mpp: float | None = None


@dataclass
class InferenceOutcome:
    """How a run ended: ``result`` (a ``PredictionResult``), or ``error``, or ``cancelled``.

    ``cached`` is True when an earlier result was reused without running anything.
    """

    result: Any | None = None
    error: str | None = None
    cancelled: bool = False
    cached: bool = False


@dataclass(frozen=True)
class ModelSummary:
    """A checkpoint's config, read without loading its weights (for the panel's labels)."""

    path: Path
    name: str
    architecture: str
    in_dim: int | None
    extractor: str | None
    demo: bool
    members: int

    def describe(self) -> str:
        demo = "DEMO MODEL (not for diagnosis)\n" if self.demo else ""
        ensemble = f", {self.members} folds" if self.members > 1 else ""
        extractor = self.extractor or "extractor not stated"
        return f"{demo}{self.name} ({self.architecture}{ensemble}; {self.in_dim}-d, {extractor})"


def resolve_model_path(text: str) -> Path:
    """The checkpoint file or folder named by ``text``; "" is the bundled demo model."""
    from napari_imilia.predict.slide import default_model_path

    path = Path(text).expanduser() if text.strip() else default_model_path()
    if not path.exists():
        if not text.strip():
            raise CheckpointError(
                f"the bundled demo model is missing ({path}); choose a model checkpoint "
                "(a .safetensors file or a folder of folds)"
            )
        raise CheckpointError(f"model checkpoint not found: {path}; choose an existing file")
    return path


def read_model_summary(text: str) -> ModelSummary:
    """Read the JSON config(s) of the checkpoint named by ``text`` ("" is the demo model)."""
    from napari_imilia.mil.checkpoint import WEIGHT_SUFFIXES, config_path_for

    path = resolve_model_path(text)
    weights = [path]
    if path.is_dir():
        weights = sorted(
            p
            for p in path.iterdir()
            if p.suffix.lower() in WEIGHT_SUFFIXES and not p.name.startswith(".")
        )
        if not weights:
            raise CheckpointError(f"{path} holds no checkpoint ({', '.join(WEIGHT_SUFFIXES)})")
    config: dict[str, Any] = {}
    config_file = config_path_for(weights[0])
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except ValueError as error:
            raise CheckpointError(f"{config_file} is not valid JSON ({error})") from error
    name = config.get("name") or (path.name if path.is_dir() else path.stem)
    in_dim = config.get("in_dim")
    return ModelSummary(
        path=path,
        name=str(name),
        architecture=str(config.get("architecture") or "architecture from weights"),
        in_dim=None if in_dim is None else int(in_dim),
        extractor=config.get("extractor"),
        demo=bool(config.get("demo", False)),
        members=len(weights),
    )


def run_inference(
    request: InferenceRequest,
    cache: ModelCache,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> InferenceOutcome:
    """Score ``request.slide_path`` (or reuse its matching earlier result); never raises."""
    from napari_imilia.features.extract import ExtractionCancelled

    try:
        return _run(request, cache, progress, cancel)
    except ExtractionCancelled:
        return InferenceOutcome(cancelled=True)
    except ImiliaError as error:
        return InferenceOutcome(error=str(error))
    except Exception as error:  # a bug or an unexpected library error: report, do not crash
        LOGGER.exception("inference failed")
        return InferenceOutcome(error=f"inference failed: {type(error).__name__}: {error}")


def _run(
    request: InferenceRequest,
    cache: ModelCache,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> InferenceOutcome:
    from napari_imilia.predict.slide import check_model_fits_extractor, predict_slide

    model = cache.model(resolve_model_path(request.model_path), request.device)
    name = request.extractor.strip() or model.expected_extractor
    if not name:
        raise ImiliaError(
            f"model {model.name} does not say which extractor made its features; choose the "
            "feature extractor in the panel"
        )
    extractor = cache.extractor(name, request.extractor_weights, request.device)
    check_model_fits_extractor(model, extractor)
    config = dict(getattr(model, "config", {}) or {})
    target_mpp = float(request.target_mpp or config.get("mpp") or extractor.target_mpp)
    tile_px = int(request.tile_px or config.get("tile_px") or extractor.tile_px)
    cached = cached_result(request, model, extractor, target_mpp, tile_px)
    if cached is not None:
        return InferenceOutcome(result=cached, cached=True)
    if cancel is not None and cancel.is_set():
        return InferenceOutcome(cancelled=True)
    result = predict_slide(
        request.slide_path,
        request.results_root,
        model=model,
        extractor=extractor,
        device=request.device,
        mpp=request.mpp,
        target_mpp=target_mpp,
        tile_px=tile_px,
        progress=progress if progress is not None else False,
        cancel=cancel,
    )
    return InferenceOutcome(result=result)


def cached_result(
    request: InferenceRequest, model: Any, extractor: Any, target_mpp: float, tile_px: int
) -> Any | None:
    """The slide's earlier ``PredictionResult`` if this model/extractor/MPP/tile size made it."""
    from napari_imilia.predict.slide import load_prediction
    from napari_imilia.slide import slide_id_for
    from napari_imilia.trust.paths import path_inside

    slide_dir = path_inside(request.results_root, slide_id_for(request.slide_path))
    if not (slide_dir / "slide.json").is_file():
        return None
    try:
        result = load_prediction(slide_dir)
    except (ImiliaError, ValueError, KeyError):
        return None
    return result if result_matches(result.info, model, extractor, target_mpp, tile_px) else None


def result_matches(
    info: dict[str, Any], model: Any, extractor: Any, target_mpp: float, tile_px: int
) -> bool:
    """True when ``slide.json``'s ``info`` was made by exactly this model and extractor setup."""
    try:
        return (
            info.get("model_sha256") == model.sha256
            and str(info.get("extractor")) == extractor.name
            and info.get("extractor_sha256") == extractor.weights_sha256
            and math.isclose(float(info["target_mpp"]), float(target_mpp), abs_tol=1e-9)
            and int(info["tile_px"]) == int(tile_px)
        )
    except (KeyError, TypeError, ValueError):
        return False


class ProgressRate:
    """Tiles done / total, tiles per second and time left, for the panel's progress label.

    The rate counts tiles since the first report, so a cached start does not inflate it.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start: tuple[float, int] | None = None
        self.done = 0
        self.total = 0
        self.tiles_per_s: float | None = None
        self.eta_s: float | None = None

    def update(self, done: int, total: int) -> None:
        now = self._clock()
        self.done, self.total = int(done), int(total)
        if self._start is None:
            self._start = (now, self.done)
            return
        elapsed = now - self._start[0]
        counted = self.done - self._start[1]
        if elapsed > 0 and counted > 0:
            self.tiles_per_s = counted / elapsed
            self.eta_s = max(self.total - self.done, 0) / self.tiles_per_s

    def describe(self) -> str:
        text = f"{self.done} / {self.total} tiles"
        if self.tiles_per_s is not None:
            text += f" · {self.tiles_per_s:.1f} tiles/s"
        if self.eta_s is not None:
            text += f" · ETA {format_seconds(self.eta_s)}"
        return text


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    total = max(round(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
