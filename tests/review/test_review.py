"""Review store: persistence, validation, crash safety (SIGKILL), corrupt-file recovery, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import shapely

from napari_imilia.errors import DataError
from napari_imilia.export import ExportContext, read_geojson, write_geojson
from napari_imilia.review import JOURNAL_FILE, REVIEW_FILE, ReviewStore
from napari_imilia.review.exports import reviews_table, reviews_to_features

SLIDE = "slide-1"
REGION = [(100.0, 100.0), (400.5, 100.0), (400.5, 300.25), (100.0, 300.25)]


def _filled(results_dir: Path) -> tuple[ReviewStore, list[str]]:
    store = ReviewStore.open(results_dir, SLIDE, model_sha256="aa" * 32)
    first = store.add(verdict="agree", tile_id="000001", reviewer_class="normal", reviewer="JD")
    second = store.add(
        verdict="disagree", region=REGION, tile_id="000002", reviewer_class="active inflammation"
    )
    third = store.add(verdict="uncertain", tile_id="000003", note="crush artefact?")
    return store, [first.entry_id, second.entry_id, third.entry_id]


def test_add_update_remove_persist(tmp_path: Path) -> None:
    store, (first, second, third) = _filled(tmp_path)
    updated = store.update(first, verdict="disagree", note="plasma cells in lamina propria")
    assert updated.updated_utc >= updated.created_utc
    store.remove(third)
    reopened = ReviewStore.open(tmp_path, SLIDE)
    assert reopened.warnings == []
    assert [e.entry_id for e in reopened.entries()] == [first, second]
    assert reopened.entries() == store.entries()
    entry = reopened.get(first)
    assert (entry.verdict, entry.note, entry.reviewer) == (
        "disagree",
        "plasma cells in lamina propria",
        "JD",
    )
    region_entry = reopened.get(second)
    assert region_entry.target_kind == "region" and region_entry.region == tuple(REGION)
    assert [e.entry_id for e in reopened.for_tile("000002")] == [second]
    assert reopened.for_tile("000003") == []
    assert reopened.model_sha256 == "aa" * 32
    snapshot = json.loads((tmp_path / REVIEW_FILE).read_text(encoding="utf-8"))
    assert snapshot["schema_version"] == 1 and snapshot["slide_id"] == SLIDE
    assert snapshot["journal_seq"] == 5  # 3 adds, 1 update, 1 remove
    journal = (tmp_path / JOURNAL_FILE).read_text(encoding="utf-8").splitlines()
    assert len(journal) == 6 and json.loads(journal[0])["op"] == "header"


def test_opening_creates_nothing(tmp_path: Path) -> None:
    store = ReviewStore.open(tmp_path / "results", SLIDE)
    assert len(store) == 0 and not (tmp_path / "results").exists()


def test_validation_errors(tmp_path: Path) -> None:
    store, (first, *_rest) = _filled(tmp_path)
    with pytest.raises(DataError, match="unknown verdict 'maybe'; use one of agree"):
        store.add(verdict="maybe", tile_id="000004")
    with pytest.raises(DataError, match="at least 3 distinct vertices, got 2"):
        store.add(verdict="agree", region=[(0, 0), (5, 5), (0, 0)])
    with pytest.raises(DataError, match="no area"):
        store.add(verdict="agree", region=[(0, 0), (5, 5), (10, 10)])
    with pytest.raises(DataError, match="NaN"):
        store.add(verdict="agree", region=[(0, 0), (5, float("nan")), (10, 0)])
    with pytest.raises(DataError, match="needs the tile_id"):
        store.add(verdict="agree")
    with pytest.raises(DataError, match="no review entry 'nope'"):
        store.update("nope", verdict="agree")
    with pytest.raises(DataError, match="no review entry 'nope'"):
        store.remove("nope")
    with pytest.raises(DataError, match="cannot change created_utc"):
        store.update(first, created_utc="yesterday")
    with pytest.raises(DataError, match="unknown verdict"):
        store.update(first, verdict="")
    assert len(ReviewStore.open(tmp_path, SLIDE)) == 3  # nothing invalid was saved
    assert store.get(first).verdict == "agree"


def test_journal_newer_than_snapshot_is_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _filled(tmp_path)

    def crash(self: ReviewStore) -> None:
        raise OSError("killed before the snapshot was written")

    monkeypatch.setattr(ReviewStore, "_write_snapshot", crash)
    with pytest.raises(OSError, match="killed"):
        store.add(verdict="agree", tile_id="000009", note="journaled only")
    monkeypatch.undo()
    snapshot = json.loads((tmp_path / REVIEW_FILE).read_text(encoding="utf-8"))
    assert len(snapshot["entries"]) == 3
    reopened = ReviewStore.open(tmp_path, SLIDE)
    assert [e.note for e in reopened.entries()][-1] == "journaled only"
    snapshot = json.loads((tmp_path / REVIEW_FILE).read_text(encoding="utf-8"))
    assert len(snapshot["entries"]) == 4 and snapshot["journal_seq"] == 4


def test_corrupt_snapshot_is_kept_aside_and_rebuilt_from_journal(tmp_path: Path) -> None:
    store, ids = _filled(tmp_path)
    store.update(ids[0], note="edited")
    garbage = '{"format": "napari-imilia-review", "entries": [{"entry_id": '
    (tmp_path / REVIEW_FILE).write_text(garbage, encoding="utf-8")
    with pytest.warns(UserWarning, match="could not be read"):
        reopened = ReviewStore.open(tmp_path, SLIDE)
    assert reopened.corrupt_backup is not None
    assert reopened.corrupt_backup.name.startswith("review.json.corrupt-")
    assert reopened.corrupt_backup.read_text(encoding="utf-8") == garbage
    assert "rebuilt from review.journal.jsonl" in reopened.warnings[0]
    assert [e.entry_id for e in reopened.entries()] == ids
    assert reopened.get(ids[0]).note == "edited"
    again = ReviewStore.open(tmp_path, SLIDE)  # the rebuilt snapshot is readable again
    assert again.warnings == [] and again.entries() == reopened.entries()


def test_torn_journal_line_is_skipped_and_appending_still_works(tmp_path: Path) -> None:
    _, ids = _filled(tmp_path)
    with open(tmp_path / JOURNAL_FILE, "a", encoding="utf-8") as handle:
        handle.write('{"seq": 4, "op": "add", "entry": {"entry_id": "half')
    with pytest.warns(UserWarning, match="incomplete last line"):
        reopened = ReviewStore.open(tmp_path, SLIDE)
    assert [e.entry_id for e in reopened.entries()] == ids
    extra = reopened.add(verdict="agree", tile_id="000010")
    (tmp_path / REVIEW_FILE).unlink()  # force a full rebuild from the journal
    with pytest.warns(UserWarning, match="skipped"):
        rebuilt = ReviewStore.open(tmp_path, SLIDE)
    assert [e.entry_id for e in rebuilt.entries()] == [*ids, extra.entry_id]


def test_wrong_slide_newer_schema_and_model_change(tmp_path: Path) -> None:
    _filled(tmp_path)
    with pytest.raises(DataError, match="belongs to slide 'slide-1', not 'slide-2'"):
        ReviewStore.open(tmp_path, "slide-2")
    with pytest.warns(UserWarning, match="made with model aaaaaaaaaaaa"):
        changed = ReviewStore.open(tmp_path, SLIDE, model_sha256="bb" * 32)
    assert changed.model_sha256 == "aa" * 32
    snapshot = json.loads((tmp_path / REVIEW_FILE).read_text(encoding="utf-8"))
    snapshot["schema_version"] = 99
    text = json.dumps(snapshot)
    (tmp_path / REVIEW_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match="newer napari-imilia"):
        ReviewStore.open(tmp_path, SLIDE)
    assert (tmp_path / REVIEW_FILE).read_text(encoding="utf-8") == text  # left untouched


CHILD = """
import sys
from napari_imilia.review import ReviewStore
store = ReviewStore.open(sys.argv[1], "slide-1")
for i in range(100_000):
    store.add(verdict="agree", tile_id=f"t{i}", note=str(i))
    print(i, flush=True)
