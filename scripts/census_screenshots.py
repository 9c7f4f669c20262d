"""Screenshots of the whole-slide census in napari for docs/cells.md.

Run from the repository root, once per screen size (the window fills the screen)::

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/census_screenshots.py --screen 1366x768
    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/census_screenshots.py --screen 1920x1080

It scores the generated sample slide with the bundled demo model and makes its census
(classical cells, stain-heuristic epithelium) in a temporary folder (settings too), opens
``open_review_viewer`` with the Tile inspector raised (its census section below), and
writes into ``--out`` (default ``docs/images``):

- ``census_density_<screen>.png``: the density map of the chronic infiltrate, zoomed out
  (the tile heatmap hidden);
- ``census_cells_<screen>.png``: zoomed in on the densest area, the cells coloured by class
  with their legend;
- ``census_pick_<screen>.png``: the densest tile clicked, its cells listed, its inspection
  drawn;
- ``census_section.png`` (1366 x 768 only): the Tile inspector's census section.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_screenshots import raise_dock, save_small_png, settle, wait_for, window_shot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screen", default="1366x768")
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["IMILIA_CONFIG_DIR"] = str(Path(folder) / "config")
        shots(Path(folder) / "results", out, args.screen)
    return 0


def shots(results: Path, out: Path, screen: str) -> None:
    from napari_imilia._napari.compat import canvas_size_px, viewer_camera
    from napari_imilia._napari.launch import open_review_viewer
    from napari_imilia._napari.link import pick_census_tile_at_world
    from napari_imilia._napari.roles import HEATMAP_ROLE, layers_with_role
    from napari_imilia._napari.state import viewer_state
    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.interpret.census import PRESETS, census_slide
    from napari_imilia.predict.slide import predict_slide

    slide = sample_slide_path()
    predict_slide(slide, results, progress=False)
    census_slide(slide, results)
    viewer = open_review_viewer(slide, results, show=True)
    _, inspector = viewer.window.add_plugin_dock_widget("napari-imilia", "Tile inspector")
    settle(1.0)
    raise_dock(viewer, "Tile inspector")
    state = viewer_state(viewer)
    wait_for(lambda: state.census.data is not None, "the census")
    chronic = PRESETS[1]
    state.census.select(chronic)
    for layer in layers_with_role(viewer, HEATMAP_ROLE):
        layer.visible = False
    viewer.reset_view()
    shot(viewer, out / f"census_density_{screen}.png")

    data = state.census.data
    worst = data.worst_window(chronic, 300)
    x, y, w, h = worst.box
    um = float(state.session.slide.mpp)
    camera = viewer_camera(viewer)
    camera.center = ((y + h / 2) * um, (x + w / 2) * um)
    camera.zoom = canvas_size_px(viewer)[1] / 450.0
    settle(1.0)
    shot(viewer, out / f"census_cells_{screen}.png")

    scored = set(state.session.tiles["tile_id"])
    hot = next(t for t in data.top_tiles(chronic, len(data.tiles)) if t in scored)
    row = data.tiles.set_index("tile_id").loc[hot]
    pick_census_tile_at_world(viewer, ((row["y"] + 112) * um, (row["x"] + 112) * um))
    wait_for(
        lambda: state.inspections.current is not None and state.inspections.current.tile_id == hot,
        "the inspection",
    )
    camera.center = ((row["y"] + 112) * um, (row["x"] + 112) * um)
    camera.zoom = canvas_size_px(viewer)[1] / 300.0
    section = inspector.census  # scrolled into view: the picked tile's cells
    inspector.scroll_area.ensureWidgetVisible(section.cells_table, 0, 0)
    shot(viewer, out / f"census_pick_{screen}.png")
    if screen == "1366x768":  # the census section alone
        section.grab().save(str(out / "census_section.png"))
        print(out / "census_section.png", save_small_png(out / "census_section.png"))
    viewer.close()


def shot(viewer, path: Path) -> None:
    """The window (``docs_screenshots.window_shot``), kept small."""
    window_shot(viewer, path)
    print(path, save_small_png(path))


if __name__ == "__main__":
    sys.exit(main())
