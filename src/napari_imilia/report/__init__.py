"""Self-contained HTML reports (no Qt): one per scored slide and one per cohort, with the
model measured against the pathologist. See docs/cohort_review.md.

``write_reports(cohort)`` writes both; :func:`write_slide_report` and
:func:`write_cohort_report` one kind each.
"""

from __future__ import annotations

from pathlib import Path

from napari_imilia.cohort.review import Cohort
from napari_imilia.report.cohort_report import report_table, table_metrics, write_cohort_report
from napari_imilia.report.reader_study_page import has_reader_study, write_reader_study_report
from napari_imilia.report.slide_report import DEFAULT_TOP_TILES, write_slide_report


def write_reports(
    cohort: Cohort, *, top_k: int = DEFAULT_TOP_TILES, threshold: float = 0.5
) -> dict[str, Path]:
    """A report page per scored slide, then the cohort report (which links them); returns
    the files by name ('<slide_id>', 'csv', 'json', 'html'; and 'study_csv', 'study_json',
    'study_html' for the reader-study report when the cohort has a study or two readers or
    more). A slide whose page fails is listed in ``cohort.warnings``, the others go on."""
    from napari_imilia.errors import ImiliaError

    written: dict[str, Path] = {}
    for index, item in enumerate(cohort.items):
        if not item.scored:
            continue
        try:
            written[item.slide_id] = write_slide_report(
                cohort.slide_dir(index), top_k=top_k, slide_path=item.path
            )
        except ImiliaError as error:
            cohort.warnings.append(f"{item.slide_id}: no report: {error}")
    if has_reader_study(cohort):
        written.update(write_reader_study_report(cohort, threshold=threshold))
    written.update(write_cohort_report(cohort, threshold=threshold))
    return written


__all__ = [
    "DEFAULT_TOP_TILES",
    "report_table",
    "table_metrics",
    "write_cohort_report",
    "write_reader_study_report",
    "write_reports",
    "write_slide_report",
]
