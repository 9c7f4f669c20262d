"""Child process of test_widgets_workspace: open napari on ``$DISPLAY`` and measure the layout.

``python workspace_probe.py MODE SLIDE RESULTS_ROOT OUT_JSON``; MODE ``workspace`` opens the
README's review viewer (``open_review_viewer``: every dock in the workspace), ``one_by_one``
opens the slide and then each dock as the Plugins menu does (stacked, not tabbed; the
results folder comes from ``IMILIA_RESULTS_DIR``), ``cohort`` opens the workspace from the
Plugins menu's *Review workspace* dock, then the cohort in ``RESULTS_ROOT`` in the Cohort
dock and a slide from its table (``SLIDE`` is unused). Writes the screen's available
geometry, the main window's frame, each dock's frame on the screen, overlapping sibling
widgets in the docks, the Top tiles list's visible rows, the canvas's width, the tab titles
as drawn, napari's layer docks and the warnings napari-imilia caused; in mode ``cohort``
also the cohort table's visible rows and whether the table and the whole grade form show.
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


def _tabs(main_window: Any) -> list[dict[str, Any]]:
    """Each tab of the dock groups: its title, the title's width and the tab's width (px)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar

    tabs = []
    for bar in main_window.findChildren(QTabBar):
        if not bar.isVisible():
            continue
        metrics = bar.fontMetrics()
        for i in range(bar.count()):
            tabs.append(
                {
                    "title": bar.tabText(i),
                    "text_px": metrics.horizontalAdvance(bar.tabText(i)),
                    "tab_px": bar.tabRect(i).width(),
                    "elided": bar.elideMode() != Qt.TextElideMode.ElideNone,
                }
            )
    return tabs


def _fully_shown(widget: Any) -> bool:
    """Whether all of ``widget`` is on the screen (not scrolled away nor clipped)."""
    region = widget.visibleRegion()
    return not region.isEmpty() and region.boundingRect() == widget.rect()


def _open_cohort(viewer: Any, results_root: Path) -> dict[str, Any]:
    """Open the cohort in the Cohort dock and its fourth slide from the table; what shows."""
    from napari_imilia._napari.compat import scale_bar

    panel = viewer.window.dock_widgets["Cohort (napari-imilia)"]
    panel.open_cohort(results_root)
    _settle()
    panel.open_index(3)
    panel.grade_form.nancy_combo.setCurrentIndex(3)  # a grade chosen: its definition shows
    _settle()
    table = panel.table
    return {
        "table_rows": table.viewport().height() / max(table.rowHeight(0), 1),
        "cohort_rows": panel.proxy.rowCount(),
        "summary": panel.source_section.button.text(),
        "table_shown": not table.visibleRegion().isEmpty(),
        "grade_form_shown": _fully_shown(panel.grade_form),
        "grade_form_px": [
            panel.grade_form.visibleRegion().boundingRect().height(),
            panel.grade_form.height(),
        ],
        "buttons_shown": _fully_shown(panel.next_button) and _fully_shown(panel.score_button),
        "scale_bar": bool(scale_bar(viewer).visible),
    }


def _settle(rounds: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    for _ in range(rounds):
        QApplication.instance().processEvents()


def main(mode: str, slide: Path, results_root: Path, out_json: Path) -> None:
    import warnings

    import napari
    from qtpy.QtWidgets import QApplication, QDockWidget, QToolButton

    from napari_imilia._napari.launch import REVIEW_DOCKS, open_review_viewer
    from napari_imilia._napari.workspace import LAYERS_BUTTON, WORKSPACE_DOCK

    caught = warnings.catch_warnings(record=True)
    seen = caught.__enter__()
    warnings.simplefilter("always")
    if mode == "workspace":
        viewer = open_review_viewer(slide, results_root, show=True)
    elif mode == "cohort":  # the Plugins menu's Review workspace arranges every dock
        viewer = napari.Viewer(show=True)
        viewer.window.add_plugin_dock_widget("napari-imilia", WORKSPACE_DOCK)
    else:  # the docks' session takes its results folder from IMILIA_RESULTS_DIR
        viewer = napari.Viewer(show=True)
        viewer.open(str(slide), plugin="napari-imilia")
        for name in [n for n in REVIEW_DOCKS if n != WORKSPACE_DOCK]:
            viewer.window.add_plugin_dock_widget("napari-imilia", name)
    _settle()
    cohort = _open_cohort(viewer, results_root) if mode == "cohort" else {}
    caught.__exit__(None, None, None)
    main_window = viewer.window._qt_window
    screen = QApplication.primaryScreen()
    _settle()
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
    top_shown_first = not top.visibleRegion().isEmpty()
    top.parent().raise_()  # its tab, one click away in the workspace
    _settle()
    row_px = max(top.list.sizeHintForRow(0), 1)
    result = {
        "available": _rect(screen.availableGeometry()),
        "frame": _rect(main_window.frameGeometry()),
        "docks": docks,
        "overlaps": overlaps,
        "top_tiles_rows": top.list.viewport().height() / row_px,
        "top_tiles_visible": not top.visibleRegion().isEmpty(),
        "top_tiles_shown_first": top_shown_first,
        "listed_tiles": len(top.tile_ids()),
        "opened": sorted(viewer.window.dock_widgets),
        "canvas_px": viewer.window._qt_viewer.canvas.native.width(),
        "tabs": _tabs(main_window),
        "layer_docks_shown": [
            d.objectName()
            for d in main_window.findChildren(QDockWidget)
            if d.objectName() in ("layer list", "layer controls") and d.isVisible()
        ],
        "warnings": [
            f"{w.category.__name__}: {w.message}"
            for w in seen
            if "napari_imilia" in str(w.filename) and issubclass(w.category, FutureWarning)
        ],
        **cohort,
    }
    button = main_window.findChild(QToolButton, LAYERS_BUTTON)
    if button is not None:  # one click brings napari's layer docks back
        button.click()
        _settle()
        result["layer_docks_after_click"] = sorted(
            d.objectName()
            for d in main_window.findChildren(QDockWidget)
            if d.objectName() in ("layer list", "layer controls") and d.isVisible()
        )
        button.click()
        _settle()
    if mode in ("workspace", "cohort"):
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
