"""One review verdict (``ReviewEntry``) and its validation. Coordinates: level-0 (x, y) px."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import shapely

from napari_imilia.errors import DataError

VERDICTS: tuple[str, ...] = ("agree", "disagree", "uncertain")
TARGET_KINDS: tuple[str, ...] = ("tile", "region")
#: Classes offered to the reviewer; any other text is accepted too.
SUGGESTED_CLASSES: tuple[str, ...] = (
    "active inflammation",
    "chronic inflammation",
    "normal",
    "artefact",
)
#: Fields ``ReviewStore.update`` may change.
EDITABLE_FIELDS: tuple[str, ...] = (
    "target_kind",
    "tile_id",
    "region",
    "verdict",
    "reviewer_class",
    "note",
    "reviewer",
)


def utc_now() -> str:
    """Current UTC time, ISO 8601 with microseconds and a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ReviewEntry:
    """One verdict. ``region``: level-0 (x, y) polygon vertices for ``target_kind='region'``
    (``tile_id`` then optionally names the tile it was drawn on); ``tile_id`` for 'tile'."""

    entry_id: str
    target_kind: str
    tile_id: str | None
    region: tuple[tuple[float, float], ...] | None
    verdict: str
    reviewer_class: str
    note: str
    reviewer: str
    created_utc: str
    updated_utc: str

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["region"] = None if self.region is None else [list(xy) for xy in self.region]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReviewEntry:
        """Validated entry from a dict (as written by :meth:`to_dict`)."""
        if not isinstance(data, dict):
            raise DataError(f"review entry must be an object, got {data!r}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
        if missing:
            raise DataError(f"review entry lacks {', '.join(missing)}")
        return validate_entry(cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)}))


def _region(region: Any) -> tuple[tuple[float, float], ...]:
    try:
        vertices = tuple((float(x), float(y)) for x, y in region)
    except (TypeError, ValueError) as exc:
        raise DataError(f"review region must be a list of (x, y) level-0 vertices: {exc}") from exc
    if not all(math.isfinite(v) for xy in vertices for v in xy):
        raise DataError("review region has NaN or infinite coordinates")
    if len(set(vertices)) < 3:
        raise DataError(
            f"review region needs at least 3 distinct vertices, got {len(set(vertices))}; "
            "draw a polygon around the area"
        )
    if shapely.Polygon(vertices).area <= 0:
        raise DataError("review region has no area (its vertices lie on one line)")
    return vertices


def validate_entry(entry: ReviewEntry) -> ReviewEntry:
    """Check ``entry`` and return it normalised (text fields as str, region as tuples)."""
    if entry.verdict not in VERDICTS:
        raise DataError(f"unknown verdict {entry.verdict!r}; use one of {', '.join(VERDICTS)}")
    if entry.target_kind not in TARGET_KINDS:
        raise DataError(f"unknown target_kind {entry.target_kind!r}; use 'tile' or 'region'")
    if not isinstance(entry.entry_id, str) or not entry.entry_id:
        raise DataError(f"review entry id must be a non-empty string, got {entry.entry_id!r}")
    tile_id = None if entry.tile_id in (None, "") else str(entry.tile_id)
    if entry.target_kind == "tile":
        if tile_id is None:
            raise DataError("a tile review needs the tile_id it is about")
        if entry.region is not None:
            raise DataError("a tile review has no region; use target_kind='region' for drawings")
        region = None
    else:
        if entry.region is None:
            raise DataError("a region review needs its region (at least 3 level-0 vertices)")
        region = _region(entry.region)
    return dataclasses.replace(
        entry,
        tile_id=tile_id,
        region=region,
        reviewer_class=str(entry.reviewer_class or "").strip(),
        note=str(entry.note or ""),
        reviewer=str(entry.reviewer or ""),
        created_utc=str(entry.created_utc),
        updated_utc=str(entry.updated_utc),
    )
