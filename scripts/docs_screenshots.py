"""Screenshots of every napari-imilia dock for the documentation (docs/user_guide.md).

Run from the repository root under a display at least 1440 x 900 px, e.g.::

    xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/docs_screenshots.py

It scores the generated sample slide with the bundled demo model (``--model`` for another) on
the builtin extractor into a temporary folder (settings too: yours are untouched), opens
``open_review_viewer``, adds the other four docks as tabs, and drives them as a pathologist
would: jump to the top tile, inspect it and a few other tiles (cells and epithelium Labels
layers), record verdicts on two tiles and on a drawn region, export. It writes into ``--out``
(default ``docs/images``):

- window views: ``review_viewer.png`` (heatmap, top tiles, the top tile outlined),
  ``inspector_layers.png`` (the top tile's cells coloured by class and its epithelium, with
  the Tile inspector dock), ``review_regions.png`` (a reviewed region in the top tile, with
  the Review dock);
- each dock alone: ``dock_slide_model.png``, ``dock_heatmap.png``, ``dock_top_tiles.png``,
  ``dock_tile_inspector.png``, ``dock_plots.png``, ``dock_review.png``, ``dock_export.png``;
- the review workspace filling a 1366 x 768 and a 1920 x 1080 screen
  (``workspace_1366x768.png``, ``workspace_1920x1080.png``: each in a child process on its
  own private Xvfb of that size, three top tiles reviewed, the fourth selected).
  ``--workspace-only`` writes just these two.

Every PNG is reduced to a 256- (or 128-) colour palette (fast octree: small overlays such as
the red verdict outlines keep their colour, which median cut merged into the heatmap's), and
scaled down if still needed, to stay under ``MAX_PNG_BYTES``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PLUGIN = "napari-imilia"
WINDOW_PX = (1440, 900)
WINDOW_SHOTS = ("review_viewer.png", "inspector_layers.png", "review_regions.png")
MAX_PNG_BYTES = 300_000
#: Docks added to ``open_review_viewer``'s three, tabbed with Slide and model / Top tiles.
EXTRA_DOCKS = ("Tile inspector", "Plots", "Review", "Export / import", "Cohort")
#: PNG of each dock alone -> (manifest display name, floating size in px).
DOCK_SHOTS: dict[str, tuple[str, tuple[int, int]]] = {
    "dock_slide_model.png": ("Slide and model", (560, 660)),
    "dock_heatmap.png": ("Heatmap", (560, 300)),
    "dock_top_tiles.png": ("Top tiles", (560, 640)),
    "dock_tile_inspector.png": ("Tile inspector", (560, 700)),
    "dock_plots.png": ("Plots", (760, 420)),
    "dock_review.png": ("Review", (620, 440)),
    "dock_export.png": ("Export / import", (620, 300)),
    "dock_cohort.png": ("Cohort", (640, 900)),
}
#: Screens of the workspace screenshots (width x height px).
WORKSPACE_SCREENS = ("1366x768", "1920x1080")
#: Tiles inspected for the Plots dock: the top ones and the bottom ones.
N_TOP_INSPECTED, N_BOTTOM_INSPECTED = 8, 4


def settle(seconds: float = 0.5) -> None:
    """Let Qt process events (layout, drawing, worker signals) for ``seconds``."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def wait_for(done: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not done():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        settle(0.05)


def save_small_png(path: Path, max_bytes: int = MAX_PNG_BYTES) -> int:
    """Re-save ``path`` with a palette (then smaller) until it is under ``max_bytes``."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    for scale, colours in ((1.0, 256), (1.0, 128), (0.9, 128), (0.8, 128), (0.7, 128)):
        size = (round(image.width * scale), round(image.height * scale))
        small = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        small.quantize(colors=colours, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
        if path.stat().st_size < max_bytes:
            break
    return path.stat().st_size


def dock_name(display_name: str) -> str:
    """The key napari gives a plugin dock in ``window.dock_widgets``."""
    return f"{display_name} ({PLUGIN})"


def raise_dock(viewer, display_name: str) -> None:
    viewer.window.dock_widgets[dock_name(display_name)].parent().raise_()
    settle(0.5)


def tab_titles(viewer) -> list[str]:
    """Texts of the main window's dock tabs (what the user reads on them)."""
    from qtpy.QtWidgets import QTabBar

    from napari_imilia._napari.compat import main_window

    bars = main_window(viewer).findChildren(QTabBar)
    return [bar.tabText(i) for bar in bars for i in range(bar.count())]


