"""Screenshots of the Review and Export / import docks for the documentation.

Run from the repository root under a display, e.g.::

    xvfb-run -a -s "-screen 0 1280x1024x24" python scripts/screenshots_review_docks.py

It scores the generated sample slide with the bundled demo model (or ``--model``) on the
builtin extractor into a temporary results folder, opens ``open_review_viewer`` with the
Review and Export / import docks, records a verdict on the top tile and on a drawn region,
exports, and writes into ``--out`` (default ``docs/images``): ``review_regions.png`` (the
window, zoomed on the reviewed region), ``dock_review.png`` and ``dock_export.png``.
Settings and results go to a temporary folder, not yours.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

WINDOW_PX = (1400, 1000)
DOCK_PX = (620, 420)


def _settle(app, seconds: float = 1.0) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def _shrink_png(path: Path) -> None:
    """Re-save with an adaptive 256-colour palette (a fraction of the size, fine for docs)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs")
    parser.add_argument("--model", default="", help="MIL checkpoint (default: the demo model)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imilia_screens_"))
    os.environ["IMILIA_CONFIG_DIR"] = str(work / "config")

    from qtpy.QtWidgets import QApplication

    from napari_imilia._viewer_launch import _close_notifications
    from napari_imilia._widgets._state import viewer_state
    from napari_imilia._widgets._viewer_link import centre_on_tile
    from napari_imilia._widgets.launch import open_review_viewer
    from napari_imilia.export.layers import level0_to_world
    from napari_imilia.predict import predict_slide
    from napari_imilia.sample import sample_slide_path

    slide = sample_slide_path()
    predict_slide(slide, work / "results", model_path=args.model or None, progress=False)
    viewer = open_review_viewer(slide, work / "results", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(*WINDOW_PX)
    viewer.scale_bar.visible = True
    _, review = viewer.window.add_plugin_dock_widget("napari-imilia", "Review")
    _, exporter = viewer.window.add_plugin_dock_widget("napari-imilia", "Export / import")
    session = viewer_state(viewer).session
    top, second = session.ranked_tiles(2)["tile_id"]

    review.reviewer_edit.setText("Dr Example")
    session.select_tile(second)
    review.class_combo.setEditText("chronic inflammation")
    review.record("uncertain")
    session.select_tile(top)
    review.class_combo.setEditText("active inflammation")
    review.note_edit.setText("neutrophils in crypt epithelium")
    review.record("agree")
    row = session.tile_row(top)
    x, y, w = float(row["x"]), float(row["y"]), float(row["width"])
    corners = np.array([[x + 0.2 * w, y + 0.25 * w], [x + 0.8 * w, y + 0.7 * w]])
    review.regions.layer.add_rectangles([level0_to_world(corners, float(session.slide.mpp))])
    review.class_combo.setEditText("active inflammation")
    review.note_edit.setText("crypt abscess")
    review.record("disagree")
    exporter.export()
    centre_on_tile(viewer, session, top)
    _close_notifications()
    _settle(app, 2.0)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out / "review_regions.png"), canvas_only=False, flash=False)
    names = {
        "dock_review.png": "Review (napari-imilia)",
        "dock_export.png": "Export / import (napari-imilia)",
    }
    docks = viewer.window.dock_widgets
    qt_docks = viewer.window._wrapped_dock_widgets
    for file_name, dock_name in names.items():
        qt_docks[dock_name].setFloating(True)  # alone, at a readable size
        qt_docks[dock_name].resize(*DOCK_PX)
        _settle(app, 0.5)
        docks[dock_name].grab().save(str(out / file_name))
    viewer.close()
    for file_name in ("review_regions.png", *names):
        _shrink_png(out / file_name)
        print(f"wrote {out / file_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
