"""The Slide and model panel's remembered choices, in a small JSON file (no Qt).

napari's settings API is not open to plugins, so choices (model checkpoint, extractor and its
weights, device, target MPP, tile size, results folder, recent slides) live in
``widget_settings.json`` in :func:`napari_imilia.user_dirs.config_dir` (``$IMILIA_CONFIG_DIR``
overrides the folder; tests use it); the reviewer's name is kept by ``review.reviewer``. The
file is written atomically; a missing or unreadable file gives the defaults, and unknown keys
are ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from napari_imilia.files import write_text_atomic
from napari_imilia.user_dirs import config_dir

SETTINGS_NAME = "widget_settings.json"
#: Recent slides kept, most recent first.
MAX_RECENT = 10
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass
class PanelSettings:
    """What the Slide and model panel remembers.

    ``model_path`` empty means the bundled demo model; ``extractor`` empty means the one the
    model was trained on; ``target_mpp`` (µm/px) and ``tile_px`` 0 mean the model's values;
    ``results_root`` empty means ``user_dirs.default_results_root()``.
    """

    model_path: str = ""
    extractor: str = ""
    extractor_weights: str = ""
    device: str = "auto"
    target_mpp: float = 0.0
    tile_px: int = 0
    results_root: str = ""
    recent_slides: list[str] = field(default_factory=list)

    def add_recent(self, slide_path: str | os.PathLike[str]) -> None:
        """Put ``slide_path`` first in :attr:`recent_slides` (no duplicates, at most
        :data:`MAX_RECENT`)."""
        path = str(Path(slide_path))
        self.recent_slides = [path, *(p for p in self.recent_slides if p != path)][:MAX_RECENT]


def settings_path() -> Path:
    return config_dir() / SETTINGS_NAME


def load_settings(path: Path | None = None) -> PanelSettings:
    """The saved settings, or the defaults when the file is missing or unreadable."""
    path = path or settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return PanelSettings()
    if not isinstance(raw, dict):
        return PanelSettings()
    settings = PanelSettings()
    for spec in fields(PanelSettings):
        if spec.name in raw:
            _assign(settings, spec.name, raw[spec.name])
    if settings.device not in DEVICES:
        settings.device = "auto"
    return settings


def _assign(settings: PanelSettings, name: str, value: Any) -> None:
    """Set one field from JSON, keeping the default when the value has the wrong type."""
    default = getattr(settings, name)
    try:
        if isinstance(default, list):
            if isinstance(value, list):
                setattr(settings, name, [str(v) for v in value][:MAX_RECENT])
        elif isinstance(default, float):
            setattr(settings, name, max(float(value), 0.0))
        elif isinstance(default, int):
            setattr(settings, name, max(int(value), 0))
        else:
            setattr(settings, name, str(value))
    except (TypeError, ValueError):
        pass


def save_settings(settings: PanelSettings, path: Path | None = None) -> Path:
    """Write ``settings`` as JSON, atomically; returns the file's path."""
    path = path or settings_path()
    return write_text_atomic(path, json.dumps(asdict(settings), indent=2) + "\n")
