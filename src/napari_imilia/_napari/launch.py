"""Open napari ready for review: the slide, its session, heatmap and the review workspace.

``imilia demo`` calls :func:`open_review_viewer` after scoring the sample slide.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_imilia._napari.link import link_viewer
from napari_imilia._napari.reader import slide_from_metadata
from napari_imilia._napari.state import viewer_state
from napari_imilia._napari.workspace import WORKSPACE_GROUPS, open_workspace
from napari_imilia.errors import SlideError
from napari_imilia.review.session import ReviewSession

PLUGIN = "napari-imilia"
#: Dock widgets opened by :func:`open_review_viewer`, by manifest display name: the whole
#: review workspace (``workspace.WORKSPACE_GROUPS``).
REVIEW_DOCKS: tuple[str, ...] = tuple(name for group in WORKSPACE_GROUPS for name in group)


def open_review_viewer(
    slide_path: str | os.PathLike[str],
    results_root: str | os.PathLike[str],
    *,
    show: bool = True,
) -> Any:
    """A napari viewer with the slide layer, its ``ReviewSession`` over ``results_root``
    (an earlier prediction in ``results_root/<slide_id>`` is loaded), the heatmap layer and
    every dock arranged to fit the screen (``open_workspace``); the camera shows the whole
    slide beside the colour bar and its caption (``ViewerLink.fit_view``).
    Raises ``SlideError`` when ``slide_path`` is not a slide our reader opens.
    """
    import napari

    slide_path = Path(slide_path)
    viewer = napari.Viewer(title=f"napari-imilia: {slide_path.name}", show=show)
    layers = viewer.open(str(slide_path), plugin=PLUGIN)
    slide = slide_from_metadata(layers[0].metadata) if layers else None
    if slide is None:
        viewer.close()
        raise SlideError(f"napari-imilia could not open {slide_path} as a slide")
    viewer_state(viewer).set_session(ReviewSession.for_slide(slide, Path(results_root)))
    open_workspace(viewer)
    if show:
        from qtpy.QtWidgets import QApplication

        QApplication.processEvents()  # the canvas takes its size in the arranged window
    link_viewer(viewer).fit_view()
    return viewer
