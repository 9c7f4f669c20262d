"""Review and export benchmark: how long a verdict takes to be safely on disk, and an export.

Run as ``python benchmarks/bench_review.py`` (add ``--gui`` under ``xvfb-run`` to time the
Review dock too). Uses the real ``small_HE.svs`` test slide (../shared/data) scored by a
small Chowder on the builtin extractor, in a temporary folder. Measures, as the median wall
time over ``--repeats`` edits:

- ``ReviewSession.add_review`` and ``update_review`` on a store already holding ``--entries``
  entries (journal line fsynced, snapshot rewritten atomically, folder fsynced);
- with ``--gui``: the Review dock's ``record`` on a tile and on a drawn region (session edit
  plus list refresh and regions layer sync);
- ``export_review_bundle`` (45 tiles, one inspected tile with its cells, all entries).

Prints a markdown table. Nothing here asserts; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SLIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "small_HE.svs"


def _median_ms(step: Callable[[int], object], repeats: int) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _scored(root: Path) -> Path:
    import torch

    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    torch.manual_seed(0)
    model = create_model("imilia-chowder", 64, n_channels=2, n_top=3, n_bottom=3, mlp_hidden=[8])
    path = save_model(model.eval(), root / "model.safetensors", extractor="imilia-stain-stats")
    predict_slide(SLIDE, root / "results", model_path=path, progress=False)
    return root / "results"


def _inspect(session: object, tile_id: str) -> object:
    from napari_imilia.interpret.cells import create_cell_backend

    row = session.tile_row(tile_id)
    x, y = int(row["x"]), int(row["y"])
    rgb = session.slide.read_region((x, y), 0, (int(row["width"]), int(row["height"])))
    return create_cell_backend("classical").segment(
        rgb, mpp=float(session.slide.mpp), level0_xy=(x, y), level0_per_px=1.0
    )


def core_rows(results: Path, entries: int, repeats: int) -> list[tuple[str, float]]:
    from napari_imilia.review.bundle import export_review_bundle
    from napari_imilia.review.session import ReviewSession

    session = ReviewSession.open(SLIDE, results)
    tiles = session.tiles["tile_id"].tolist()
    for i in range(entries):
        session.add_review(verdict="agree", tile_id=tiles[i % len(tiles)], note=f"seed {i}")
    added: list[str] = []

    def add(i: int) -> None:
        added.append(
            session.add_review(verdict="uncertain", tile_id=tiles[0], note=str(i)).entry_id
        )

    rows = [(f"`add_review` ({entries} entries in the store)", _median_ms(add, repeats))]

    def update(i: int) -> None:
        session.update_review(added[i], verdict="disagree", note=f"edited {i}")

    rows.append((f"`update_review` ({entries} entries in the store)", _median_ms(update, repeats)))
    session.store_inspection(tiles[0], _inspect(session, tiles[0]))
    n = len(session.review)
    out = results / "export"
    rows.append(
        (
            f"`export_review_bundle` ({len(tiles)} tiles, 1 inspected, {n} reviews)",
            _median_ms(
                lambda i: export_review_bundle(session, out / str(i)), max(3, repeats // 10)
            ),
        )
    )
    return rows


def gui_rows(results: Path, repeats: int) -> list[tuple[str, float]]:
    import napari

    from napari_imilia._napari.state import viewer_state
    from napari_imilia.export.layers import level0_to_world

    viewer = napari.Viewer(show=False)
    viewer.open(SLIDE, plugin="napari-imilia")
    _, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Review")
    session = viewer_state(viewer).session
    tiles = session.tiles["tile_id"].tolist()
    n = len(session.review)
    verdicts = ("agree", "disagree", "uncertain")

    def tile(i: int) -> None:
        session.select_tile(tiles[i % len(tiles)])
        panel.record(verdicts[i % 3])

    rows = [(f"Review dock `record`, tile ({n}+ entries listed)", _median_ms(tile, repeats))]
    mpp = float(session.slide.mpp)

    def region(i: int) -> None:
        x, y = 100 + 10 * i, 200
        panel.regions.layer.add_rectangles(
            [level0_to_world(np.array([[x, y], [x + 50, y + 80]]), mpp)]
        )
        panel.record("disagree")

    rows.append(("Review dock `record`, new drawn region", _median_ms(region, repeats)))
    viewer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--gui", action="store_true", help="also time the Review dock")
    args = parser.parse_args()
    if not SLIDE.is_file():
        sys.exit(f"{SLIDE} is absent")
    with tempfile.TemporaryDirectory() as tmp:
        results = _scored(Path(tmp))
        import os

        os.environ["IMILIA_RESULTS_DIR"] = str(results)
        os.environ["IMILIA_CONFIG_DIR"] = str(Path(tmp) / "config")
        rows = core_rows(results, args.entries, args.repeats)
        if args.gui:
            rows += gui_rows(results, args.repeats)
    print("| step | median wall ms |\n| --- | ---: |")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
