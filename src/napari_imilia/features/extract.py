"""Whole-slide tile features, cached per slide in ``<cache_dir>/<slide_id>.h5``.

A cache file is reused only when every key matches: extractor name and weights hash, target
MPP, tile size, tiling hash (:data:`~napari_imilia.features.cache.CACHE_KEY_ATTRS`) and the
slide's quick hash (``slide_quick_hash``); otherwise features are recomputed and the file is
rewritten atomically, so a cancelled or failed run leaves the previous file (or none).
Tiles decode in worker processes (:class:`~napari_imilia.tiling.feed.TileFeed`) while the
extractor embeds the previous batch; the extractor handles its device and autocast. By
default the decode processes take the cores the extractor does not need
(:func:`~napari_imilia.tiling.feed.default_decode_workers`): all but one next to a GPU extractor,
whose batches then arrive in pinned memory; a quarter next to a CPU extractor, whose torch
intra-op threads are lowered meanwhile so that decoding and the model share the cores
without oversubscribing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from napari_imilia.errors import ImiliaError
from napari_imilia.features.cache import (
    FeatureBag,
    cache_matches,
    read_features,
    write_features,
)
from napari_imilia.slide import Slide
from napari_imilia.tiling.feed import TileFeed, default_decode_workers, torch_threads_beside
from napari_imilia.tiling.grid import TileGrid
from napari_imilia.tiling.tissue import NoTissueError

ProgressCallback = Callable[[int, int], None]


class TileEmbedder(Protocol):
    """What :func:`extract_slide_features` needs from a feature extractor."""

    name: str
    dim: int
    weights_sha256: str | None

    def embed(self, tiles_uint8: np.ndarray) -> np.ndarray: ...


class ExtractionCancelled(ImiliaError):
    """Feature extraction was stopped through its ``cancel`` event; nothing was written."""


def feature_cache_path(cache_dir: str | Path, slide: Slide) -> Path:
    """``<cache_dir>/<slide_id>.h5`` (``ImiliaError`` if that would leave ``cache_dir``)."""
    from napari_imilia.trust.paths import path_inside

    return path_inside(cache_dir, f"{slide.slide_id}.h5")


def feature_attrs(slide: Slide, grid: TileGrid, extractor: TileEmbedder) -> dict[str, Any]:
    """Attributes stored with the features: the cache keys plus descriptive values."""
    return {
        "extractor": extractor.name,
        "extractor_weights_sha256": extractor.weights_sha256,
        "target_mpp": float(grid.target_mpp),
        "tile_px": int(grid.tile_px),
        "tiling_sha256": grid.tiling_sha256,
        "slide_quick_hash": slide.quick_hash(),
        "slide_id": slide.slide_id,
        "slide_mpp": float(grid.slide_mpp),
        "tile_footprint_px": int(grid.footprint_px),
        "read_level": int(grid.read_level),
    }


def load_cached_features(path: Path, attrs: dict[str, Any], grid: TileGrid) -> FeatureBag | None:
    """The cached bag at ``path`` when all its keys match ``attrs``, else None.

    A file whose keys match but which is malformed raises ``FeatureCacheError``.
    """
    if not cache_matches(path, attrs):
        return None
    bag = read_features(path)
    if bag.attrs.get("slide_quick_hash") != attrs["slide_quick_hash"]:
        return None
    if not np.array_equal(bag.coords, grid.coords):
        return None
    return bag


def extract_slide_features(
    slide: Slide,
    grid: TileGrid,
    extractor: TileEmbedder,
    *,
    cache_dir: Path | None,
    batch_size: int = 64,
    decode_workers: int | None = None,
    progress: ProgressCallback | bool = True,
    cancel: threading.Event | None = None,
) -> FeatureBag:
    """Features (N x D float32) of every tile of ``grid``, in grid order, with level-0 coords.

    Reuses ``<cache_dir>/<slide_id>.h5`` when it matches (see the module docstring) and writes
    it otherwise; ``cache_dir=None`` disables the cache. ``progress``: True for a tqdm bar,
    False for none, or a callable ``progress(done_tiles, total_tiles)``. Setting ``cancel``
    stops between batches with :class:`ExtractionCancelled` and writes nothing.
    """
    slide.require_mpp()
    if grid.n_tiles == 0:
        raise NoTissueError(
            f"no tissue tiles in {slide.path.name} at {grid.target_mpp} µm/px and "
            f"{grid.tile_px} px tiles; check the slide or lower the minimum tissue fraction"
        )
    attrs = feature_attrs(slide, grid, extractor)
    path = feature_cache_path(cache_dir, slide) if cache_dir is not None else None
    if path is not None:
        cached = load_cached_features(path, attrs, grid)
        if cached is not None:
            _report(progress, grid.n_tiles, grid.n_tiles, slide.slide_id, cached=True)
            return cached

    features = _embed_grid(
        slide,
        grid,
        extractor,
        batch_size=batch_size,
        decode_workers=decode_workers,
        progress=progress,
        cancel=cancel,
    )
    if path is not None:
        write_features(path, features, grid.coords, attrs)
    stored = {**attrs, "n_tiles": grid.n_tiles, "feature_dim": int(features.shape[1])}
    return FeatureBag(features=features, coords=grid.coords, attrs=stored)


def _embed_grid(
    slide: Slide,
    grid: TileGrid,
    extractor: TileEmbedder,
    *,
    batch_size: int,
    decode_workers: int | None,
    progress: ProgressCallback | bool,
    cancel: threading.Event | None,
) -> np.ndarray:
    total = grid.n_tiles
    features = np.empty((total, int(extractor.dim)), dtype=np.float32)
    bar = _progress_bar(progress, total, slide.slide_id)
    if callable(progress):
        progress(0, total)
    done = 0
    device = str(getattr(extractor, "device", "cpu"))
    workers = default_decode_workers(device) if decode_workers is None else int(decode_workers)
    on_gpu = device.startswith("cuda")
    feed = TileFeed(slide, grid, batch_size=batch_size, decode_workers=workers, pin_memory=on_gpu)
    restore_threads = None if on_gpu else _share_cores_with(feed.decode_workers)
    try:
        with feed:
            for batch in feed:
                _check_cancel(cancel, slide, done, total)
                embedded = np.asarray(extractor.embed(batch.tiles), dtype=np.float32)
                if embedded.shape != (len(batch), features.shape[1]):
                    raise ImiliaError(
                        f"extractor {extractor.name} returned features of shape "
                        f"{embedded.shape} for {len(batch)} tiles; expected "
                        f"({len(batch)}, {features.shape[1]})"
                    )
                features[batch.indices] = embedded
                done += len(batch)
                if bar is not None:
                    bar.update(len(batch))
                elif callable(progress):
                    progress(done, total)
        _check_cancel(cancel, slide, done, total)
    finally:
        if bar is not None:
            bar.close()
        if restore_threads is not None:
            restore_threads()
    return features


def _share_cores_with(decode_workers: int) -> Callable[[], None] | None:
    """Lower torch's intra-op threads beside ``decode_workers`` decode processes; returns what
    restores them (None when nothing changed)."""
    if decode_workers == 0:
        return None
    import torch

    before = torch.get_num_threads()
    wanted = min(before, torch_threads_beside(decode_workers))
    if wanted == before:
        return None
    torch.set_num_threads(wanted)
    return lambda: torch.set_num_threads(before)


def _check_cancel(cancel: threading.Event | None, slide: Slide, done: int, total: int) -> None:
    if cancel is not None and cancel.is_set():
        raise ExtractionCancelled(
            f"feature extraction for {slide.path.name} was cancelled after {done} of {total} "
            "tiles; no feature file was written"
        )


def _progress_bar(progress: ProgressCallback | bool, total: int, slide_id: str) -> Any:
    if progress is not True:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", desc=f"features {slide_id}", dynamic_ncols=True)


def _report(
    progress: ProgressCallback | bool, done: int, total: int, slide_id: str, *, cached: bool
) -> None:
    if callable(progress):
        progress(done, total)
    elif progress is True and cached:
        from tqdm.auto import tqdm

        tqdm.write(f"features {slide_id}: {total} tiles from cache")
