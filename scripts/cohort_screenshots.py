"""Screenshots of docs/cohort_review.md: the review workspace with a cohort, the Cohort dock
and both HTML reports.

Generates a small synthetic cohort (half with planted inflamed areas), scores it with the
bundled demo model, grades a few slides in the Cohort dock, writes the reports and
screenshots them in headless Chromium. The review workspace with the cohort open and a
slide opened from the table is shot on a 1366 x 768 and a 1920 x 1080 screen
(``cohort_workspace_<screen>.png``, each in a child process on a private Xvfb of that
size). Run under a display (``xvfb-run -a``):

    xvfb-run -a -s "-screen 0 1440x900x24" python scripts/cohort_screenshots.py --out docs/images
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from docs_screenshots import save_small_png as small_png
from docs_screenshots import settle

N_SLIDES = 8
SIZE_PX = (1536, 1024)
WORKSPACE_SCREENS = ("1366x768", "1920x1080")
REVIEWER = "AB"


def make_cohort(work: Path) -> Path:
    """The slides and a labels CSV (slide, active, nancy) from their truth files."""
    import numpy as np

    from napari_imilia.demo.sample import write_synthetic_slide

    rng = np.random.default_rng(7)
    rows = ["slide,active,nancy"]
    for i in range(N_SLIDES):
        inflamed = i % 2 == 0
        path = write_synthetic_slide(
            work / "slides" / f"biopsy_{i + 1:02d}.svs",
            width_px=SIZE_PX[0],
            height_px=SIZE_PX[1],
            seed=2000 + i,
            inflamed_regions="random" if inflamed else (),
            n_inflamed_regions=2,
        )
        nancy = int(rng.integers(2, 5)) if inflamed else int(rng.integers(0, 2))
        rows.append(f"{path},{int(inflamed)},{nancy}")
    labels = work / "labels.csv"
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return labels


def chromium_shot(page: Path, png: Path, size: tuple[int, int]) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", page.as_uri()],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip


def workspace_shot(labels: Path, results: Path, png: Path) -> None:
    """The review workspace (Plugins menu's *Review workspace*) on this display's screen,
    the cohort open in the Cohort dock and its third slide opened from the table, a Nancy
    grade chosen (not saved yet: its definition shows)."""
    import napari

    from napari_imilia._napari.compat import main_window
    from napari_imilia._napari.display import _close_notifications

    viewer = napari.Viewer(show=True)
    viewer.window.add_plugin_dock_widget("napari-imilia", "Review workspace")
    settle(1.0)
    panel = viewer.window.dock_widgets["Cohort (napari-imilia)"]
    panel.open_cohort(labels, results)
    panel.open_index(2)
    panel.grade_form.nancy_combo.setCurrentIndex(3)
    _close_notifications()
    settle(2.0)
    main_window(viewer).grab().save(str(png))
    viewer.close()


def workspace_shots(labels: Path, results: Path, out: Path) -> list[Path]:
    """``cohort_workspace_<screen>.png`` for each of ``WORKSPACE_SCREENS``, each in a child
    process on a private Xvfb of that size."""
    import sys

    from napari_imilia._napari.display import private_xvfb

    written = []
    for screen in WORKSPACE_SCREENS:
        png = out / f"cohort_workspace_{screen}.png"
        with private_xvfb(f"{screen}x24") as display:
            env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
            command = [sys.executable, __file__, "--workspace-child", str(labels), str(results)]
            subprocess.run([*command, "--out", str(png)], env=env, check=True, timeout=600)
        written.append(png)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs")
    parser.add_argument(
        "--workspace-child", nargs=2, metavar=("LABELS", "RESULTS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.workspace_child:
        workspace_shot(*(Path(p) for p in args.workspace_child), Path(args.out))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="imilia_cohort_screens_"))
    os.environ["IMILIA_CONFIG_DIR"] = str(work / "config")

    import napari

    from napari_imilia._napari.compat import main_window
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.scoring import score_unscored
    from napari_imilia.report import write_reports
    from napari_imilia.review.grade import SlideGrade
    from napari_imilia.review.reviewer import save_reviewer

    save_reviewer(REVIEWER)  # the children share the settings: no dialog asks for a name
    labels = make_cohort(work)
    results = work / "results"
    cohort = Cohort.build(labels, results)
    score_unscored(cohort, device="cpu")

    viewer = napari.Viewer(show=True)
    main_window(viewer).resize(1440, 900)
    viewer.window.add_plugin_dock_widget("napari-imilia", "Heatmap")
    dock, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Cohort")
    panel.open_cohort(labels, results)
    for _ in range(3):
        panel.step(+1)
        settle(0.5)
    for row, grade in (
        (
            0,
            SlideGrade(nancy=3, model_agreement="agree", note="crypt abscesses", reviewer=REVIEWER),
        ),
        (1, SlideGrade(nancy=1, model_agreement="agree", reviewer=REVIEWER)),
    ):
        panel.cohort.set_grade(row, grade)
    panel.open_index(2)
    form = panel.grade_form
    form.nancy_combo.setCurrentIndex(3)  # Nancy 2, not saved yet: the definition shows
    panel._refresh()
    from napari_imilia._napari.display import _close_notifications

    _close_notifications()
    settle(2.0)
    dock.setFloating(True)
    dock.resize(640, 900)
    settle(1.5)
    panel.grab().save(str(out / "cohort_dock.png"))
    panel.grab().save(str(out / "dock_cohort.png"))  # the user guide's copy
    viewer.close()

    shots = workspace_shots(labels, results, out)
    written = write_reports(Cohort.open(results), top_k=4)
    chromium_shot(written["html"], out / "cohort_report.png", (1200, 2200))
    first = Cohort.open(results)[0].slide_id
    chromium_shot(results / first / "report.html", out / "slide_report.png", (1100, 2300))
    names = ("cohort_dock.png", "dock_cohort.png", *(shot.name for shot in shots))
    for name in (*names, "cohort_report.png", "slide_report.png"):
        print(f"wrote {out / name} ({small_png(out / name) / 1000:.0f} kB)")
    print(f"reports in {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
