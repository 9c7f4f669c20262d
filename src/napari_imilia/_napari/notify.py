"""The one way the napari wing tells the user something: :func:`notify`.

Every dock, the readers, the keys and the viewer link call it; it shows a napari
notification (the toast and the activity log). napari is imported when a message is shown,
so modules that import this one stay importable without a display.
"""

from __future__ import annotations

#: The levels :func:`notify` knows, most severe first.
LEVELS: tuple[str, ...] = ("error", "warning", "info")


def notify(level: str, message: str) -> None:
    """Show ``message`` (plain text, no markup) as a napari notification of ``level``
    ('error', 'warning' or 'info')."""
    if level not in LEVELS:
        raise ValueError(f"unknown notification level {level!r}; use one of {LEVELS}")
    from napari.utils import notifications

    getattr(notifications, f"show_{level}")(str(message))
