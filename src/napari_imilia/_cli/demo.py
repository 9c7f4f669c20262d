"""``imilia demo``: the whole pipeline on the sample slide, then napari (or a PNG of it).

Runs ``napari_imilia.demo.run.run_demo`` (sample slide, bundled DEMO model: scores, heatmap,
top tiles, cell and epithelium masks, QuPath GeoJSON and CSV exports), then opens napari
ready for review when a display is usable; with ``--no-viewer`` or without a display it
writes a screenshot of that napari view instead (private Xvfb; a thumbnail at worst).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_imilia._cli.paths import user_path
from napari_imilia.errors import ImiliaError

DEFAULT_OUT = "imilia_demo"
SCREENSHOT_NAME = "slide_view.png"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the sample slide with the DEMO model, then open napari",
        description=(
            "Generate the synthetic IBD H&E sample slide (cached after the first run), score it "
            "with the bundled DEMO model (trained on generated slides, not for diagnosis), "
            "inspect its top tiles (cells, epithelium, markers), and write everything into "
            "--out: tiles.csv, slide.json, heatmap.png, tiles.geojson, markers.csv, "
            "cells.geojson, epithelium.geojson, markers_summary.json, masks/ and "
            "top_tiles.png. Then open napari with the slide, its heatmap and the top tiles "
            "ready when a display is available; with --no-viewer or without a display, write "
            "a screenshot of that view instead."
        ),
    )
    parser.add_argument(
        "--out", type=user_path, default=DEFAULT_OUT, help=f"output folder ({DEFAULT_OUT})"
    )
    parser.add_argument(
        "--top", type=int, default=20, help="top-scoring tiles to inspect for cells (20)"
    )
    parser.add_argument(
        "--mask-tiles", type=int, default=5, help="best tiles whose masks are written (5)"
    )
    parser.add_argument(
        "--no-viewer", action="store_true", help="do not open a napari window; write a PNG"
    )
    parser.add_argument(
        "--screenshot",
        type=user_path,
        default=None,
        help=f"PNG of the napari view to write (default without a viewer: OUT/{SCREENSHOT_NAME})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia._napari import display as launch
    from napari_imilia.demo.run import run_demo

    if args.top < 1:
        raise ImiliaError(f"--top must be at least 1, got {args.top}")
    if args.mask_tiles < 0:
        raise ImiliaError(f"--mask-tiles must be 0 or more, got {args.mask_tiles}")
    out_dir = Path(args.out)  # absolute, as every path option (user_path)
    outputs = run_demo(out_dir, top_k=args.top, mask_tiles=args.mask_tiles)
    demo = " [DEMO model: not for diagnosis]" if outputs.model_is_demo else ""
    print(f"sample slide: {outputs.slide_path}")
    print(
        f"{outputs.slide_dir.name}: inflammation score {outputs.score:.4f} "
        f"({outputs.n_tiles} tiles, model {outputs.model_name}){demo}"
    )
    print(f"{outputs.n_cells} cells in the top {args.top} tiles; wrote {len(outputs.files)} files:")
    for path in outputs.files:
        print(f"  {path}")

    show = not args.no_viewer and launch.display_available() and launch.qt_can_start()
    if args.screenshot or not show:
        png = Path(args.screenshot) if args.screenshot else out_dir / SCREENSHOT_NAME
        rendered = launch.render_view(outputs.slide_path, png, results_root=out_dir)
        print(f"wrote {rendered.path} ({rendered.note})")
    if show:
        print("opening napari; close its window to finish")
        launch.view_slide(outputs.slide_path, results_root=out_dir)
    elif not args.no_viewer:
        print("no usable display: not opening napari (see the PNG above)")
    return 0
