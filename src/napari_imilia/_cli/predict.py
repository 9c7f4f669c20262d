"""``imilia predict``: score whole slides and write tiles, heatmap and GeoJSON per slide."""

from __future__ import annotations

import argparse
import sys

from napari_imilia.device import DEVICE_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score slides for inflammation (tiles.csv, slide.json, heatmap.png, tiles.geojson)",
        description=(
            "Detect tissue, tile it at the model's MPP, extract tile features (cached), score "
            "the slide and every tile with a MIL model, and write per slide into "
            "OUT/<slide_id>/: tiles.csv (level-0 px coordinates, score, rank), slide.json, "
            "heatmap.png and tiles.geojson (QuPath). Several slides write OUT/cohort.csv too."
        ),
    )
    parser.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files (SVS, TIFF...)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--model",
        nargs="+",
        default=None,
        help="MIL checkpoint(s): our .safetensors (+ .json), IMILIA fold .pt files, or a folder "
        "of them (an ensemble: mean of logits). Default: the bundled DEMO model.",
    )
    parser.add_argument(
        "--extractor",
        default=None,
        help="feature extractor name (see `imilia extractors`); default: the one the model "
        "was trained on",
    )
    parser.add_argument(
        "--extractor-weights", default=None, help="local weights file for the extractor"
    )
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument(
        "--mpp", type=float, default=None, help="level-0 µm/px, overriding the slide's metadata"
    )
    parser.add_argument("--target-mpp", type=float, default=None, help="tiling µm/px")
    parser.add_argument("--tile-px", type=int, default=None, help="tile size in pixels")
    parser.add_argument("--cache-dir", default=None, help="feature cache (default OUT/features)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=None, help="tile decoding threads")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run slides on a dask.distributed LocalCluster with this many worker processes",
    )
    parser.add_argument(
        "--scheduler", default=None, help="address of a running dask.distributed scheduler"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia.cohort import predict_cohort

    model_path = args.model[0] if args.model and len(args.model) == 1 else args.model
    options = {
        "model_path": model_path,
        "extractor_name": args.extractor,
        "extractor_weights": args.extractor_weights,
        "device": args.device,
        "mpp": args.mpp,
        "target_mpp": args.target_mpp,
        "tile_px": args.tile_px,
        "cache_dir": args.cache_dir,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
    }

    def report(row: dict) -> None:
        if row["status"] == "ok":
            print(f"{row['slide_id']}: score {row['score']:.4f} ({row['n_tiles']} tiles)")
        else:
            print(f"{row['slide']}: error: {row['error']}", file=sys.stderr)

    table = predict_cohort(
        args.slides,
        args.out,
        scheduler=args.scheduler,
        n_workers=args.workers,
        on_result=report,
        **options,
    )
    return 0 if (table["status"] == "ok").all() else 2
