"""The pathologist's review of one slide: verdicts on tiles and drawn regions (no Qt).

``ReviewStore.open(results_dir, slide_id)`` loads the slide's review; ``add``, ``update`` and
``remove`` save every change at once (atomic ``review.json`` snapshot plus an fsynced
append-only ``review.journal.jsonl``), so a crash loses at most the edit in flight.
``review.exports`` turns the entries into CSV and QuPath GeoJSON; ``review.bundle`` exports
everything a reviewed slide has (tiles, cells, epithelium, reviews, grade).
Region vertices are level-0 pixels, (x, y), top-left origin. See docs/export_review.md.
"""

from napari_imilia.review.entry import (
    EDITABLE_FIELDS,
    SUGGESTED_CLASSES,
    TARGET_KINDS,
    VERDICTS,
    ReviewEntry,
    validate_entry,
)
from napari_imilia.review.store import JOURNAL_FILE, REVIEW_FILE, SCHEMA_VERSION, ReviewStore

__all__ = [
    "EDITABLE_FIELDS",
    "JOURNAL_FILE",
    "REVIEW_FILE",
    "SCHEMA_VERSION",
    "SUGGESTED_CLASSES",
    "TARGET_KINDS",
    "VERDICTS",
    "ReviewEntry",
    "ReviewStore",
    "validate_entry",
]
