"""One slide's result folder ``OUT/<slide_id>/``: writing it, reading it back, and the one
rule that decides an existing result can be reused (:func:`reusable_result`).

:data:`RESULT_FILES` are first written into a hidden staging folder inside the slide's folder
and moved into place only once all of them exist, under the slide's write lock
(:mod:`~napari_imilia.predict.lock`), ``slide.json`` last: a run that fails leaves the folder
as it was (an earlier result stays complete) and no partial file behind. ``slide.json`` is the
manifest of that switch: it records the SHA-256 of the files moved in with it (``files``), so
a reader that took ``slide.json`` of one result and ``tiles.csv`` of the next (a ``--force``
run switching them meanwhile, or a run killed mid-switch) sees it and reads again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from napari_imilia.errors import ImiliaError, one_line
from napari_imilia.files import sha256_file, write_json_atomic, write_text_atomic
from napari_imilia.mil.channels import normalise_channel_columns
from napari_imilia.predict.settings import PredictSettings, extractor_key, tissue_settings
from napari_imilia.trust.paths import absolute_path
from napari_imilia.trust.results import read_results_bytes, read_results_json

#: The files ``predict_slide`` writes per slide, in the order they are moved into place.
RESULT_FILES: tuple[str, ...] = ("tiles.csv", "heatmap.png", "tiles.geojson", "slide.json")
#: Columns every ``tiles.csv`` has.
TILE_COLUMNS: tuple[str, ...] = ("tile_id", "x", "y", "width", "height", "score")
#: Reads of a slide's ``slide.json`` + ``tiles.csv`` before a mismatched pair is an error.
READ_ATTEMPTS = 8


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
    """Re-open the files ``predict_slide`` wrote for one slide (``out_dir/<slide_id>``):
    ``slide.json`` and the ``tiles.csv`` it was switched in with (see the module docstring),
    through the results-folder gate (:mod:`napari_imilia.trust.results`: regular files inside
    the folder, within the import limits); ``ImiliaError`` when absent or damaged."""
    result_dir = Path(result_dir)
    info_path, tiles_path = result_dir / "slide.json", result_dir / "tiles.csv"
    if not info_path.is_file() or not tiles_path.is_file():
        raise ImiliaError(f"{result_dir} holds no prediction (slide.json and tiles.csv expected)")
    try:
        info, tiles_bytes = read_matching_pair(result_dir)
        tiles = normalise_channel_columns(
            pd.read_csv(io.BytesIO(tiles_bytes), dtype={"tile_id": str})
        )
        result = PredictionResult.from_record(info, tiles, result_dir)
        if not 0.0 <= result.score <= 1.0 or not math.isfinite(result.logit):
            raise ValueError(f"score {result.score} / logit {result.logit} out of range")
        if not isinstance(info.get("model_is_demo", False), bool):
            raise TypeError("model_is_demo is not true or false")
    except (ImiliaError, OSError, ValueError, KeyError, TypeError, OverflowError) as error:
        raise ImiliaError(
            f"{result_dir}: slide.json or tiles.csv is damaged ({type(error).__name__}: "
            f"{one_line(error)}); run the prediction again"
        ) from error
    missing = [c for c in TILE_COLUMNS if c not in tiles]
    if missing:
        raise ImiliaError(f"{tiles_path} lacks column(s) {', '.join(missing)}; predict again")
    return result


def read_matching_pair(result_dir: Path) -> tuple[dict[str, Any], bytes]:
    """(``slide.json``'s record, ``tiles.csv``'s bytes) of one and the same switch.

    A pair whose ``tiles.csv`` is not the one ``slide.json`` names (a switch under way) is
    read again, :data:`READ_ATTEMPTS` times at most over about a second; then ``ImiliaError``
    (a run was killed mid-switch). Results from versions that did not record ``files``
    are read as they are."""
    for attempt in range(READ_ATTEMPTS):
        info = read_results_json(result_dir / "slide.json", result_dir)
        tiles_bytes = read_results_bytes(result_dir / "tiles.csv", result_dir)
        wanted = _recorded_digest(info, "tiles.csv")
        if wanted is None or hashlib.sha256(tiles_bytes).hexdigest() == wanted:
            return info, tiles_bytes
        time.sleep(0.02 * (attempt + 1))
    raise ImiliaError(
        f"{result_dir}: tiles.csv is not the one slide.json was written with (a run writing "
        "this slide was stopped while switching its files in); run the prediction again"
    )


def _recorded_digest(info: Any, name: str) -> str | None:
    files = info.get("files") if isinstance(info, dict) else None
    digest = files.get(name) if isinstance(files, dict) else None
    return digest if isinstance(digest, str) else None


# ------------------------------------------------------------------ the reuse rule
def reusable_result(
    slide: str | Path, out_dir: str | Path, settings: PredictSettings, since_s: float | None = None
) -> dict[str, Any] | None:
    """The ``slide.json`` of ``slide``'s result in ``out_dir`` when it may be reused for
    ``settings`` (resolved: :meth:`PredictSettings.resolve`), else None.

    Reused only when the result is complete (all :data:`RESULT_FILES`), its ``slide.json`` is
    readable, names the ``tiles.csv`` beside it (:func:`read_matching_pair`) and is newer
    than the slide (and than ``since_s`` epoch seconds when given), it is of the same slide
    file, and it was made with the same model and extractor (and
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
        info, _ = read_matching_pair(folder)  # not a pair a killed run half switched
        same = _same_slide(info, slide) and _made_with(info, settings)
    except (OSError, ValueError, KeyError, TypeError, OverflowError, ImiliaError):
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
class ResultNotWritten(ImiliaError):
    """The slide was stopped (``cancel`` set) before its result was switched into place."""


def write_result(
    slide: Any,
    slide_dir: Path,
    tiles: pd.DataFrame,
    info: dict,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """:func:`draft_result`, then :func:`switch_in`: the result files of ``tiles`` and
    ``info`` in ``slide_dir``; returns the record written to ``slide.json``."""
    with draft_result(slide, tiles, info) as draft:
        return switch_in(draft, slide_dir, cancel)


@dataclass(frozen=True)
class Draft:
    """:data:`RESULT_FILES` drawn in ``folder`` (a scratch folder), ``record`` their
    ``slide.json``."""

    folder: Path
    record: dict[str, Any]


@contextlib.contextmanager
def draft_result(slide: Any, tiles: pd.DataFrame, info: dict) -> Iterator[Draft]:
    """Draw :data:`RESULT_FILES` in a scratch folder of the system's (removed afterwards):
    the slow part (the heatmap), done before any lock is taken. ``slide.json`` gets ``info``
    plus the SHA-256 of the others in ``files`` (the switch's manifest)."""
    with tempfile.TemporaryDirectory(prefix="imilia-result-") as scratch:
        yield Draft(Path(scratch), _write_files(slide, Path(scratch), tiles, info))


def switch_in(
    draft: Draft, slide_dir: Path, cancel: threading.Event | None = None
) -> dict[str, Any]:
    """Under the slide's write lock, copy the drafted files into a staging folder in
    ``slide_dir`` and switch them in, ``slide.json`` last (milliseconds); returns the
    record written to ``slide.json``.

    When ``cancel`` is set before the switch (the run was stopped, its client is gone),
    nothing is switched and :class:`ResultNotWritten` is raised.
    """
    from napari_imilia.predict.lock import slide_write_lock

    created = [p for p in (slide_dir, *slide_dir.parents) if not p.exists()]  # deepest first
    slide_dir.mkdir(parents=True, exist_ok=True)
    try:
        with slide_write_lock(slide_dir):
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=slide_dir))
            try:
                for name in RESULT_FILES:
                    _copy_synced(draft.folder / name, staging / name)
                if cancel is not None and cancel.is_set():
                    raise ResultNotWritten(
                        f"{draft.record['slide_id']}: stopped before its result was switched "
                        "in; the folder holds what it held before"
                    )
                _switch(staging, slide_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for folder in created:  # the folders this call made, when still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return draft.record


def _copy_synced(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def _switch(staging: Path, slide_dir: Path) -> None:
    """Move the staged files in, ``slide.json`` last. A ``slide.json`` without a manifest (an
    earlier version's) is removed first, so a switch cut short never leaves it beside files
    it cannot vouch for."""
    old = slide_dir / "slide.json"
    try:
        if (
            old.is_file()
            and _recorded_digest(read_results_json(old, slide_dir), "tiles.csv") is None
        ):
            old.unlink()
    except (OSError, ValueError, ImiliaError):
        old.unlink(missing_ok=True)
    for name in RESULT_FILES:
        (staging / name).replace(slide_dir / name)


def _write_files(slide: Any, folder: Path, tiles: pd.DataFrame, info: dict) -> dict[str, Any]:
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
    files = {name: sha256_file(folder / name) for name in RESULT_FILES if name != "slide.json"}
    record = {**info, "files": files}
    write_json_atomic(folder / "slide.json", record)  # strict JSON: no NaN / Infinity
    return record
