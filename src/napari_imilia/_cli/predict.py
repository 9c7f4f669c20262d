"""``imilia predict``: score whole slides and write tiles, heatmap and GeoJSON per slide.

The options build one :class:`~napari_imilia.predict.settings.PredictSettings`. One slide file
runs ``predict_slide`` here (its errors are the command's: exit status 2); several slides, a
folder, a glob or a CSV (:func:`~napari_imilia.slide.discover.discover_slides`) run through
``predict_cohort`` (in this process, or on dask.distributed with ``--parallel-slides`` /
``--scheduler``) under one overall progress bar and also write ``OUT/cohort.csv``; the exit
status is 2 when any failed, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from napari_imilia._cli._predict_limits import add_limit_options, check_limit_args
from napari_imilia._cli.paths import user_path
from napari_imilia.device import DEVICE_CHOICES
from napari_imilia.errors import ImiliaError

#: ``predict_cohort``'s default, repeated here so ``imilia --help`` need not import it.
SCHEDULER_TIMEOUT_S = 30.0


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
            "(slide, slide_id, status, score, n_tiles, error), merged with the one an earlier "
            "run wrote; a slide that fails does not stop the others, and a slide whose result "
            "is complete and made with the same model, extractor and settings is reused "
            "(--force recomputes). One bar shows the slides done, time left, slides/min and "
            "failures; in this process a bar per slide shows tiles/s. Ctrl-C stops the running "
            "slides, writes cohort.csv for those that finished and exits with status 130.",
            width=88,
        ),
        epilog=(
            "examples:\n"
            "  imilia predict slide.svs --out results/\n"
            "  imilia predict slides/ --out results/ --model chowder/ --parallel-slides 4 \\\n"
            "      --extractor h0-mini --extractor-weights h0-mini.safetensors\n"
            "  imilia predict 'cohort/**/*.svs' --out /shared/results --scheduler tcp://head:8786"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_input_options(parser)
    _add_model_options(parser)
    _add_tiling_options(parser)
    _add_tissue_options(parser)
    _add_run_options(parser)
    _add_cluster_options(parser)
    add_limit_options(parser)
    parser.set_defaults(func=run)


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    """The slides, the output folder, where the slides' pixels come from and ``--mpp``."""
    parser.add_argument(
        "slides",
        type=user_path,
        nargs="+",
        metavar="SLIDE",
        help="slide files or DICOM WSI folders (SVS, OME-TIFF, NDPI, DICOM, MIRAX...: see "
        "docs/formats.md and `imilia info SLIDE`), folders of slides (searched recursively), "
        "quoted glob patterns ('slides/**/*.svs'), CSVs with a slide column, or a results "
        "folder holding cohort.csv",
    )
    parser.add_argument(
        "--out", type=user_path, required=True, help="output folder; results go to OUT/<slide_id>/"
    )
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="level-0 µm/px, overriding (or standing in for missing) slide metadata",
    )
    add_slide_backend_option(parser)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The MIL model, the feature extractor and the device they run on."""
    parser.add_argument(
        "--model",
        type=user_path,
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
        type=user_path,
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


def _add_tiling_options(parser: argparse.ArgumentParser) -> None:
    """Which tiles are scored: their µm/px and size, the tissue they need, the tiling."""
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
        "--tiling",
        choices=("grid", "deepzoom"),
        default="grid",
        help="grid: our tiles at the model's MPP; deepzoom: IMILIA's openslide DeepZoom tiles "
        "(224 px, no overlap) at the DeepZoom level nearest to the model's MPP, tissue-filtered",
    )
    parser.add_argument(
        "--tiles-from",
        type=user_path,
        default=None,
        metavar="NPY",
        help="IMILIA's tiles_coords.npy for the slide ((level, column, row) DeepZoom tiles); "
        "one slide only; implies --tiling deepzoom",
    )
    parser.add_argument(
        "--protocol",
        choices=("imilia",),
        default=None,
        help="imilia: IMILIA's inference (DeepZoom tiles, bags cut / zero-padded to 10,000 rows)",
    )


def _add_tissue_options(parser: argparse.ArgumentParser) -> None:
    """The tissue detection's thresholds and pen marks."""
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


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """How fast and where results are made (not what they are): cache, batches, decoders."""
    parser.add_argument(
        "--cache-dir",
        type=user_path,
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
        "--decode-workers",
        dest="decode_workers",
        type=int,
        default=None,
        metavar="N",
        help="tile decoding processes per slide (default: the usable cores the extractor "
        "leaves: all but one beside a GPU, a quarter beside the CPU; 0: decode in the slide's "
        "own process, as every --parallel-slides/--scheduler worker does: slide-parallel there)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="compute every slide again, even those with a complete result made with the "
        "same model, extractor and settings",
    )


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Slides in parallel: a local dask cluster or a running scheduler (and the old names)."""
    parser.add_argument(
        "--parallel-slides",
        dest="cluster_workers",
        type=int,
        default=None,
        metavar="N",
        help="score N slides at a time on a dask.distributed LocalCluster of N "
        "single-threaded worker processes (default: one after the other, here)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask.distributed scheduler (tcp://host:port, e.g. "
        "tcp://10.0.0.5:8786) to send the slides to instead; its workers must see the same "
        "paths (they are made absolute here)",
    )
    parser.add_argument(
        "--scheduler-timeout",
        type=float,
        default=SCHEDULER_TIMEOUT_S,
        metavar="SECONDS",
        help="give up when the scheduler does not answer, or has no worker, within this "
        f"many seconds ({SCHEDULER_TIMEOUT_S:g}); also while slides run and no worker is left",
    )
    for old, new in (("--num-workers", "--decode-workers"), ("--workers", "--parallel-slides")):
        parser.add_argument(
            old,
            dest="decode_workers" if new == "--decode-workers" else "cluster_workers",
            type=int,
            action=_DeprecatedOption,
            new_name=new,
            metavar="N",
            help=f"deprecated name of {new} (still works)",
        )


class _DeprecatedOption(argparse.Action):
    """An old option name: works as ``new_name`` and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new_name: str, **kwargs) -> None:
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"imilia predict: note: {option_string} is deprecated, use {self.new_name}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_slide_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--slide-backend``: the library that reads the slides (default: chosen per file)."""
    from napari_imilia.slide import BACKEND_CHOICES

    parser.add_argument(
        "--slide-backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="library that reads the slides: auto (from what the file is: tiffslide for TIFF "
        "formats, wsidicom for DICOM, openslide for MIRAX/VMS/SVSLIDE/CZI) or one of them, "
        "e.g. openslide as a fallback for a TIFF tiffslide misreads",
    )


def check_args(args: argparse.Namespace) -> None:
    """Reject impossible option values before any slide is opened."""
    if args.cluster_workers is not None and args.scheduler:
        raise ImiliaError("give --parallel-slides (a local cluster) or --scheduler, not both")
    if args.cluster_workers is not None and args.cluster_workers < 1:
        raise ImiliaError(f"--parallel-slides must be at least 1, got {args.cluster_workers}")
    if args.scheduler_timeout <= 0:
        raise ImiliaError(f"--scheduler-timeout must be positive, got {args.scheduler_timeout}")
    check_limit_args(args)
    if not 0.0 <= args.min_tissue <= 1.0:
        raise ImiliaError(f"--min-tissue must be between 0 and 1, got {args.min_tissue}")
    if args.batch_size < 1:
        raise ImiliaError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.decode_workers is not None and args.decode_workers < 0:
        raise ImiliaError(f"--decode-workers must be 0 or more, got {args.decode_workers}")
    if args.tiles_from is not None and len(args.slides) != 1:
        raise ImiliaError("--tiles-from lists one slide's tiles: give exactly one slide")
    for name in ("mpp", "target_mpp", "tile_px"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ImiliaError(f"--{name.replace('_', '-')} must be positive, got {value}")


def predict_settings(args: argparse.Namespace) -> Any:
    """The :class:`~napari_imilia.predict.settings.PredictSettings` the options stand for
    (``ImiliaError`` for a bad tissue setting, tiling or ``--tiles-from`` file)."""
    from napari_imilia.predict.settings import PredictSettings

    return PredictSettings.from_keywords(
        model_path=args.model,
        extractor_name=args.extractor,
        extractor_weights=args.extractor_weights,
        mpp=args.mpp,
        target_mpp=args.target_mpp,
        tile_px=args.tile_px,
        min_tissue_fraction=args.min_tissue,
        tissue_params={
            "saturation_threshold": args.tissue_saturation,
            "min_od": args.tissue_min_od,
            "remove_pen": not args.keep_pen_marks,
        },
        tiling=args.tiling,
        tiles_from=args.tiles_from,
        protocol=args.protocol,
    )


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """``predict_slide``'s other keyword arguments: where and how fast results are made."""
    return {
        "device": args.device,
        "cache_dir": args.cache_dir,
        "batch_size": args.batch_size,
        "decode_workers": args.decode_workers,
        "slide_backend": args.slide_backend,
    }


def run(args: argparse.Namespace) -> int:
    check_args(args)
    settings = predict_settings(args)
    if _one_slide_here(args):
        return _predict_one(args, settings)
    from napari_imilia._cli._predict_cohort import predict_many

    return predict_many(args, settings, run_options(args))


def _one_slide_here(args: argparse.Namespace) -> bool:
    """One slide file (not a folder, pattern or CSV) and no cluster: no cohort table."""
    from pathlib import Path

    from napari_imilia.slide.discover import CSV_SUFFIXES

    if len(args.slides) != 1 or args.cluster_workers is not None or args.scheduler:
        return False
    path = Path(args.slides[0]).expanduser()
    if path.is_dir() or path.suffix.lower() in CSV_SUFFIXES:
        return False
    return path.exists() or not set("*?[") & set(args.slides[0])  # a missing file: its error


def _predict_one(args: argparse.Namespace, settings: Any) -> int:
    """``predict_slide`` here: its errors are the command's."""
    from napari_imilia.cohort.guard import slide_guard
    from napari_imilia.predict.slide import RESULT_FILES, predict_slide

    with slide_guard(None, args.slide_timeout) as stop:
        try:
            result = predict_slide(
                args.slides[0],
                args.out,
                settings=settings,
                cancel=stop,
                lock_wait_s=args.wait_for_lock,
                **run_options(args),
            )
        except ImiliaError:
            if stop.timed_out:
                raise ImiliaError(f"{args.slides[0]}: {stop.reason}") from None
            raise
    demo = " [DEMO model: not for diagnosis]" if result.info.get("model_is_demo") else ""
    print(
        f"{result.slide_id}: score {result.score:.4f} ({result.info['n_tiles']} tiles, model "
        f"{result.info['model']}, {result.info['seconds']:.1f} s){demo}"
    )
    print(f"wrote {result.out_dir}/ ({', '.join(RESULT_FILES)})")
    return 0
