"""Tile feature extractors, created by name and loaded from local files only.

>>> from napari_imilia.features.extractors import create_extractor, list_extractors
>>> [name for name, _ in list_extractors()][:2]
['h0-mini', 'h-optimus-0']
>>> extractor = create_extractor("imilia-stain-stats", device="cpu")  # no weights needed
>>> extractor.dim, extractor.tile_px, extractor.target_mpp
(64, 224, 0.5)

ViT extractors need ``weights_path`` (the CLI's ``--extractor-weights``); nothing is ever
downloaded. See docs/extractors.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from napari_imilia.errors import ImiliaError
from napari_imilia.features.extractors.base import Extractor
from napari_imilia.features.extractors.builtin import FEATURE_NAMES, StainStatsExtractor
from napari_imilia.features.extractors.foundation import (
    FOUNDATION_SPECS,
    FoundationSpec,
    ViTExtractor,
    missing_weights_message,
)

#: ``factory(weights_path, device, batch_size) -> Extractor``
ExtractorFactory = Callable[[str | Path | None, str | torch.device, int], Extractor]


@dataclass(frozen=True)
class _Entry:
    description: str
    factory: ExtractorFactory


_REGISTRY: dict[str, _Entry] = {}


def register_extractor(
    name: str, description: str, factory: ExtractorFactory, *, overwrite: bool = False
) -> None:
    """Add an extractor ``factory(weights_path, device, batch_size)`` under ``name``."""
    key = _normalise(name)
    if key in _REGISTRY and not overwrite:
        raise ImiliaError(f"an extractor named {key!r} is already registered")
    _REGISTRY[key] = _Entry(description, factory)


def unregister_extractor(name: str) -> None:
    """Remove ``name`` from the registry (no error when absent)."""
    _REGISTRY.pop(_normalise(name), None)


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def list_extractors() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered extractor, in registration order."""
    return [(name, entry.description) for name, entry in _REGISTRY.items()]


def create_extractor(
    name: str,
    weights_path: str | Path | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 32,
) -> Extractor:
    """The extractor registered as ``name``, with its weights read from ``weights_path``.

    ``device`` is ``auto``/``cpu``/``cuda[:N]``; ``batch_size`` is tiles per forward pass.
    Raises ``ImiliaError`` for an unknown name and ``CheckpointError`` for missing, unsafe or
    mismatched weights.
    """
    key = _normalise(name)
    entry = _REGISTRY.get(key)
    if entry is None:
        known = ", ".join(_REGISTRY)
        raise ImiliaError(f"unknown extractor {name!r}; choose one of: {known}")
    return entry.factory(weights_path, device, batch_size)


def _vit_factory(spec: FoundationSpec) -> ExtractorFactory:
    def factory(
        weights_path: str | Path | None, device: str | torch.device, batch_size: int
    ) -> Extractor:
        return ViTExtractor(spec, weights_path, device=device, batch_size=batch_size)

    return factory


def _builtin_factory(
    weights_path: str | Path | None, device: str | torch.device, batch_size: int
) -> Extractor:
    if weights_path is not None and str(weights_path) != "":
        raise ImiliaError(
            f"extractor imilia-stain-stats takes no weights file, but {weights_path} was given; "
            "drop --extractor-weights or choose a ViT extractor"
        )
    return StainStatsExtractor(batch_size=max(int(batch_size), 1))


for _spec in FOUNDATION_SPECS:
    register_extractor(_spec.name, _spec.description, _vit_factory(_spec))
register_extractor(
    "imilia-stain-stats",
    "builtin, no weights: H&E stain statistics, nucleus blobs and texture (64-d)",
    _builtin_factory,
)

__all__ = [
    "FEATURE_NAMES",
    "FOUNDATION_SPECS",
    "Extractor",
    "ExtractorFactory",
    "FoundationSpec",
    "StainStatsExtractor",
    "ViTExtractor",
    "create_extractor",
    "list_extractors",
    "missing_weights_message",
    "register_extractor",
    "unregister_extractor",
]