def inspect_and_wait(viewer, tile_id: str) -> None:
    session, inspector = _session(viewer), _widget(viewer, "Tile inspector")
    session.select_tile(tile_id)  # the inspector follows the selection...
    current = inspector.current
    if inspector.worker is None and (current is None or current.tile_id != tile_id):
        inspector.inspect_tile(tile_id)  # ...which did not change: inspect it explicitly
    wait_for(
        lambda: (
            inspector.worker is None
            and inspector.current is not None
            and inspector.current.tile_id == tile_id
        ),
        f"the inspection of tile {tile_id}",
    )


def _widget(viewer, display_name: str):
    return viewer.window.dock_widgets[dock_name(display_name)]


def _session(viewer):
    from napari_imilia._napari.state import viewer_state

    return viewer_state(viewer).session


def record_reviews(viewer, top: str, second: str) -> None:
    """Verdicts on the top two tiles and on a region drawn inside the top tile."""
    from napari_imilia.export.layers import level0_to_world

    session, review = _session(viewer), _widget(viewer, "Review")
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


def zoom_on_tile(viewer, tile_id: str, tiles_across: float) -> None:
    """Centre the camera on the tile, ``tiles_across`` tile widths across the canvas."""
    from napari_imilia._napari.compat import canvas_size_px, viewer_camera
    from napari_imilia._napari.layers.placement import centre_on_tile, world_um_per_px

    session = _session(viewer)
    centre_on_tile(viewer, session, tile_id)
    tile_um = float(session.tile_row(tile_id)["width"]) * world_um_per_px(viewer, session)
    viewer_camera(viewer).zoom = min(canvas_size_px(viewer)) / (tiles_across * tile_um)


def window_shot(viewer, path: Path) -> None:
    from napari_imilia._napari.display import _close_notifications

    _close_notifications()
    settle(1.5)
    viewer.screenshot(str(path), canvas_only=False, flash=False)


def dock_shot(viewer, display_name: str, size_px: tuple[int, int], path: Path) -> None:
    """The dock alone, floating at ``size_px``, then docked back."""
    qt_dock = viewer.window.dock_widgets[dock_name(display_name)].parent()
    qt_dock.setFloating(True)
    qt_dock.resize(*size_px)
    settle(0.8)
    _widget(viewer, display_name).grab().save(str(path))
    qt_dock.setFloating(False)
    settle(0.3)


def workspace_shot(slide: Path, results: Path, path: Path) -> None:
    """The README's review viewer on this display's screen: three top tiles reviewed (their
    outlines in the verdict colours), the fourth selected; the whole window saved."""
    from napari_imilia._napari.launch import open_review_viewer

    viewer = open_review_viewer(slide, results, show=True)
    session = _session(viewer)
    ranked = [str(t) for t in session.ranked_tiles(4)["tile_id"]]
    for tile_id, verdict in zip(ranked, ("agree", "agree", "disagree"), strict=False):
        session.add_review(verdict=verdict, tile_id=tile_id, reviewer="Dr Example")
    settle(1.0)
    top_tiles = _widget(viewer, "Top tiles")
    top_tiles.select_row(3)
    zoom_on_tile(viewer, ranked[3], tiles_across=6.0)
    wait_for(lambda: not top_tiles.thumbnails_loading, "the top tiles' thumbnails")
    window_shot(viewer, path)
    viewer.close()


