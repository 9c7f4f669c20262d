"""Where napari-imilia keeps a user's things: settings, the generated-slide cache and the
default results folder. Each has an environment variable that overrides it (tests and shared
machines use them).

- :func:`config_dir`: ``$IMILIA_CONFIG_DIR``, else the platform's user config folder;
- :func:`cache_dir`: ``$IMILIA_CACHE_DIR``, else the platform's user cache folder;
- :func:`default_results_root`: ``$IMILIA_RESULTS_DIR``, else ``~/napari-imilia-results``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CONFIG_ENV = "IMILIA_CONFIG_DIR"
CACHE_ENV = "IMILIA_CACHE_DIR"
RESULTS_ENV = "IMILIA_RESULTS_DIR"
APP_NAME = "napari-imilia"


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    """Folder of the user's settings (reviewer name, dock choices)."""
    env = _from_env(CONFIG_ENV)
    if env is not None:
        return env
    try:
        from platformdirs import user_config_dir
    except ImportError:  # platformdirs comes with napari, but the core does not need it
        return Path.home() / ".config" / APP_NAME
    return Path(user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Folder of generated files worth keeping between runs (the sample slide)."""
    env = _from_env(CACHE_ENV)
    if env is not None:
        return env
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / APP_NAME / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / APP_NAME


def default_results_root() -> Path:
    """Results folder when none is given."""
    env = _from_env(RESULTS_ENV)
    return env if env is not None else Path.home() / "napari-imilia-results"
