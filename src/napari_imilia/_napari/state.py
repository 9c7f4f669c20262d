"""Which ``ReviewSession`` belongs to which napari viewer, shared by every dock widget.

Each dock widget asks ``viewer_state(viewer)`` for the per-viewer holder and connects to its
``session_changed`` signal; the slide panel sets the session when a slide is opened. Widgets
never keep their own copy of slide, scores or review state: they read the session.
"""

from __future__ import annotations

import weakref
from typing import Any

from psygnal import Signal

from napari_imilia.review.session import ReviewSession

#: Metadata key marking layers that napari-imilia added for a session (heatmap, masks...).
LAYER_ROLE_KEY = "imilia_role"


class ViewerState:
    """The session shown in one viewer. ``session_changed(session or None)``."""

    session_changed = Signal(object)

    def __init__(self) -> None:
        self.session: ReviewSession | None = None

    def set_session(self, session: ReviewSession | None) -> None:
        """Replace the viewer's session (the old one is closed) and notify the widgets."""
        old = self.session
        if old is session:
            return
        self.session = session
        if old is not None:
            old.close()
        self.session_changed.emit(session)


_STATES: weakref.WeakKeyDictionary[Any, ViewerState] = weakref.WeakKeyDictionary()


def viewer_state(viewer: Any) -> ViewerState:
    """The ``ViewerState`` of ``viewer`` (created on first use, dropped with the viewer)."""
    state = _STATES.get(viewer)
    if state is None:
        state = ViewerState()
        _STATES[viewer] = state
    return state


def layers_with_role(viewer: Any, role: str) -> list[Any]:
    """Layers of ``viewer`` tagged ``metadata[LAYER_ROLE_KEY] == role``."""
    return [layer for layer in viewer.layers if layer.metadata.get(LAYER_ROLE_KEY) == role]
