"""A reviewer's day, timed: the next cached slide with every dock open, a cohort of 1,000
slides in the Cohort dock, and its cohort report (issue 21).

Run under a display (Xvfb is fine)::

    xvfb-run -a -s "-screen 0 1366x768x24" python benchmarks/bench_review_day.py

Parts (``--parts``, comma-separated; all by default):

- ``step``: ``--slides`` synthetic slides (1536 x 1024 px at 0.5 µm/px, 13-15 tiles) scored
  by a small max-MIL head; a shown viewer with the whole review workspace (every dock,
  ``open_workspace``) and the cohort open in the Cohort dock. Each step (``Alt+N``'s
  ``CohortPanel.step``) is started from the event loop, which then runs for ``--window-s``;
  a 5 ms heartbeat timer records the loop's ticks. Reported per step: the CPU time of this
  process (all its threads, drawing included) minus that of an idle window of the same
  length, the longest event-loop stall (the longest gap between two ticks, less 5 ms) and
  the most CPU time the UI thread spent between two ticks (on a machine shared with other
  jobs a stall's wall time also counts waiting for a core; its CPU time does not).
- ``cohort``: ``--cohort`` generated results (one ``slide.json`` + ``tiles.csv`` per slide,
  the slide files hard links of one small generated slide, a ``cohort.csv``); wall time of
  ``CohortPanel.open_cohort`` (``Cohort.build`` + the table, Qt events processed), then of
  sorting by score and filtering the table (median of 5 each).
- ``report``: ``write_cohort_report`` of that cohort (2,000 bootstrap resamples).

Prints a markdown table; nothing is asserted (figures: docs/performance.md). Settings and
results go to a temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench_cohort_review import scored_cohort

HEARTBEAT_MS = 5


def _settle(seconds: float = 0.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    QApplication.processEvents()
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.001)


class Heartbeat:
    """A 5 ms timer whose ticks show how long the event loop was blocked."""

    def __init__(self) -> None:
        from qtpy.QtCore import Qt, QTimer

        self.ticks: list[tuple[float, float]] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        self.ticks.append((time.perf_counter(), time.thread_time()))

    def window(self, action, seconds: float) -> tuple[float, float, float]:
        """(process CPU s, longest stall s, longest UI-thread CPU time between two ticks s)
        of running the loop ``seconds`` after ``action``."""
        from qtpy.QtCore import QTimer

        self.ticks.clear()
        cpu = time.process_time()
        start = (time.perf_counter(), time.thread_time())
        if action is not None:
            QTimer.singleShot(0, action)
        _settle(seconds)
        cpu = time.process_time() - cpu
        ticks = [start, *self.ticks, (time.perf_counter(), time.thread_time())]
        gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(ticks)]
        wall = max(g[0] for g in gaps)
        busy = max(g[1] for g in gaps)
        return cpu, max(wall - HEARTBEAT_MS / 1000, 0.0), busy


def bench_step(work: Path, n_slides: int, steps: int, window_s: float) -> list[str]:
    import napari

    from napari_imilia._napari.workspace import open_workspace

    results = scored_cohort(work, n_slides)
    viewer = napari.Viewer(show=True)
    docks = open_workspace(viewer)
    panel = docks["Cohort"].inner_widget()
    panel.open_cohort(results)
    beat = Heartbeat()
    direction = [+1]

    def step() -> None:
        if not panel.step(direction[0]):
            direction[0] *= -1
            panel.step(direction[0])

    for _ in range(2):  # first uses: imports, first layers, first draws
        beat.window(step, window_s)
    idle_cpu, idle_stall, _ = beat.window(None, window_s)
    cpu, stalls, busy = [], [], []
    for _ in range(steps):
        used, stall, stall_cpu = beat.window(step, window_s)
        cpu.append(used - idle_cpu)
        stalls.append(stall * 1000)
        busy.append(stall_cpu * 1000)
    viewer.close()
    return [
        f"| next cached slide, every dock open ({steps} steps): CPU time | median "
        f"{statistics.median(cpu):.2f} s, max {max(cpu):.2f} s |",
        f"| same: longest event-loop stall, wall | median {statistics.median(stalls):.0f} ms, "
        f"max {max(stalls):.0f} ms |",
        f"| same: most UI-thread CPU time between two ticks | median "
        f"{statistics.median(busy):.0f} ms, "
        f"max {max(busy):.0f} ms |",
        f"| idle window of {window_s:g} s (subtracted): CPU, longest stall | "
        f"{idle_cpu:.2f} s, {idle_stall * 1000:.0f} ms |",
    ]


def generated_results(work: Path, n_slides: int) -> Path:
    """``n_slides`` results made from one scored slide (``slide.json`` and ``tiles.csv``
    rewritten per slide, the slide file hard-linked) and their ``cohort.csv``."""
    import numpy as np
    import pandas as pd

    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.predict.slide import predict_slide

    seed_slide = write_synthetic_slide(
        work / "seed" / "seed.svs", width_px=1536, height_px=1024, seed=7, levels=(1, 4)
    )
    seed = predict_slide(
        seed_slide, work / "seed_results", device="cpu", progress=False, decode_workers=0
    )
    rng = np.random.default_rng(0)
    root, slides = work / "results_1000", work / "slides_1000"
    slides.mkdir(parents=True)
    rows = []
    for i in range(n_slides):
        slide_id = f"case_{i:04d}"
        path = slides / f"{slide_id}.svs"
        os.link(seed_slide, path)
        folder = root / slide_id
        folder.mkdir(parents=True)
        score = float(rng.uniform())
        info = {**seed.info, "slide": str(path), "slide_id": slide_id, "score": score}
        (folder / "slide.json").write_text(json.dumps(info), encoding="utf-8")
        for name in ("tiles.csv", "heatmap.png", "tiles.geojson"):
            shutil.copyfile(seed.out_dir / name, folder / name)
        rows.append({"slide": str(path), "slide_id": slide_id, "status": "ok", "score": score})
    pd.DataFrame(rows).to_csv(root / "cohort.csv", index=False)
    labels = pd.DataFrame(
        {"slide": [r["slide"] for r in rows], "active": rng.integers(0, 2, n_slides)}
    )
    labels.to_csv(work / "labels_1000.csv", index=False)
    return root


def bench_cohort(work: Path, n_slides: int) -> tuple[list[str], Path]:
    import napari
    from qtpy.QtCore import Qt

    root = generated_results(work, n_slides)
    viewer = napari.Viewer(show=True)
    _, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Cohort")
    _settle(0.5)

    def timed(action) -> tuple[float, float]:
        """Wall and CPU time (this process, all threads) of ``action`` and its Qt events."""
        start, cpu = time.perf_counter(), time.process_time()
        action()
        _settle()
        return time.perf_counter() - start, time.process_time() - cpu

    open_s = timed(lambda: panel.open_cohort(work / "labels_1000.csv", root))
    sort_s, filter_s = [], []
    for i in range(5):
        order = Qt.SortOrder.DescendingOrder if i % 2 else Qt.SortOrder.AscendingOrder
        sort_s.append(timed(lambda o=order: panel.table.sortByColumn(1, o)))  # score
        filter_s.append(timed(lambda i=i: panel.filter_edit.setText(f"case_0{i}")))
        panel.filter_edit.setText("")
        _settle()
    shown = panel.proxy.rowCount()
    viewer.close()

    def ms(times: list[tuple[float, float]]) -> str:
        wall, cpu = (statistics.median(t[k] for t in times) * 1000 for k in (0, 1))
        return f"{wall:.0f} ms wall, {cpu:.0f} ms CPU"

    lines = [
        f"| {n_slides} generated results: open in the Cohort dock | {ms([open_s])} |",
        f"| sort the table by score (median of 5) | {ms(sort_s)} |",
        f"| filter the table by text (median of 5) | {ms(filter_s)} ({shown} rows after) |",
    ]
    return lines, root


def bench_report(work: Path, root: Path) -> list[str]:
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.report import write_cohort_report

    cohort = Cohort.build(work / "labels_1000.csv", root)
    start, cpu = time.perf_counter(), time.process_time()
    write_cohort_report(cohort)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return [
        f"| `write_cohort_report` ({len(cohort)} slides, 2000 bootstraps) | "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU |"
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="step,cohort,report")
    parser.add_argument("--slides", type=int, default=6, help="slides of the step cohort")
    parser.add_argument("--steps", type=int, default=8, help="steps measured")
    parser.add_argument("--window-s", type=float, default=1.5, help="loop time per step")
    parser.add_argument("--cohort", type=int, default=1000, help="slides of the big cohort")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    work = Path(tempfile.mkdtemp(prefix="imilia_bench_day_"))
    os.environ["IMILIA_CONFIG_DIR"] = str(work / "config")
    os.environ["IMILIA_RESULTS_DIR"] = str(work / "default_results")
    from napari_imilia.review.reviewer import save_reviewer

    save_reviewer("Dr Bench")  # no dialog asks for a name
    lines = ["| what | time |", "|---|---|"]
    if "step" in parts:
        lines += bench_step(work, args.slides, args.steps, args.window_s)
    if parts & {"cohort", "report"}:
        cohort_lines, root = bench_cohort(work, args.cohort)
        lines += cohort_lines if "cohort" in parts else []
        if "report" in parts:
            lines += bench_report(work, root)
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
