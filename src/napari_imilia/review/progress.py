"""How far a review has come, and where the next top tile is (no Qt).

A tile counts as reviewed when the store holds a verdict whose target is that tile (a
region drawn on a tile does not review the tile). The last verdict recorded for a tile is
its verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from napari_imilia.review.entry import ReviewEntry


def tile_verdicts(entries: Iterable[ReviewEntry]) -> dict[str, str]:
    """Tile id -> the verdict of its latest tile review (by ``updated_utc``)."""
    latest: dict[str, ReviewEntry] = {}
    for entry in entries:
        if entry.target_kind != "tile" or entry.tile_id is None:
            continue
        known = latest.get(entry.tile_id)
        if known is None or entry.updated_utc >= known.updated_utc:
            latest[entry.tile_id] = entry
    return {tile_id: entry.verdict for tile_id, entry in latest.items()}


def reviewed_count(tile_ids: Sequence[str], verdicts: dict[str, str]) -> int:
    """How many of ``tile_ids`` have a verdict."""
    return sum(str(tile_id) in verdicts for tile_id in tile_ids)


def step_tile(tile_ids: Sequence[str], current: str | None, step: int) -> str | None:
    """The tile ``step`` places after ``current`` in ``tile_ids`` (clamped to the ends);
    the first tile when ``current`` is not listed (None when the list is empty)."""
    if not tile_ids:
        return None
    ids = [str(t) for t in tile_ids]
    if current is None or str(current) not in ids:
        return ids[0]
    index = min(max(ids.index(str(current)) + step, 0), len(ids) - 1)
    return ids[index]
