"""The tile inspector's remembered choices, in a small JSON file (no Qt).

``<config_dir()>/inspector_settings.json`` (the folder of the Slide and model panel's
settings; ``$IMILIA_CONFIG_DIR`` overrides it) holds the cell backend, its checkpoint or
HistoPLUS JSON, the epithelium method, the EpiSeg probe and its extractor's weights and the
device. Written atomically; a missing or unreadable file gives the defaults.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from napari_imilia.files import write_text_atomic
from napari_imilia.user_dirs import config_dir

if TYPE_CHECKING:
    from napari_imilia.interpret import InspectConfig

INSPECTOR_SETTINGS_NAME = "inspector_settings.json"


@dataclass
class InspectorSettings:
    """What the tile inspector remembers (paths as typed; empty = none)."""

    cell_backend: str = "classical"
    cell_checkpoint: str = ""
    histoplus_json: str = ""
    epithelium_method: str = "stain-heuristic"
    episeg_probe: str = ""
    episeg_extractor_weights: str = ""
    device: str = "auto"
    auto_inspect: bool = True

    def to_config(self) -> InspectConfig:
        """The ``InspectConfig`` of these choices (``ImiliaError`` if a file is missing)."""
        from napari_imilia.interpret import InspectConfig

        return InspectConfig(
            cell_backend=self.cell_backend,
            cell_checkpoint=self.cell_checkpoint or None,
            histoplus_json=self.histoplus_json or None,
            epithelium_method=self.epithelium_method,
            episeg_probe=self.episeg_probe or None,
            episeg_extractor_weights=self.episeg_extractor_weights or None,
            device=self.device,
        )


def inspector_settings_path() -> Path:
    return config_dir() / INSPECTOR_SETTINGS_NAME


def load_inspector_settings(path: Path | None = None) -> InspectorSettings:
    """Saved choices, or the defaults when the file is missing or unreadable."""
    path = path or inspector_settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return InspectorSettings()
    settings = InspectorSettings()
    if isinstance(raw, dict):
        for spec in fields(InspectorSettings):
            value = raw.get(spec.name)
            if isinstance(value, type(getattr(settings, spec.name))):
                setattr(settings, spec.name, value)
    return settings


def save_inspector_settings(settings: InspectorSettings, path: Path | None = None) -> Path:
    """Write the choices atomically; returns the path."""
    path = path or inspector_settings_path()
    return write_text_atomic(path, json.dumps(asdict(settings), indent=2) + "\n")