def workspace_shots(slide: Path, results: Path, out: Path) -> list[Path]:
    """``workspace_<screen>.png`` for each of ``WORKSPACE_SCREENS``, each made by a child
    process on a private Xvfb of that size."""
    import shutil
    import subprocess
    import sys

    from napari_imilia._napari.display import private_xvfb

    written = []
    for screen in WORKSPACE_SCREENS:
        path = out / f"workspace_{screen}.png"
        own = results.with_name(f"{results.name}_{screen}")  # each shot records its reviews
        shutil.copytree(results, own, dirs_exist_ok=True)
        with private_xvfb(f"{screen}x24") as display:
            env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
            command = [sys.executable, __file__, "--workspace-child", str(slide), str(own)]
            subprocess.run([*command, "--out", str(path)], env=env, check=True, timeout=600)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs")
    parser.add_argument("--model", default="", help="MIL checkpoint (default: the demo model)")
    parser.add_argument(
        "--workspace-only", action="store_true", help="write only the workspace screenshots"
    )
    parser.add_argument(
        "--workspace-child", nargs=2, metavar=("SLIDE", "RESULTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.workspace_child:
        workspace_shot(*(Path(p) for p in args.workspace_child), Path(args.out))
        return 0
    work = Path(tempfile.mkdtemp(prefix="imilia_screens_"))
    os.environ["IMILIA_CONFIG_DIR"] = str(work / "config")
    from napari_imilia.review.reviewer import save_reviewer

    save_reviewer("Dr Example")  # the children share the settings: no dialog asks for a name

    from napari_imilia._napari.compat import main_window, scale_bar
    from napari_imilia._napari.launch import open_review_viewer
    from napari_imilia._napari.layers.placement import centre_on_tile
    from napari_imilia._napari.roles import HEATMAP_ROLE
    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.predict.slide import predict_slide

    slide = sample_slide_path()
    predict_slide(slide, work / "results", model_path=args.model or None, progress=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shots = workspace_shots(slide, work / "results", out)
    for path in shots:
        print(f"wrote {path} ({save_small_png(path) / 1000:.0f} kB)")
    if args.workspace_only:
        return 0
    viewer = open_review_viewer(slide, work / "results", show=True)
    main_window(viewer).resize(*WINDOW_PX)
    scale_bar(viewer).visible = True
    _widget(viewer, "Slide and model").form.set_model_path(args.model)
    session = _session(viewer)
    ranked = list(session.ranked_tiles(N_TOP_INSPECTED)["tile_id"])
    bottom = list(session.ranked_tiles(N_BOTTOM_INSPECTED, bottom=True)["tile_id"])

    # 1. the review viewer as it opens, after a jump to the top tile
    top_tiles = _widget(viewer, "Top tiles")
    settle(1.0)
    top_tiles.select_row(0)
    wait_for(lambda: not top_tiles.thumbnails_loading, "the top tiles' thumbnails")
    window_shot(viewer, out / "review_viewer.png")

    # 2. the other docks; inspections of top and bottom tiles (for the Plots dock)
    for name in EXTRA_DOCKS:
        viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    settle(1.0)
    for tile_id in [*ranked, *bottom]:
        inspect_and_wait(viewer, tile_id)
    # the cells and epithelium layers on the inspected top tile with the most epithelium
    shown = max(ranked, key=lambda t: session.cached_inspection(t).markers.epithelium_fraction)
    inspect_and_wait(viewer, shown)
    zoom_on_tile(viewer, shown, tiles_across=1.3)
    (heatmap,) = [lay for lay in viewer.layers if lay.metadata.get("imilia_role") == HEATMAP_ROLE]
    heatmap.visible = False  # the class colours read better on the bare slide
    raise_dock(viewer, "Tile inspector")
    window_shot(viewer, out / "inspector_layers.png")
    heatmap.visible = True

    # 3. reviews and the export
    record_reviews(viewer, ranked[0], ranked[1])
    _widget(viewer, "Export / import").export()
    centre_on_tile(viewer, session, ranked[0])
    raise_dock(viewer, "Review")
    window_shot(viewer, out / "review_regions.png")
    titles = tab_titles(viewer)
    print("dock tabs:", " | ".join(titles))
    if any("&" in title for title in titles):
        raise RuntimeError(f"a dock tab shows a Qt mnemonic: {titles}")

    # 4. each dock alone (the Cohort dock on a cohort of the one sample slide)
    _widget(viewer, "Cohort").open_cohort(str(slide), work / "results")
    for file_name, (display_name, size_px) in DOCK_SHOTS.items():
        dock_shot(viewer, display_name, size_px, out / file_name)
    viewer.close()
    for file_name in (*WINDOW_SHOTS, *DOCK_SHOTS):
        size = save_small_png(out / file_name)
        print(f"wrote {out / file_name} ({size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
