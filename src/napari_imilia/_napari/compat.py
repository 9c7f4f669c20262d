"""Viewer parts whose home moved in napari 0.9, reached the same way on every supported napari.

napari 0.9 moved the camera to ``viewer.scene.camera`` and the canvas overlays (scale bar...)
and size to ``viewer.canvas``; the old ``viewer.camera`` / ``viewer.scale_bar`` still work
there but warn. napari 0.6.6-0.8 (the oldest supported: pyproject) have only the old
attributes (and ``viewer._canvas_size``).
The dock widgets, scripts and benchmarks use these helpers, never the old names; the main
window is reached through :func:`main_window` (public API), never ``window._qt_window``.
"""

from __future__ import annotations

from typing import Any

#: Canvas size assumed when the viewer reports none, (height, width) px (napari's default).
FALLBACK_CANVAS_PX = (800, 600)


def viewer_camera(viewer: Any) -> Any:
    """The camera model: ``viewer.scene.camera`` (napari >= 0.9), else ``viewer.camera``."""
    scene = getattr(viewer, "scene", None)
    camera = getattr(scene, "camera", None)
    return camera if camera is not None else viewer.camera


def canvas_size_px(viewer: Any) -> tuple[int, int]:
    """The canvas size in screen pixels, (height, width): ``viewer.canvas.size`` (napari
    >= 0.9), else ``viewer._canvas_size``; ``FALLBACK_CANVAS_PX`` when neither is known."""
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is None:
        size = getattr(viewer, "_canvas_size", None)
    if size is None or len(size) < 2 or min(int(v) for v in size) <= 0:
        return FALLBACK_CANVAS_PX
    return int(size[-2]), int(size[-1])


def scale_bar(viewer: Any) -> Any:
    """The scale bar overlay: ``viewer.canvas.overlays['scale_bar']`` (napari >= 0.9), else
    ``viewer.scale_bar``."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None and "scale_bar" in overlays:
        return overlays["scale_bar"]
    return viewer.scale_bar


def main_window(viewer: Any) -> Any | None:
    """The viewer's Qt main window through public API only (``viewer.window.main_menu``'s
    window: no private ``Window._qt_window``, which napari deprecates from plugin code); None
    when the viewer has no window."""
    window = getattr(viewer, "window", None)
    menu = getattr(window, "main_menu", None)
    return None if menu is None else menu.window()
