"""The reviewer's identity: one name per user, kept in the user's settings (no Qt).

Every verdict, region, grade and note is written with it and every report shows it, so it is
asked once (the first review action) and then only shown. It is plain text a reader may see
in a report, a CSV or a tooltip: :func:`check_reviewer_name` refuses what cannot be a name.
"""

from __future__ import annotations

import json
import unicodedata

from napari_imilia.errors import ImiliaError
from napari_imilia.files import write_text_atomic
from napari_imilia.user_dirs import config_dir

#: File in :func:`napari_imilia.user_dirs.config_dir` holding ``{"reviewer": name}``.
REVIEWER_FILE = "review_settings.json"
#: Longest reviewer name kept (characters).
MAX_REVIEWER_CHARS = 80


def check_reviewer_name(name: str) -> str:
    """``name`` with surrounding spaces removed; ``ImiliaError`` when it is empty, longer
    than :data:`MAX_REVIEWER_CHARS` or holds control characters (line breaks, tabs...)."""
    cleaned = name.strip()
    if not cleaned:
        raise ImiliaError("reviewer name is empty: type your name or initials")
    if len(cleaned) > MAX_REVIEWER_CHARS:
        raise ImiliaError(f"reviewer name is longer than {MAX_REVIEWER_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in cleaned):
        raise ImiliaError("reviewer name holds a line break or another control character")
    return cleaned


def load_reviewer() -> str:
    """The reviewer name saved for this user ('' when none, or when the file is unreadable
    or holds something that is not a valid name)."""
    try:
        data = json.loads((config_dir() / REVIEWER_FILE).read_text(encoding="utf-8"))
        name = data["reviewer"] if isinstance(data, dict) else None
        return check_reviewer_name(name) if isinstance(name, str) else ""
    except (OSError, ValueError, KeyError, ImiliaError):
        return ""


def save_reviewer(name: str) -> str:
    """Check and remember ``name`` (atomic write); returns the name as saved."""
    cleaned = check_reviewer_name(name)
    text = json.dumps({"reviewer": cleaned}, indent=2, ensure_ascii=False) + "\n"
    write_text_atomic(config_dir() / REVIEWER_FILE, text)
    return cleaned
