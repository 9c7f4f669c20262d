"""``imilia demo``: the sample slide, opened in napari (or rendered to a PNG without a screen).

This first version generates (or finds in the cache) the synthetic IBD H&E sample slide,
writes its summary, and either opens napari on it or, with no usable display or with
``--no-viewer``, writes a screenshot of the napari view (private Xvfb) or a thumbnail.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_imilia._utils import write_text_atomic

DEFAULT_OUT = "imilia_demo"
SCREENSHOT_NAME = "slide_view.png"
SUMMARY_NAME = "slide_summary.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="open the generated sample slide in napari (a screenshot without a display)",
        description=(
            "Generate the synthetic IBD H&E sample slide (cached after the first run), write "
            "its summary into --out, and open it in napari when a display is available. With "
            "--no-viewer or without a display, write a screenshot of the napari view instead "
            "(rendered on a private Xvfb when installed; a plain thumbnail otherwise)."
        ),
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})")
    parser.add_argument(
        "--no-viewer", action="store_true", help="do not open a napari window; write a PNG"
    )
    parser.add_argument(
        "--screenshot",
        default=None,
        help=f"PNG of the napari view to write (default without a viewer: OUT/{SCREENSHOT_NAME})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia import _viewer_launch as launch
    from napari_imilia.sample import sample_slide_path
    from napari_imilia.slide import open_slide

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    slide_path = sample_slide_path()
    with open_slide(slide_path) as slide:
        summary = slide.summary()
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    width, height = summary["dimensions_px"]
    print(f"sample slide: {slide_path} ({width} x {height} px, {summary['mpp']} µm/px)")
    print(f"wrote {out_dir / SUMMARY_NAME}")

    show = not args.no_viewer and launch.display_available() and launch.qt_can_start()
    if args.screenshot or not show:
        png = Path(args.screenshot) if args.screenshot else out_dir / SCREENSHOT_NAME
        rendered = launch.render_view(slide_path, png)
        print(f"wrote {rendered.path} ({rendered.note})")
    if show:
        print("opening napari; close its window to finish")
        launch.view_slide(slide_path)
    elif not args.no_viewer:
        print("no usable display: not opening napari (see the PNG above)")
    return 0
