"""Interaction latency of the review docks: top-tile jump, threshold change, canvas click.

Run under a display (e.g. ``xvfb-run -a -s "-screen 0 1280x1024x24" python
benchmarks/bench_widgets_slide.py``). It scores the generated sample slide once with a
seeded ABMIL head on the builtin extractor (into a temporary folder), opens it with
``open_review_viewer`` (a shown window, 1200 x 900), and times, as the median of ``--repeats``
runs after one warm-up, the wall time from the action to the end of Qt's event processing
(which includes napari's redraw of the exposed canvas; slide tiles napari loads for a new
view are part of it):

- top-tile jump: ``Next`` in the Top tiles list (select, centre + zoom, outline);
- heatmap threshold change: a new threshold value (recompute + upload the heatmap image);
- canvas click: the mouse callback selecting the clicked tile (outline, list follows).

Nothing here asserts; the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def _settle(app, rounds: int = 3) -> None:
    for _ in range(rounds):
        app.processEvents()


def _timed(action, app, repeats: int) -> float:
    """Median seconds of ``action(i)`` followed by Qt event processing (one warm-up)."""
    action(-1)
    _settle(app)
    samples = []
    for i in range(repeats):
        start = time.perf_counter()
        action(i)
        _settle(app)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import torch
    from qtpy.QtWidgets import QApplication

    from napari_imilia._napari.launch import open_review_viewer
    from napari_imilia._napari.layers.placement import tile_centre_world
    from napari_imilia._napari.link import tile_click_callback
    from napari_imilia.demo.sample import sample_slide_path
    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    work = Path(tempfile.mkdtemp(prefix="bench_widgets_"))
    os.environ.setdefault("IMILIA_CONFIG_DIR", str(work / "config"))
    torch.manual_seed(0)
    model = save_model(
        create_model("abmil", in_dim=64).eval(),
        work / "abmil-bench.safetensors",
        extractor="imilia-stain-stats",
        mpp=0.5,
        tile_px=224,
    )
    slide = sample_slide_path()
    started = time.perf_counter()
    result = predict_slide(slide, work / "results", model_path=model, progress=False)
    predict_s = time.perf_counter() - started

    viewer = open_review_viewer(slide, work / "results", show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1200, 900)
    _settle(app, 10)
    docks = viewer.window.dock_widgets
    top, heat = docks["Top tiles (napari-imilia)"], docks["Heatmap (napari-imilia)"]
    top.k_spin.setValue(min(50, len(result.tiles)))
    session = top.session
    mpp = session.slide.mpp

    def jump(i: int) -> None:
        top.select_row((i + 1) % top.list.count())

    scores = np.sort(result.tiles["score"].to_numpy())
    heat.threshold_check.setChecked(True)

    def threshold(i: int) -> None:
        heat.threshold_spin.setValue(float(scores[(i + 1) * 7 % len(scores)]))

    rows = [row for _, row in result.tiles.iterrows()]

    def click(i: int) -> None:
        world = tile_centre_world(rows[(i + 1) * 13 % len(rows)], mpp)
        event = SimpleNamespace(type="mouse_press", position=world, button=1, modifiers=())
        handler = tile_click_callback(viewer, event)
        next(handler)
        event.type = "mouse_release"
        next(handler, None)

    figures = {
        "top-tile jump (Next)": _timed(jump, app, args.repeats),
        "heatmap threshold change": _timed(threshold, app, args.repeats),
        "canvas click selects a tile": _timed(click, app, args.repeats),
    }
    print(f"slide: {slide.name}, {len(result.tiles)} tiles; predict_slide {predict_s:.1f} s")
    print(f"median of {args.repeats} runs after one warm-up\n")
    print("| interaction | median latency |")
    print("| --- | ---: |")
    for name, seconds in figures.items():
        print(f"| {name} | {seconds * 1000:.1f} ms |")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
