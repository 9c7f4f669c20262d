"""``imilia report``: HTML reports of a scored cohort, per slide and for the cohort."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from napari_imilia._cli.paths import user_path

if TYPE_CHECKING:
    from napari_imilia.cohort.review import Cohort


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="HTML reports per slide and for the cohort (model against pathologist)",
        description=(
            "Write RESULTS_DIR/<slide_id>/report.html for every scored slide (heatmap, score, "
            "model and extractor hashes, top tiles with cell and epithelium overlays, "
            "markers, verdicts, grade, notes) and RESULTS_DIR/cohort_report.html, .json and "
            ".csv (review table, ROC-AUC with bootstrap 95%% CI, confusion matrix, Cohen's "
            "kappa, Spearman of score against the Nancy grade) and, for a reader study (imilia "
            "study) or two readers or more, RESULTS_DIR/reader_study.html, .json and .csv "
            "(agreement between readers and with the model, pre-AI against post-AI, the "
            "slides readers disagree on, one CSV row per read). Self-contained files: they "
            "open in a browser with no network. RESULTS_DIR is the folder imilia predict "
            "wrote into (with cohort.csv) or a cohort reviewed in napari (cohort_review.json)."
        ),
    )
    parser.add_argument(
        "results", type=user_path, metavar="RESULTS_DIR", help="the cohort's results folder"
    )
    parser.add_argument(
        "--labels",
        type=user_path,
        default=None,
        help="cohort CSV with a slide path column (slide, path or slide_path; relative to the "
        "CSV's folder) and label columns such as active (1/0) and nancy (0-4): the "
        "pathologist's grades where the review has none. Rows find the cohort's slides by "
        "path, then by slide id, and never add slides; rows that find none are listed",
    )
    parser.add_argument(
        "--top-tiles",
        type=int,
        default=4,
        help="tiles shown with their cells and epithelium per slide (0: none); default 4",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="slide score from which the model calls a slide active; default 0.5",
    )
    parser.add_argument(
        "--no-slide-pages", action="store_true", help="write the cohort report only"
    )
    parser.set_defaults(func=run)


def load_cohort(results: Path, labels: str | None) -> Cohort:
    """The cohort of ``results``: its saved cohort, else built from its cohort.csv, else
    (no cohort yet) from the ``labels`` CSV. ``labels`` labels the cohort's slides and never
    adds one (``Cohort.apply_labels``: a file matching no slide is an error, nothing saved)."""
    from napari_imilia.cohort.review import COHORT_FILE, Cohort
    from napari_imilia.errors import ImiliaError

    if not results.is_dir():
        raise ImiliaError(f"results folder not found: {results}")
    made_here = False
    if (results / COHORT_FILE).is_file():
        cohort = Cohort.open(results)
    elif (results / "cohort.csv").is_file():
        cohort, made_here = Cohort.build(results, results), True
    elif labels:
        return Cohort.build(labels, results)  # no cohort yet: the CSV names its slides
    else:
        raise ImiliaError(
            f"{results} holds no cohort: neither {COHORT_FILE} (a cohort reviewed in napari) "
            "nor cohort.csv (imilia predict of several slides); pass --labels CSV to name "
            "the slides"
        )
    if labels:
        try:
            cohort.apply_labels(labels)
        except ImiliaError:
            if made_here:  # the command fails: it leaves no cohort file of its own
                cohort.path.unlink(missing_ok=True)
            raise
    return cohort


def run(args: argparse.Namespace) -> int:
    from napari_imilia.errors import ImiliaError
    from napari_imilia.report import write_cohort_report, write_reports
    from napari_imilia.report.reader_study_page import has_reader_study
    from napari_imilia.report.reader_study_page import write_reader_study_report as write_study

    if args.top_tiles < 0:
        raise ImiliaError(f"--top-tiles must be 0 or more, got {args.top_tiles}")
    if not 0.0 <= args.threshold <= 1.0:
        raise ImiliaError(f"--threshold must be between 0 and 1, got {args.threshold}")
    cohort = load_cohort(Path(args.results), args.labels)  # absolute (user_path)
    if args.no_slide_pages:
        written = write_cohort_report(cohort, threshold=args.threshold)
        if has_reader_study(cohort):
            written.update(write_study(cohort, threshold=args.threshold))
    else:
        written = write_reports(cohort, top_k=args.top_tiles, threshold=args.threshold)
    pages = len(
        [k for k in written if k not in ("csv", "json", "html") and not k.startswith("study_")]
    )
    for warning in cohort.warnings:
        print(f"warning: {warning}")
    print(f"{cohort.summary_text()}; {pages} slide report(s)")
    print(f"cohort report: {written['html']}")
    if "study_html" in written:
        print(f"reader study report: {written['study_html']}")
    return 0
