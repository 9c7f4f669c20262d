"""What the Slide and model panel's Run button does, without Qt: load, check, reuse or predict.

:func:`run_inference` runs in a napari ``thread_worker``. It loads the MIL model and the
feature extractor (kept in a :class:`ModelCache` between runs), checks that they fit, reuses
the slide's earlier result when the one reuse rule allows it
(:func:`napari_imilia.predict.results.reusable_result`: same model, extractor, MPP override,
target MPP, tile size, tiling, protocol and tissue settings) and otherwise calls
:func:`napari_imilia.predict.slide.predict_slide` with the request's
:class:`~napari_imilia.predict.settings.PredictSettings`. It never raises: every outcome
(result, user error, cancellation) comes back as an :class:`InferenceOutcome` that the panel
turns into layers or a notification.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_imilia._napari.models import ModelCache
from napari_imilia.errors import CheckpointError, ImiliaError
from napari_imilia.predict.settings import PredictSettings
from napari_imilia.progress import RunProgress

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

    def settings(self) -> PredictSettings:
        """The settings of this Run (the panel sets no tiling, protocol or tissue option:
        those are the defaults)."""
        return PredictSettings.from_keywords(
            model_path=str(resolve_model_path(self.model_path)),
            extractor_name=self.extractor.strip() or None,
            extractor_weights=self.extractor_weights.strip() or None,
            mpp=self.mpp,
            target_mpp=self.target_mpp,
            tile_px=self.tile_px,
        )


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
    from napari_imilia.mil.checkpoint import WEIGHT_SUFFIXES, read_model_config

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
    config: dict[str, Any] = read_model_config(weights[0]) or {}
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
    from napari_imilia.predict.results import load_prediction, reusable_result
    from napari_imilia.predict.settings import check_model_fits_extractor
    from napari_imilia.predict.slide import predict_slide
    from napari_imilia.slide import slide_id_for
    from napari_imilia.trust.paths import path_inside

    settings = request.settings()
    model = cache.model(Path(str(settings.model_path)), request.device)
    extractor = cache.extractor(
        settings.extractor_for(model), request.extractor_weights, request.device
    )
    check_model_fits_extractor(model, extractor)
    settings = settings.resolve(model, extractor)
    if reusable_result(request.slide_path, request.results_root, settings) is not None:
        folder = path_inside(request.results_root, slide_id_for(request.slide_path))
        try:
            return InferenceOutcome(result=load_prediction(folder), cached=True)
        except ImiliaError:  # tiles.csv damaged since: compute it again
            pass
    if cancel is not None and cancel.is_set():
        return InferenceOutcome(cancelled=True)
    result = predict_slide(
        request.slide_path,
        request.results_root,
        settings=settings,
        model=model,
        extractor=extractor,
        device=request.device,
        progress=progress if progress is not None else False,
        cancel=cancel,
    )
    return InferenceOutcome(result=result)


class ProgressRate:
    """Tiles done / total, tiles per second and time left, for the panel's progress label:
    a :class:`~napari_imilia.progress.RunProgress` of tiles made at each report.

    The rate counts tiles since the first report, so a cached start does not inflate it.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start: tuple[float, int] | None = None
        self.progress = RunProgress(0, unit="tiles")

    def update(self, done: int, total: int) -> None:
        now = self._clock()
        if self._start is None:
            self._start = (now, int(done))
        started_s, first_done = self._start
        self.progress = RunProgress(
            int(total), int(done), reused=first_done, elapsed_s=now - started_s, unit="tiles"
        )

    @property
    def done(self) -> int:
        return self.progress.done

    @property
    def total(self) -> int:
        return self.progress.total

    @property
    def tiles_per_s(self) -> float | None:
        return self.progress.per_s

    @property
    def eta_s(self) -> float | None:
        return self.progress.eta_s

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
