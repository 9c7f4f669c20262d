"""Architectures by name, as timm does: ``list_models()`` and ``create_model(name, in_dim)``."""

from __future__ import annotations

import inspect
from typing import Any

from napari_imilia.errors import CheckpointError
from napari_imilia.mil.abmil import GatedABMIL
from napari_imilia.mil.base import MILModel
from napari_imilia.mil.chowder import ImiliaChowder
from napari_imilia.mil.presence import MaxMIL

_REGISTRY: dict[str, type[MILModel]] = {
    cls.arch_name: cls for cls in (ImiliaChowder, GatedABMIL, MaxMIL)
}


def list_models() -> list[tuple[str, str]]:
    """``(name, one-line description)`` for every registered architecture."""
    return [(name, cls.description) for name, cls in _REGISTRY.items()]


def model_class(name: str) -> type[MILModel]:
    """The class registered as ``name``; ``CheckpointError`` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise CheckpointError(f"unknown MIL architecture {name!r}; known: {known}") from None


def create_model(name: str, in_dim: int, **hparams: Any) -> MILModel:
    """Build architecture ``name`` for ``in_dim``-d tile features with ``hparams``."""
    cls = model_class(name)
    try:
        return cls(in_dim, **hparams)
    except (TypeError, ValueError, RuntimeError) as error:  # RuntimeError: a negative width
        given = ", ".join(f"{key}={value!r}" for key, value in hparams.items())
        accepted = ", ".join(_hparam_names(cls)) or "none"
        raise CheckpointError(
            f"bad hyper-parameters for {name} ({given}): {error}; {name} accepts: {accepted} "
            "(see docs/mil_models.md)"
        ) from error


def _hparam_names(cls: type[MILModel]) -> list[str]:
    """Keyword hyper-parameters of ``cls`` (its constructor's parameters after ``in_dim``)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
