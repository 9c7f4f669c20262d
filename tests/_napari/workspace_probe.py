"""Child process of test_widgets_workspace: open napari on ``$DISPLAY`` and measure the layout.

``python workspace_probe.py MODE SLIDE RESULTS_ROOT OUT_JSON``; MODE ``workspace`` opens the
README's review viewer (``open_review_viewer``: every dock in the workspace), ``one_by_one``
opens the slide and then each dock as the Plugins menu does (stacked, not tabbed; the
results folder comes from ``IMILIA_RESULTS_DIR``). Writes
the screen's available geometry, the main window's frame, each dock's frame on the screen,
overlapping sibling widgets in the docks, and the Top tiles list's visible rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _rect(rect: Any) -> list[int]:
    return [rect.x(), rect.y(), rect.width(), rect.height()]


def _overlaps(root: Any) -> list[str]:
    """Visible sibling widgets inside ``root`` whose geometries intersect (a squeezed layout
    draws one over the other)."""
    from qtpy.QtWidgets import QWidget

    found = []
    parents = [root, *root.findChildren(QWidget)]
    for parent in parents:
        children = [
            c
            for c in parent.children()
            if isinstance(c, QWidget)
            and c.isVisible()
            and not c.isWindow()
            and type(c).__name__ not in ("QScrollBar", "QLineEditIconButton")
        ]
        for i, a in enumerate(children):
            for b in children[i + 1 :]:
                if a.geometry().intersects(b.geometry()):
                    found.append(f"{type(a).__name__}:{a.objectName()} / {type(b).__name__}")
    return found


def main(mode: str, slide: Path, results_root: Path, out_json: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_imilia._napari.launch import REVIEW_DOCKS, open_review_viewer
    from napari_imilia._napari.workspace import WORKSPACE_DOCK

    if mode == "workspace":
        viewer = open_review_viewer(slide, results_root, show=True)
    else:  # the docks' session takes its results folder from IMILIA_RESULTS_DIR
        viewer = napari.Viewer(show=True)
        viewer.open(str(slide), plugin="napari-imilia")
        for name in [n for n in REVIEW_DOCKS if n != WORKSPACE_DOCK]:
            viewer.window.add_plugin_dock_widget("napari-imilia", name)
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
    main_window = viewer.window._qt_window
    screen = QApplication.primaryScreen()
    docks = {}
    overlaps = {}
    for name, widget in viewer.window.dock_widgets.items():
        dock = widget.parent()
        if not dock.isVisible() or dock.visibleRegion().isEmpty():
            continue  # a hidden tab
        top_left = dock.mapToGlobal(dock.rect().topLeft())
        docks[name] = [top_left.x(), top_left.y(), dock.width(), dock.height()]
        content = widget.scroll_area.widget()
        overlaps[name] = _overlaps(content)
    top = viewer.window.dock_widgets["Top tiles (napari-imilia)"]
    row_px = max(top.list.sizeHintForRow(0), 1)
    result = {
        "available": _rect(screen.availableGeometry()),
        "frame": _rect(main_window.frameGeometry()),
        "docks": docks,
        "overlaps": overlaps,
        "top_tiles_rows": top.list.viewport().height() / row_px,
        "top_tiles_visible": not top.visibleRegion().isEmpty(),
        "listed_tiles": len(top.tile_ids()),
        "opened": sorted(viewer.window.dock_widgets),
    }
    if mode == "workspace":
        main_window.grab().save(str(out_json.with_suffix(".png")))
    out_json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    viewer.close()


def dock_opens_without_torch(out_json: Path) -> None:
    """``python workspace_probe.py torch OUT_JSON``: is torch imported when the Slide and
    model dock has been built, and after the event loop ran?"""
    import time

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=False)
    before = "torch" in sys.modules
    _dock, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Slide and model")
    at_open = "torch" in sys.modules
    deadline = time.perf_counter() + 240
    while not panel.form.choices_loaded and time.perf_counter() < deadline:
        QApplication.instance().processEvents()
        time.sleep(0.02)
    combo = panel.form.extractor_combo
    result = {
        "before": before,
        "at_open": at_open,
        "loaded": panel.form.choices_loaded,
        "after": "torch" in sys.modules,
        "extractors": [combo.itemData(i) for i in range(combo.count())],
        "label": panel.form.model_label.text(),
    }
    out_json.write_text(json.dumps(result), encoding="utf-8")
    viewer.close()


if __name__ == "__main__":
    if sys.argv[1] == "torch":
        dock_opens_without_torch(Path(sys.argv[2]))
    else:
        main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
