"""Where each reader is in a cohort: their current slide, in a file of their own (no Qt).

``<results_root>/readers/<reader key>.json`` holds the slide a reader last opened, so two
readers (or two machines) working through one results folder each come back to their own
slide: neither overwrites the other's, as one shared ``current_slide_id`` did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic
from napari_imilia.review.entry import utc_now
from napari_imilia.review.reads import reader_key
from napari_imilia.trust.json_limits import ImportLimits
from napari_imilia.trust.results import read_results_json

READERS_DIR = "readers"
CURSOR_FORMAT = "napari-imilia-reader-position"


def cursor_path(results_root: str | os.PathLike[str], reader: str) -> Path:
    return Path(results_root) / READERS_DIR / f"{reader_key(reader)}.json"


def save_cursor(results_root: str | os.PathLike[str], reader: str, slide_id: str | None) -> None:
    """Remember ``slide_id`` as ``reader``'s current slide (atomic write)."""
    data = {
        "format": CURSOR_FORMAT,
        "reader": reader,
        "current_slide_id": slide_id,
        "updated_utc": utc_now(),
    }
    write_text_atomic(cursor_path(results_root, reader), json.dumps(data, ensure_ascii=False))


def load_cursor(results_root: str | os.PathLike[str], reader: str) -> str | None:
    """``reader``'s current slide id, or None (none saved, or the file is not usable)."""
    path = cursor_path(results_root, reader)
    if not path.is_file():
        return None
    try:
        data = read_results_json(path, results_root, ImportLimits.from_env(max_bytes=1 << 16))
    except DataError:
        return None
    if not isinstance(data, dict) or data.get("reader") != reader:
        return None
    current = data.get("current_slide_id")
    return current if isinstance(current, str) else None
