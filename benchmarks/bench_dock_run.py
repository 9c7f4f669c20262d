"""A Run from the Slide and model dock against ``imilia predict`` on the same slide, side by side.

Run under a display (e.g. ``xvfb-run -a -s "-screen 0 1366x768x24" python
benchmarks/bench_dock_run.py``). It generates the sample slide (``--slide`` for another) and,
``--repeats`` times in alternation, scores it with the bundled demo model (``--model`` for
another) into a fresh results folder (nothing cached):

- ``imilia predict SLIDE --out DIR``: the wall time of the command, as a user runs it
  (a new Python process, its imports included);
- the dock: *Run* pressed in the Slide and model dock of a shown napari window, until the
  run has ended and the heatmap layer exists (Qt events processed meanwhile).

It also times how long building the Slide and model dock blocks the UI (first opening, in
this process, torch not imported yet). Medians are printed; nothing asserts. The figures go
to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slide", default="", help="slide file (default: the sample slide)")
    parser.add_argument("--model", default="", help="MIL checkpoint (default: the demo model)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_dock_run_"))
    os.environ["IMILIA_CONFIG_DIR"] = str(work / "config")

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_imilia.demo.sample import sample_slide_path

    slide = Path(args.slide) if args.slide else sample_slide_path()
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    already = "torch" in sys.modules
    started = time.perf_counter()
    _dock, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Slide and model")
    open_s = time.perf_counter() - started
    while not panel.form.choices_loaded:  # the background half (torch import) finishes
        app.processEvents()
        time.sleep(0.01)
    panel.open_slide(slide)
    panel.form.set_model_path(args.model)

    cli_s, dock_s = [], []
    for i in range(args.repeats):
        out = work / f"cli{i}"
        command = [sys.executable, "-m", "napari_imilia.cli", "predict", str(slide)]
        command += ["--out", str(out)] + (["--model", args.model] if args.model else [])
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        cli_s.append(time.perf_counter() - started)

        panel.form.set_results_root(str(work / f"dock{i}"))
        started = time.perf_counter()
        panel.run()
        while panel.running:
            app.processEvents()
            time.sleep(0.005)
        app.processEvents()
        dock_s.append(time.perf_counter() - started)
        outcome = panel.last_outcome
        if outcome is None or outcome.error or outcome.cached:
            raise RuntimeError(f"the dock's run did not score the slide: {outcome}")
    viewer.close()
    cli, dock = statistics.median(cli_s), statistics.median(dock_s)
    print(f"slide: {slide.name}; repeats: {args.repeats}")
    print(
        f"Slide and model dock built in {open_s * 1000:.0f} ms (torch imported before: {already})"
    )
    print(f"imilia predict (CLI, new process): median {cli:.2f} s  {[round(s, 2) for s in cli_s]}")
    print(
        f"Run from the dock:                 median {dock:.2f} s  {[round(s, 2) for s in dock_s]}"
    )
    print(f"dock / CLI: {dock / cli:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
