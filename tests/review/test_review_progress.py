"""Review progress helpers (no Qt): tile verdicts, reviewed count, stepping through tiles."""

from __future__ import annotations

from napari_imilia.review import ReviewStore
from napari_imilia.review.progress import reviewed_count, step_tile, tile_verdicts


def test_latest_tile_verdict_wins_and_regions_do_not_review_a_tile(tmp_path):
    store = ReviewStore.open(tmp_path, "slide")
    first = store.add(verdict="agree", tile_id="t1")
    store.add(verdict="uncertain", tile_id="t2")
    store.add(verdict="disagree", tile_id="t3", region=[(0, 0), (5, 0), (5, 5)])
    store.update(first.entry_id, verdict="disagree")
    verdicts = tile_verdicts(ReviewStore.open(tmp_path, "slide").entries())
    assert verdicts == {"t1": "disagree", "t2": "uncertain"}
    assert reviewed_count(["t1", "t3", "t4"], verdicts) == 1


def test_step_tile_clamps_and_starts_at_the_first():
    ids = ["a", "b", "c"]
    assert step_tile(ids, None, 1) == "a"
    assert step_tile(ids, "zz", -1) == "a"
    assert step_tile(ids, "a", 1) == "b"
    assert step_tile(ids, "c", 1) == "c"
    assert step_tile(ids, "a", -1) == "a"
    assert step_tile([], "a", 1) is None
