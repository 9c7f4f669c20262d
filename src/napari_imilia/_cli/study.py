"""``imilia study``: set up a reader study on a results folder, add a reader, show progress."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_imilia._cli.paths import user_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="set up a reader study on a cohort's results (readers, blinding, slide orders)",
        description=(
            "Set up a reader study on RESULTS_DIR (a cohort scored by imilia predict or "
            "reviewed in napari): several readers grade the same slides, each in their own "
            "seeded random order, blinded to the model until they commit their grade (unless "
            "--open), with a second read once the model is shown (unless --no-second-read). "
            "The study is kept in RESULTS_DIR/study.json; each reader grades in napari's "
            "Cohort dock under their reviewer name. Without --readers, prints the study and "
            "every reader's progress. imilia report RESULTS_DIR writes the agreement report."
        ),
    )
    parser.add_argument(
        "results", type=user_path, metavar="RESULTS_DIR", help="the cohort's results folder"
    )
    parser.add_argument(
        "--readers",
        default=None,
        help="comma-separated reviewer names of the readers: sets the study up",
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="an open study: the model is shown to readers from the start",
    )
    parser.add_argument(
        "--no-second-read",
        action="store_true",
        help="no post-AI read: a blinded reader's first grade is final",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the readers' slide orders (recorded)"
    )
    parser.add_argument("--name", default="", help="a name for the study (shown in reports)")
    parser.add_argument(
        "--add-reader", default=None, help="add one reader to the study of RESULTS_DIR"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_imilia._cli.report import load_cohort
    from napari_imilia.errors import ImiliaError
    from napari_imilia.review.reviewer import load_reviewer
    from napari_imilia.review.study import add_reader, create_study, load_study, study_progress

    results = Path(args.results).expanduser()
    cohort = load_cohort(results, None)
    if args.readers is not None:
        if args.no_second_read and args.open:
            raise ImiliaError("--no-second-read is for blinded studies; leave it out with --open")
        slides = [item.slide_id for item in cohort.items if not item.error]
        create_study(
            results,
            slides,
            [r for r in args.readers.split(",") if r.strip()],
            blinded=not args.open,
            second_read=not args.no_second_read,
            seed=args.seed,
            name=args.name,
            created_by=load_reviewer(),
        )
    if args.add_reader:
        add_reader(results, args.add_reader)
    study = load_study(results)
    if study is None:
        raise ImiliaError(f"no reader study in {results}; set one up with --readers A,B,C")
    print(f"study {study.name or study.study_id}: {study.design_text()}")
    print(f"{len(study.slide_ids)} slides, seed {study.seed}, file {results / 'study.json'}")
    for progress in study_progress(study, results):
        order = ", ".join(study.order_for(progress.reader)[:5])
        print(f"  {progress.reader}: {progress.text()} (order: {order}...)")
    return 0
