"""Screenshots of the Slide and model, Heatmap and Top tiles docks for the documentation.

Run from the repository root under a display, e.g.::

    xvfb-run -a -s "-screen 0 1280x1024x24" python scripts/screenshots_slide_docks.py

It scores the generated sample slide with the bundled demo model (or ``--model``) on the
builtin extractor into a temporary results folder, opens ``open_review_viewer``, jumps to
the top-scoring tile and writes into ``--out`` (default ``docs/images``):
``review_viewer.png`` (the whole window), ``dock_slide_model.png``, ``dock_heatmap.png`` and
``dock_top_tiles.png`` (each dock alone). Settings go to a temporary folder, not yours.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

WINDOW_PX = (1400, 1000)


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
    from napari_imilia._widgets.launch import open_review_viewer
    from napari_imilia.predict import predict_slide
    from napari_imilia.sample import sample_slide_path

    slide = sample_slide_path()
    predict_slide(slide, work / "results", model_path=args.model or None, progress=False)
    viewer = open_review_viewer(slide, work / "results", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(*WINDOW_PX)
    viewer.scale_bar.visible = True
    docks = viewer.window.dock_widgets
    panel = docks["Slide and model (napari-imilia)"]
    panel.form.set_model_path(args.model)
    top = docks["Top tiles (napari-imilia)"]
    _settle(app)
    top.select_row(0)
    deadline = time.perf_counter() + 60
    while top.thumbnails_loading and time.perf_counter() < deadline:
        _settle(app, 0.1)
    _close_notifications()
    _settle(app, 2.0)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out / "review_viewer.png"), canvas_only=False, flash=False)
    names = {
        "dock_slide_model.png": "Slide and model (napari-imilia)",
        "dock_heatmap.png": "Heatmap (napari-imilia)",
        "dock_top_tiles.png": "Top tiles (napari-imilia)",
    }
    qt_docks = viewer.window._wrapped_dock_widgets
    for file_name, dock_name in names.items():
        qt_docks[dock_name].raise_()  # a tabbed dock must be in front to be laid out
        _settle(app, 0.5)
        docks[dock_name].grab().save(str(out / file_name))
    viewer.close()
    for file_name in ("review_viewer.png", *names):
        _shrink_png(out / file_name)
        print(f"wrote {out / file_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
