"""Screenshots of docs/reader_study.md: reading blind in the Cohort dock at 1366x768 (before
and after the grade is committed) and the reader-study report in headless Chromium.

Generates the synthetic cohort of scripts/cohort_screenshots.py, scores it with the bundled
demo model, sets up a blinded study with a second read for three readers, lets two of them
grade every slide (planted agreement: the labels, one grade off now and then) and the third
(the one at the screen) grade a few. Run under a display:

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/study_screenshots.py --out docs/images
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort_screenshots import chromium_shot, make_cohort, settle, small_png

READERS = ("Dr Ada", "Dr Bo", "Dr Cy")
SCREEN = (1366, 768)


def grade_as_others(results: Path) -> None:
    """Bo and Cy read every slide (Cy again after the model on half); Ada three slides."""
    import numpy as np

    from napari_imilia.cohort.review import Cohort
    from napari_imilia.report.cohort_report import csv_truth
    from napari_imilia.review.grade import SlideGrade

    rng = np.random.default_rng(5)
    for reader in READERS:
        cohort = Cohort.open(results, reader=reader)
        order = cohort.study.order_for(reader)
        for n, slide_id in enumerate(order[:3] if reader == READERS[0] else order):
            index = cohort.index_of(slide_id)
            truth, _ = csv_truth(cohort[index].labels)
            nancy = int(np.clip(truth + rng.choice([-1, 0, 0, 1]), 0, 4))
            cohort.set_grade(index, SlideGrade(nancy=nancy, note=f"{reader} read"))
            if reader != READERS[1] and n % 2 == 0:
                call = cohort[index].score >= 0.5
                cohort.set_grade(index, SlideGrade(nancy=max(nancy, 2) if call else min(nancy, 1)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="imilia_study_screens_"))
    os.environ["IMILIA_CONFIG_DIR"] = str(work / "config")

    import napari

    from napari_imilia._napari.display import _close_notifications
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.scoring import score_unscored
    from napari_imilia.report import write_reports
    from napari_imilia.review.reviewer import save_reviewer
    from napari_imilia.review.study import create_study

    labels = make_cohort(work)
    results = work / "results"
    cohort = Cohort.build(labels, results)
    score_unscored(cohort, device="cpu")
    slides = [item.slide_id for item in cohort.items if not item.error]
    create_study(results, slides, READERS, blinded=True, second_read=True, seed=7, name="pilot")
    grade_as_others(results)
    save_reviewer(READERS[0])

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*SCREEN)
    heatmap, _ = viewer.window.add_plugin_dock_widget("napari-imilia", "Heatmap")
    dock, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Cohort")
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks([heatmap, dock], [120, 560], Qt.Orientation.Vertical)
    panel.open_cohort(labels, results)
    fourth = panel.cohort.study.order_for(READERS[0])[3]  # not read by Ada yet: blind
    panel.open_index(panel.cohort.index_of(fourth))
    settle(2.0)  # the docks take the new slide in a turn of the event loop: type after it
    form = panel.grade_form
    form.nancy_combo.setCurrentIndex(form.nancy_combo.findData(2))
    form.note_edit.setText("a few neutrophils in the lamina propria")
    form.keep_draft()
    _close_notifications()
    settle(2.0)
    viewer.screenshot(str(out / "study_blind_1366x768.png"), canvas_only=False, flash=False)
    dock.setFloating(True)
    dock.resize(560, 1000)
    settle(1.0)
    panel.grab().save(str(out / "study_dock_blind.png"))
    dock.setFloating(False)
    viewer.window._qt_window.resizeDocks([heatmap, dock], [120, 560], Qt.Orientation.Vertical)
    form.save()  # committed: the model is shown, the second read offered
    _close_notifications()
    settle(2.0)
    viewer.screenshot(str(out / "study_revealed_1366x768.png"), canvas_only=False, flash=False)
    dock.setFloating(True)
    dock.resize(560, 1000)
    settle(1.0)
    panel.grab().save(str(out / "study_dock.png"))
    viewer.close()

    written = write_reports(Cohort.open(results, reader="coordinator"), top_k=2)
    chromium_shot(written["study_html"], out / "study_report.png", (1200, 2000))
    for name in ("study_blind_1366x768.png", "study_revealed_1366x768.png", "study_dock.png",
                 "study_dock_blind.png", "study_report.png"):  # fmt: skip
        print(f"wrote {out / name} ({small_png(out / name) / 1000:.0f} kB)")
    print(f"study and reports in {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
