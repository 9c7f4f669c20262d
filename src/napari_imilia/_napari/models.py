"""The models one viewer has loaded, kept in its ``ViewerState`` and reused between runs.

:class:`ModelCache` holds the MIL model and the feature extractor of the last Run (the Slide
and model dock's ``run_inference``) and the tools of the last tile inspection (cell backend,
epithelium method with its EpiSeg probe and the probe's extractor; ``InspectTools``). Each
is loaded again only when the choice that names it changes (a checkpoint file's modification
time counts). Loading happens in worker threads: one lock per kind keeps two workers of the
same viewer from loading the same thing twice. Nothing here imports torch or Qt until a
model is loaded.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any


def _mtime(path: Path | None) -> float | None:
    try:
        return None if path is None else path.stat().st_mtime
    except OSError:
        return None


class ModelCache:
    """The viewer's loaded models (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model_key: tuple | None = None
        self._model: Any = None
        self._extractor_key: tuple | None = None
        self._extractor: Any = None
        self._tools_lock = threading.Lock()
        self._tools: Any = None
        self._tools_slide: weakref.ref[Any] | None = None

    # ------------------------------------------------------------------ scoring
    def model(self, path: Path, device: str) -> Any:
        """The MIL model of checkpoint ``path`` on ``device`` (loaded when it changed)."""
        from napari_imilia.mil import load_model

        key = (str(path.resolve()), _mtime(path), device)
        with self._lock:
            if key != self._model_key:
                self._model, self._model_key = load_model(path, device=device), key
            return self._model

    def extractor(self, name: str, weights: str, device: str) -> Any:
        """Feature extractor ``name`` with local ``weights`` ('' none) on ``device``."""
        from napari_imilia.features.extractors import create_extractor

        weights_path = Path(weights).expanduser() if weights.strip() else None
        key = (name, str(weights_path), _mtime(weights_path), device)
        with self._lock:
            if key != self._extractor_key:
                self._extractor = create_extractor(name, weights_path=weights_path, device=device)
                self._extractor_key = key
            return self._extractor

    @property
    def mil_model(self) -> Any | None:
        """The MIL model loaded last (None before the first Run)."""
        return self._model

    @property
    def feature_extractor(self) -> Any | None:
        """The feature extractor loaded last (None before the first Run)."""
        return self._extractor

    # ------------------------------------------------------------------ inspection
    def inspect_tools(self, config: Any, slide: Any) -> Any:
        """The ``InspectTools`` of ``config`` (an ``InspectConfig``) for ``slide``: the ones
        loaded last when both are the same, else loaded now (``ImiliaError`` for a missing
        checkpoint, probe or HistoPLUS file)."""
        from napari_imilia.interpret import InspectTools

        with self._tools_lock:
            tools = self._tools
            same_slide = self._tools_slide is not None and self._tools_slide() is slide
            if tools is None or tools.config != config or not same_slide:
                tools = InspectTools.load(config, slide)
                self._tools, self._tools_slide = tools, weakref.ref(slide)
            return tools

    @property
    def loaded_inspect_tools(self) -> Any | None:
        """The inspection tools loaded last (None before the first inspection)."""
        return self._tools

    @property
    def cell_backend(self) -> Any | None:
        """The cell backend of the last inspection (None before the first)."""
        return None if self._tools is None else self._tools.backend

    @property
    def episeg_probe(self) -> Any | None:
        """The EpiSeg probe of the last inspection (None: none, or the stain heuristic)."""
        return None if self._tools is None else self._tools.probe
