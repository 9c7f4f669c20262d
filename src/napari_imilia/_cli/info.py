"""``imilia info SLIDE``: what napari-imilia sees in a slide, without reading its pixels.

Format, backend, levels (native and lazy), MPP and where it came from, objective, vendor and
associated images; ``--json`` prints :meth:`Slide.summary` instead, for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from napari_imilia._cli.paths import user_path
from napari_imilia._cli.predict import add_slide_backend_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="describe slides: format, backend, levels, MPP and its source, vendor",
        description=(
            "Open each slide as napari-imilia does (no pixels are read) and print its format, "
            "the library that reads it, its levels (level-0 px, downsample, native or lazy), "
            "the MPP (µm/px) and where it came from, the objective magnification, the vendor "
            "and the associated images. Formats: see docs/formats.md."
        ),
        epilog="examples:\n  imilia info slide.svs\n  imilia info dicom_folder/ --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "slides", type=user_path, nargs="+", metavar="SLIDE", help="slide files or DICOM folders"
    )
    parser.add_argument("--mpp", type=float, default=None, help="level-0 µm/px override")
    add_slide_backend_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per slide")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia.slide import open_slide

    for index, path in enumerate(args.slides):
        with open_slide(path, mpp=args.mpp, backend=args.slide_backend) as slide:
            summary = slide.summary()
        if args.json:
            print(json.dumps(summary))
            continue
        if index:
            print()
        print(describe(summary))
    return 0


def describe(summary: dict[str, Any]) -> str:
    """Human-readable lines for a :meth:`Slide.summary`."""
    width, height = summary["dimensions_px"]
    if summary["mpp"] is None:
        mpp = f"unknown ({summary['mpp_warning'] or 'no MPP metadata'}); pass --mpp"
    else:
        origin = summary.get("mpp_origin")
        mpp = f"{summary['mpp']:.4g} µm/px ({summary['mpp_source']}"
        mpp += f": {origin})" if origin else ")"
        if summary["mpp_warning"]:
            mpp += f"; warning: {summary['mpp_warning']}"
    objective = summary["objective_power"]
    lines = [
        f"slide:       {summary['path']}",
        f"slide_id:    {summary['slide_id']}",
        f"format:      {summary['format']}",
        f"backend:     {summary['backend']}",
        f"size:        {width} x {height} px (level 0)",
        f"MPP:         {mpp}",
        f"objective:   {f'{objective:g}x' if objective else 'unknown'}",
        f"vendor:      {summary['vendor'] or 'unknown'}",
        f"associated:  {', '.join(summary['associated_images']) or 'none'}",
        "levels:",
    ]
    native = summary["native_levels"]
    for index, ((w, h), ds) in enumerate(
        zip(summary["level_dimensions_px"], summary["level_downsamples"], strict=True)
    ):
        kind = "native" if index < native else "lazy (2x mean of the level above)"
        lines.append(f"  {index}: {w} x {h} px, downsample {ds:.4g}, {kind}")
    return "\n".join(lines)
