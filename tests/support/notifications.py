"""The ``notes`` fixture: every napari notification shown during a test, as (level, message)."""

from __future__ import annotations

import pytest


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every napari notification shown, as (level, message), in order."""
    import napari.utils.notifications as notifications

    shown: list[tuple[str, str]] = []
    for level in ("error", "warning", "info"):
        name = f"show_{level}"
        monkeypatch.setattr(notifications, name, lambda m, lv=level: shown.append((lv, str(m))))
    return shown