"""


def test_sigkill_between_edits_loses_at_most_the_edit_in_flight(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    confirmed = -1
    assert child.stdout is not None
    for line in child.stdout:
        confirmed = int(line)
        if confirmed >= 25:
            break
    os.kill(child.pid, signal.SIGKILL)
    remaining = child.stdout.read()
    assert child.wait(timeout=20) == -signal.SIGKILL
    confirmed = max([confirmed, *(int(v) for v in remaining.split())])
    store = ReviewStore.open(tmp_path, SLIDE)
    notes = [int(e.note) for e in store.entries()]
    assert notes == list(range(len(notes)))  # no gaps, no duplicates
    assert confirmed + 1 <= len(notes) <= confirmed + 2
    assert not list(tmp_path.glob(".review.json.*.tmp"))


def test_reviews_table_and_qupath_features(tmp_path: Path) -> None:
    store, ids = _filled(tmp_path)
    table = reviews_table(store)
    assert table["entry_id"].tolist() == ids
    assert table["verdict"].tolist() == ["agree", "disagree", "uncertain"]
    assert json.loads(table["region"].iloc[1]) == [list(xy) for xy in REGION]
    assert table["region"].iloc[0] == ""
    ctx = ExportContext(SLIDE, "/s.svs", "m", "aa" * 32, "builtin", 0.5, 224)
    tiles = pd.DataFrame(
        {
            "tile_id": ["000001", "000003"],
            "x": [0, 448],
            "y": [0, 0],
            "width": [448, 448],
            "height": [448, 448],
        }
    )
    with pytest.raises(DataError, match="no tile table was given"):
        reviews_to_features(store, ctx)
    features = reviews_to_features(store, ctx, tiles=tiles)
    assert features == reviews_to_features(store, ctx, tiles=tiles)  # deterministic ids
    objects = read_geojson(write_geojson(tmp_path / "review.geojson", features, ctx))
    agree, disagree, uncertain = objects
    assert agree.object_type == "annotation" and agree.class_name == "normal"
    assert agree.geometry.equals(shapely.box(0, 0, 448, 448))
    assert disagree.class_name == "active inflammation" and disagree.color == (220, 40, 40)
    assert disagree.geometry.equals(shapely.Polygon(REGION))
    assert disagree.measurements == {"Review agreement": 0.0}
    assert uncertain.properties["metadata"]["note"] == "crush artefact?"
    assert uncertain.properties["metadata"]["verdict"] == "uncertain"
    assert uncertain.class_name is None and uncertain.measurements["Review agreement"] == 0.5
    with pytest.raises(DataError, match="not in the tile table"):
        reviews_to_features(store, ctx, tiles=tiles.iloc[:1])
