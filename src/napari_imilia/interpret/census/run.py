"""``census_slide``: every cell of every tissue tile of one slide, resumable.

The steps: open the slide, plan the tiles (``plan.census_tiles``), reuse a finished census made
with the same settings of the same file (``plan.reusable_census``), keep the parts a killed
or cancelled run left (``parts.CensusParts``), inspect the other tiles with the one tile
inspector (``pool.iter_tile_records`` over ``tile.inspect_tile``: worker processes, each
opening the slide and loading the backends once) and write each part as soon as its tiles
are in, then make the census files from the parts (``finish.finish_census``). Memory holds
one part and the batches the workers have finished ahead of it, never all the cells.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_imilia.errors import ImiliaError
from napari_imilia.export.context import ExportContext
from napari_imilia.interpret.census.finish import finish_census
from napari_imilia.interpret.census.parts import PART_TILES, PARTS_DIR, CensusParts
from napari_imilia.interpret.census.plan import (
    CensusSettings,
    census_tiles,
    plan_key,
    reusable_census,
    slide_identity,
)
from napari_imilia.interpret.census.record import CensusTile, census_tile
from napari_imilia.progress import RunProgress
from napari_imilia.trust.paths import check_writable_folder, path_inside

CENSUS_DIR = "census"
ProgressCallback = Callable[[RunProgress], None]


class CensusCancelled(ImiliaError):
    """A census stopped on request; its finished parts are kept for the next run."""


@dataclass
class CensusResult:
    """A finished census: its folder (``OUT/<slide_id>/census``) and ``census.json``."""

    slide_id: str
    folder: Path
    info: dict[str, Any]
    reused: bool
    seconds: float

    @property
    def n_cells(self) -> int:
        return int(self.info.get("n_cells", 0))

    @property
    def n_tiles(self) -> int:
        return int(self.info.get("n_tiles", 0))


def census_dir(out_dir: str | os.PathLike[str], slide_id: str) -> Path:
    """``OUT/<slide_id>/census`` (the slide id kept inside ``out_dir``)."""
    return path_inside(Path(out_dir), slide_id) / CENSUS_DIR


def census_slide(
    slide_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    settings: CensusSettings | None = None,
    *,
    workers: int | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> CensusResult:
    """Census of one slide into ``out_dir/<slide_id>/census/`` (files: ``finish``).

    ``workers``: processes (default: all cores for the weight-free backends, one for deep
    models). ``force`` recomputes a reusable census (and drops kept parts). ``progress``
    gets a :class:`~napari_imilia.progress.RunProgress` in tiles after each part (tiles kept
    from an earlier run count as ``reused``); setting ``cancel`` stops between batches with
    :class:`CensusCancelled`, keeping the parts written. ``ImiliaError`` for what a user
    can fix.
    """
    from napari_imilia.slide import open_slide

    started = time.perf_counter()
    settings = settings or CensusSettings()
    check_writable_folder(out_dir)
    identity = slide_identity(slide_path)
    with open_slide(slide_path, mpp=settings.mpp) as slide:
        slide.require_mpp()
        folder = census_dir(out_dir, slide.slide_id)
        if not force and reusable_census(folder, settings, identity):
            import json

            info = json.loads((folder / "census.json").read_text(encoding="utf-8"))
            return CensusResult(slide.slide_id, folder, info, True, time.perf_counter() - started)
        tiles = census_tiles(slide, settings)
        ids = tiles["tile_id"].astype(str).tolist()
        record = {
            "slide_id": slide.slide_id,
            "slide_identity": identity,
            "mpp": slide.require_mpp(),
            "settings": settings.record(),
        }
        if force:
            shutil.rmtree(folder / PARTS_DIR, ignore_errors=True)
        parts = CensusParts(folder, plan_key(settings, identity, ids), record, tiles)
        _run_parts(slide, parts, settings, workers, progress, cancel)
        ctx = ExportContext(
            slide_id=slide.slide_id,
            slide_path=str(slide.path),
            model_name="",
            model_sha256="",
            extractor="",
            mpp=slide.require_mpp(),
            tile_px=settings.tile_px,
        )
        info = finish_census(folder, parts, ctx, record)
        parts.remove()
    return CensusResult(slide.slide_id, folder, info, False, time.perf_counter() - started)


def _run_parts(
    slide: Any,
    parts: CensusParts,
    settings: CensusSettings,
    workers: int | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> None:
    """Inspect the tiles of the missing parts, writing each part as it completes."""
    from napari_imilia.interpret.pool import iter_tile_records

    done = set(parts.done())
    missing = [i for i in range(parts.n_parts) if i not in done]
    total = len(parts.tiles)
    kept = sum(len(parts.rows(i)) for i in done)
    clock = time.monotonic()

    def report(finished: int, stopped: bool = False) -> None:
        if progress is not None:
            elapsed = time.monotonic() - clock
            progress(RunProgress(total, finished, 0, kept, elapsed, stopped, unit="tiles"))

    report(kept)
    if not missing:
        return
    todo = [row for i in missing for row in parts.rows(i).to_dict("records")]
    finished, pending = kept, list(missing)
    buffer: list[CensusTile] = []
    try:
        for batch in iter_tile_records(
            slide, todo, settings.inspect, workers=workers, cancel=cancel, record=census_tile
        ):
            buffer += batch
            while pending and len(buffer) >= len(parts.rows(pending[0])):
                size = len(parts.rows(pending[0]))
                parts.write(pending.pop(0), buffer[:size])
                buffer, finished = buffer[size:], finished + size
                report(finished)
    except ImiliaError as error:
        if cancel is not None and cancel.is_set():
            report(finished, stopped=True)
            raise CensusCancelled(
                f"census of {slide.slide_id} cancelled after {finished} of {total} tiles; the "
                f"finished parts ({PART_TILES} tiles each) are kept: run it again to go on"
            ) from error
        raise
