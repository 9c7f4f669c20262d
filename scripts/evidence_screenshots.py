"""Screenshots of the evidence panel of the slide grade form for docs/cells.md and
docs/cohort_review.md.

Run from the repository root::

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/evidence_screenshots.py

It writes 12 generated slides (0 to 3 planted inflamed areas), scores them with the bundled
demo model and makes their census (classical cells, stain-heuristic epithelium), all in a
temporary folder. A stand-in reviewer, "Dr Demo", grades the items of the first 11 slides
from their census values (tertiles of the cohort's worst-window densities: generated grades,
for the picture only, not a pathologist's), so the proposals of the 12th come with their
leave-one-out kappa. The Cohort dock opens on the 12th slide and ``--out`` (default
``docs/images``) gets:

- ``evidence_cohort_1366x768.png``: the window, the Cohort dock scrolled to the panel;
- ``evidence_panel.png``: the panel alone (item grades, evidence, top tiles, proposals);
- ``evidence_no_census.png``: the panel of a slide without a census (the Run offered).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_screenshots import raise_dock, save_small_png, settle, wait_for, window_shot

READER = "Dr Demo"
N_SLIDES = 12


def make_cohort(folder: Path) -> tuple[Path, Path]:
    """Slides, their scores and censuses; returns (slides folder, results folder)."""
    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.interpret.census import census_slide
    from napari_imilia.predict.slide import predict_slide

    slides, results = folder / "slides", folder / "results"
    slides.mkdir(parents=True)
    for i in range(N_SLIDES):
        slide = write_synthetic_slide(
            slides / f"case_{i:02d}.svs",
            width_px=1344,
            height_px=1120,
            seed=40 + i,
            inflamed_regions="random" if i % 4 else (),
            n_inflamed_regions=max(1, i % 4),
            levels=(1, 4),
        )
        predict_slide(slide, results, progress=False)
        census_slide(slide, results, workers=2)
        print("slide", i, "done", flush=True)
    return slides, results


def stand_in_grades(results: Path, slide_ids: list[str]) -> None:
    """Items of all but the last slide graded by tertiles of the census values."""
    import numpy as np

    from napari_imilia.review.grade import SlideGrade
    from napari_imilia.review.grading import commit_grade
    from napari_imilia.review.indices import EROSION, ITEMS_BY_KEY, index_values
    from napari_imilia.review.proposals import slide_evidence

    evidence = {s: {e.key: e for e in slide_evidence(results, s)} for s in slide_ids}
    for key, item in ITEMS_BY_KEY.items():
        if key == EROSION:
            continue
        values = np.array([evidence[s][key].worst for s in slide_ids], np.float64)
        cuts = np.nanquantile(values, [1 / 3, 2 / 3])
        for s, value in zip(slide_ids, values, strict=True):
            grade = int(np.searchsorted(cuts, value, side="right"))
            evidence[s][key] = min(grade, item.max_grade)
    for s in slide_ids[:-1]:
        items = {k: v for k, v in evidence[s].items() if isinstance(v, int)} | {EROSION: 0}
        nancy = index_values(items)["nancy_from_items"]
        commit_grade(results, s, READER, SlideGrade(nancy=nancy, items=items))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["IMILIA_CONFIG_DIR"] = str(Path(folder) / "config")
        from napari_imilia.review.reviewer import save_reviewer

        save_reviewer(READER)
        slides, results = make_cohort(Path(folder))
        ids = [f"case_{i:02d}" for i in range(N_SLIDES)]
        stand_in_grades(results, ids)
        shots(slides, results, out)
    return 0


def shots(slides: Path, results: Path, out: Path) -> None:
    import shutil

    from docs_screenshots import _widget

    from napari_imilia._napari.launch import open_review_viewer
    from napari_imilia._napari.state import viewer_state

    viewer = open_review_viewer(slides / f"case_{N_SLIDES - 1:02d}.svs", results, show=True)
    panel = _widget(viewer, "Cohort")
    cohort = panel.open_cohort(slides, results)
    settle(1.0)
    panel.open_index(N_SLIDES - 1)
    state = viewer_state(viewer)
    wait_for(lambda: state.census.data is not None, "the census")
    raise_dock(viewer, "Cohort")
    form = panel.grade_form
    form.evidence.section.set_unfolded(True)  # folded until the reviewer opens it
    from napari_imilia._napari.roles import HEATMAP_ROLE, layers_with_role

    for layer in layers_with_role(viewer, HEATMAP_ROLE):  # the density map alone: one scale
        layer.visible = False
    settle(1.0)
    for name, dock in viewer.window._wrapped_dock_widgets.items():
        if "Cohort" not in name:  # the Cohort dock alone in the right column
            dock.setVisible(False)
    settle(1.0)
    scroll = getattr(panel, "scroll_area", None)
    if scroll is not None:
        from qtpy.QtCore import QPoint

        top = form.evidence.mapTo(scroll.widget(), QPoint(0, 0)).y()  # the panel at the top
        scroll.verticalScrollBar().setValue(top - 8)
        scroll.horizontalScrollBar().setValue(0)
    viewer.reset_view()
    shot(viewer, out / "evidence_cohort_1366x768.png")
    form.evidence.grab().save(str(out / "evidence_panel.png"))
    print(out / "evidence_panel.png", save_small_png(out / "evidence_panel.png"))
    # a slide whose census is removed: the panel offers the Run
    shutil.rmtree(results / "case_00" / "census")
    panel.open_index(0)
    wait_for(lambda: state.census.data is None, "no census")
    settle(0.5)
    form.evidence.grab().save(str(out / "evidence_no_census.png"))
    print(out / "evidence_no_census.png", save_small_png(out / "evidence_no_census.png"))
    del cohort
    viewer.close()


def shot(viewer, path: Path) -> None:
    """The window (``docs_screenshots.window_shot``), kept small."""
    window_shot(viewer, path)
    print(path, save_small_png(path))


if __name__ == "__main__":
    sys.exit(main())
