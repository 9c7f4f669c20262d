"""``imilia predict``: score whole slides and write tiles, heatmap and GeoJSON per slide.

One slide runs ``predict_slide`` here (its errors are the command's: exit status 2); several
run through ``predict_cohort`` (in this process, or on dask.distributed with ``--workers`` /
``--scheduler``) and also write ``OUT/cohort.csv``; the exit status is 2 when any failed.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from napari_imilia.device import DEVICE_CHOICES
from napari_imilia.errors import ImiliaError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score slides for inflammation (tiles.csv, slide.json, heatmap.png, tiles.geojson)",
        description=textwrap.fill(
            "Detect tissue, tile it at the model's MPP, extract tile features (cached), score "
            "the slide and every tile with a MIL model, and write per slide into "
            "OUT/<slide_id>/: tiles.csv (tile_id, x, y, width, height in level-0 px, "
            "tissue_fraction, score, rank, attention when the model has it), slide.json "
            "(slide score, model and its sha256, extractor, MPP, tile size, tile count, "
            "seconds), heatmap.png (tile scores over the thumbnail) and tiles.geojson "
            "(QuPath: File > Import objects). Several slides write OUT/cohort.csv too "
            "(slide, slide_id, status, score, n_tiles, error); a slide that fails does not stop "
            "the others. A progress bar shows tiles/s and the time left while features are "
            "extracted.",
            width=88,
        ),
        epilog=(
            "examples:\n"
            "  imilia predict slide.svs --out results/\n"
            "  imilia predict slides/*.svs --out results/ --model imilia_chowder/ \\\n"
            "      --extractor h0-mini --extractor-weights h0-mini.safetensors --workers 4"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "slides",
        nargs="+",
        metavar="SLIDE",
        help="slide files (SVS, TIFF, NDPI...: all tiffslide reads)",
    )
    parser.add_argument("--out", required=True, help="output folder; results go to OUT/<slide_id>/")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="PATH",
        help="MIL checkpoint: our .safetensors (+ its .json), an IMILIA fold .pt, or a folder of "
        "them; repeat --model (or give a folder) for an ensemble (mean of logits). "
        "Default: the bundled DEMO model",
    )
    parser.add_argument(
        "--extractor",
        default=None,
        metavar="NAME",
        help="feature extractor (see `imilia extractors`); default: the one the model was "
        "trained on",
    )
    parser.add_argument(
        "--extractor-weights",
        default=None,
        metavar="PATH",
        help="local weights file of a ViT extractor (nothing is downloaded)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="where the extractor and model run: auto (CUDA when available), cpu or cuda",
    )
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 µm/px, overriding (or standing in for missing) slide metadata",
    )
    parser.add_argument(
        "--target-mpp",
        type=float,
        default=None,
        help="µm/px the tiles are read at (default: the model's, else the extractor's)",
    )
    parser.add_argument(
        "--tile-px",
        type=int,
        default=None,
        help="tile side in pixels at --target-mpp (default: the model's, else the extractor's)",
    )
    parser.add_argument(
        "--min-tissue",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="keep tiles with at least this tissue fraction, 0-1 (0.5)",
    )
    parser.add_argument(
        "--tissue-saturation",
        type=float,
        default=None,
        metavar="S",
        help="tissue = HSV saturation above S (0-1) and mean optical density above "
        "--tissue-min-od; default: Otsu's threshold of each, clipped to 0.05-0.15",
    )
    parser.add_argument(
        "--tissue-min-od",
        type=float,
        default=None,
        metavar="OD",
        help="minimum mean optical density of tissue (default: Otsu, 0.05-0.15)",
    )
    parser.add_argument(
        "--keep-pen-marks",
        action="store_true",
        help="do not exclude blue, green and black ink from the tissue mask",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder, one <slide_id>.h5 per slide, reused when its extractor, "
        "tiling and slide match (default: OUT/features)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="tiles per decoded batch and per extractor forward pass (32; more on a big GPU)",
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="tile decoding processes per slide (default: the usable cores the extractor "
        "leaves: all but one beside a GPU, a quarter beside the CPU; 0: decode in the slide's "
        "own process, as every --workers/--scheduler worker does: slide-parallel there)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="score slides in parallel on a dask.distributed LocalCluster of this many "
        "single-threaded worker processes (default: one after the other, here)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask.distributed scheduler (e.g. tcp://host:8786) to send "
        "the slides to instead; its workers must see the same paths",
    )
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Reject impossible option values before any slide is opened."""
    if args.workers is not None and args.scheduler:
        raise ImiliaError("give --workers (a local cluster) or --scheduler, not both")
    if args.workers is not None and args.workers < 1:
        raise ImiliaError(f"--workers must be at least 1, got {args.workers}")
    if not 0.0 <= args.min_tissue <= 1.0:
        raise ImiliaError(f"--min-tissue must be between 0 and 1, got {args.min_tissue}")
    if args.batch_size < 1:
        raise ImiliaError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.num_workers is not None and args.num_workers < 0:
        raise ImiliaError(f"--num-workers must be 0 or more, got {args.num_workers}")
    from napari_imilia.predict import check_tissue_params

    check_tissue_params(predict_options(args)["tissue_params"])
    for name in ("mpp", "target_mpp", "tile_px"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ImiliaError(f"--{name.replace('_', '-')} must be positive, got {value}")


def predict_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``predict_slide`` keyword arguments the options stand for."""
    model_path = args.model[0] if args.model and len(args.model) == 1 else args.model
    return {
        "model_path": model_path,
        "extractor_name": args.extractor,
        "extractor_weights": args.extractor_weights,
        "device": args.device,
        "mpp": args.mpp,
        "target_mpp": args.target_mpp,
        "tile_px": args.tile_px,
        "min_tissue_fraction": args.min_tissue,
        "tissue_params": {
            "saturation_threshold": args.tissue_saturation,
            "min_od": args.tissue_min_od,
            "remove_pen": not args.keep_pen_marks,
        },
        "cache_dir": args.cache_dir,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
    }


def run(args: argparse.Namespace) -> int:
    check_args(args)
    options = predict_options(args)
    if len(args.slides) == 1 and args.workers is None and not args.scheduler:
        from napari_imilia.predict import predict_slide

        result = predict_slide(args.slides[0], args.out, **options)
        _print_result(result.slide_id, result.score, result.info)
        print(f"wrote {result.out_dir}/ ({', '.join(_files())})")
        return 0

    from napari_imilia.cohort import predict_cohort

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
    n_ok = int((table["status"] == "ok").sum())
    print(f"{n_ok} of {len(table)} slides scored; wrote {args.out}/cohort.csv")
    return 0 if n_ok == len(table) else 2


def _files() -> list[str]:
    from napari_imilia.predict import RESULT_FILES

    return list(RESULT_FILES)


def _print_result(slide_id: str, score: float, info: dict) -> None:
    demo = " [DEMO model: not for diagnosis]" if info.get("model_is_demo") else ""
    print(
        f"{slide_id}: score {score:.4f} ({info['n_tiles']} tiles, model {info['model']}, "
        f"{info['seconds']:.1f} s){demo}"
    )
