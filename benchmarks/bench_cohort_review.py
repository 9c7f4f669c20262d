"""Cohort review benchmark: opening the next slide whose result is cached, and the reports.

Run under a display: ``xvfb-run -a -s "-screen 0 1440x900x24" python
benchmarks/bench_cohort_review.py``. Writes ``--slides`` synthetic slides (1536 x 1024 px at
0.5 µm/px, about 13 tissue tiles), scores them with a small max-MIL head on the weight-free
stain-statistics features, opens a viewer with the review docks (Slide and model, Heatmap,
Top tiles, Review) and the Cohort dock, and measures, as wall time per slide:

- ``CohortPanel.step(+1)``: the previous slide's layers removed, the next slide opened, its
  session made with the cached result, heatmap and top-tile docks updated (Qt events
  processed until the dock is idle);
- ``Cohort.open`` of the saved cohort (a restart);
- ``write_slide_report`` with 4 top tiles inspected, and ``write_cohort_report``.

The step is also given as CPU time of this process (``time.process_time``, all its threads):
on a machine shared with other jobs the wall time mostly measures waiting for a core.

Prints a markdown table. Nothing here asserts; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def scored_cohort(work: Path, n_slides: int) -> Path:
    """``n_slides`` synthetic slides in ``work/slides`` (1536 x 1024 px, seeds 100...),
    scored by a small max-MIL head on stain statistics into ``work/results``; returns it."""
    import torch

    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.scoring import score_unscored
    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.mil import create_model, save_model

    for i in range(n_slides):
        write_synthetic_slide(
            work / "slides" / f"case_{i}.svs", width_px=1536, height_px=1024, seed=100 + i
        )
    torch.manual_seed(0)
    model = save_model(
        create_model("max-mil", 64, hidden=[8]),
        work / "m.safetensors",
        extractor="imilia-stain-stats",
        mpp=0.5,
    )
    cohort = Cohort.build(work / "slides", work / "results")
    score_unscored(cohort, model_path=model, device="cpu")
    return work / "results"


def _process_events(seconds: float = 0.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    QApplication.processEvents()
    while time.perf_counter() < end:
        QApplication.processEvents()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=5, help="slides in the cohort")
    parser.add_argument(
        "--docks",
        default="Slide and model,Heatmap,Top tiles,Review",
        help="docks open beside the Cohort dock, comma-separated ('' for none)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imilia_bench_cohort_"))

    import napari

    from napari_imilia.cohort.review import Cohort
    from napari_imilia.report import write_cohort_report, write_slide_report

    scored_cohort(work, args.slides)

    viewer = napari.Viewer(show=True)
    docks = [name for name in args.docks.split(",") if name]
    for name in docks:
        viewer.window.add_plugin_dock_widget("napari-imilia", name, tabify=True)
    _, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Cohort")
    panel.open_cohort(work / "results")
    panel.step(+1)  # the first slide: imports and first-use costs are not counted
    _process_events(1.0)
    step_s, step_cpu_s = [], []
    for _ in range(args.slides - 1):
        start, start_cpu = time.perf_counter(), time.process_time()
        assert panel.step(+1)
        _process_events()
        step_s.append(time.perf_counter() - start)
        step_cpu_s.append(time.process_time() - start_cpu)
    viewer.close()

    start = time.perf_counter()
    reopened = Cohort.open(work / "results")
    open_s = time.perf_counter() - start
    start = time.perf_counter()
    write_slide_report(reopened.slide_dir(0), top_k=4)
    slide_report_s = time.perf_counter() - start
    start = time.perf_counter()
    write_cohort_report(reopened)
    cohort_report_s = time.perf_counter() - start

    print("| step | wall time |")
    print("|---|---|")
    print(
        f"| next cached slide (Cohort dock + {len(docks)} docks, {len(step_s)} steps) | median "
        f"{statistics.median(step_s):.2f} s, max {max(step_s):.2f} s |"
    )
    print(
        f"| same, CPU time of this process | median {statistics.median(step_cpu_s):.2f} s, "
        f"max {max(step_cpu_s):.2f} s |"
    )
    print(f"| `Cohort.open` ({args.slides} slides) | {open_s * 1000:.0f} ms |")
    print(f"| `write_slide_report` (4 top tiles) | {slide_report_s:.2f} s |")
    print(
        f"| `write_cohort_report` ({args.slides} slides, 2000 bootstraps) | "
        f"{cohort_report_s:.2f} s |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
