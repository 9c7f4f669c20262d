"""Several processes editing one slide's review: every accepted edit of every process is kept,
including those of a process killed mid-burst, and old journals with duplicated sequence
numbers (written before the store took a lock) replay every edit."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_imilia.review import JOURNAL_FILE, REVIEW_FILE, ReviewStore

SLIDE = "slide-1"

# One reviewer's burst: add a verdict per tile, edit every third one; print each edit once
# the store has accepted it. Starts when the parent creates the "go" file.
WRITER = """
import sys, time
from pathlib import Path
from napari_imilia.review import ReviewStore
folder, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = ReviewStore.open(folder, "slide-1")
print("ready", flush=True)
while not (Path(folder) / "go").exists():
    time.sleep(0.005)
for i in range(count):
    entry = store.add(verdict="agree", tile_id=f"{name}{i}", note=f"{name}-{i}", reviewer=name)
    print(f"add {i}", flush=True)
    if i % 3 == 0:
        store.update(entry.entry_id, verdict="disagree", note=f"{name}-{i} edited")
        print(f"update {i}", flush=True)
    time.sleep(0.002)  # a reviewer's pace: gives the other process a turn at the lock
print(f"done {len(store)}", flush=True)
"""


def _start(folder: Path, name: str, count: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), name, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def test_two_processes_interleaving_and_one_killed_lose_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "results" / SLIDE
    first = _start(folder, "a", 150)
    second = _start(folder, "b", 10_000)  # runs until killed
    (tmp_path / "results" / SLIDE).mkdir(parents=True, exist_ok=True)
    (folder / "go").touch()
    confirmed_b: list[str] = []
    assert second.stdout is not None
    for line in second.stdout:
        confirmed_b.append(line.strip())
        if line.startswith("add 60"):
            break
    os.kill(second.pid, signal.SIGKILL)
    confirmed_b += second.stdout.read().split("\n")
    assert second.wait(timeout=30) == -signal.SIGKILL
    out_a, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out_a
    added_b = [int(c.split()[1]) for c in confirmed_b if c.startswith("add ")]
    updated_b = {int(c.split()[1]) for c in confirmed_b if c.startswith("update ")}
    # the surviving writer's store saw the other writer's edits too
    assert int(out_a.split()[-1]) >= 150 + len(added_b) - 1

    store = ReviewStore.open(folder, SLIDE)
    by_tile = {e.tile_id: e for e in store.entries()}
    for i in range(150):  # every edit of the writer that finished
        edited = i % 3 == 0
        assert by_tile[f"a{i}"].note == f"a-{i}" + (" edited" if edited else "")
        assert by_tile[f"a{i}"].verdict == ("disagree" if edited else "agree")
    for i in added_b:  # every edit the killed writer had been told was saved
        assert by_tile[f"b{i}"].reviewer == "b"
        if i in updated_b:
            assert by_tile[f"b{i}"].note == f"b-{i} edited"
    b_tiles = sorted(int(t[1:]) for t in by_tile if t.startswith("b"))
    assert b_tiles == list(range(len(b_tiles)))  # no gap: at most the edit in flight is missing
    assert max(added_b) <= b_tiles[-1] <= max(added_b) + 1

    records = [json.loads(line) for line in (folder / JOURNAL_FILE).read_text().splitlines()]
    seqs = [r["seq"] for r in records if r["op"] != "header"]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)  # one order for all writers
    writers = [r["entry"]["reviewer"] for r in records if r["op"] == "add"]
    switches = sum(1 for x, y in itertools.pairwise(writers) if x != y)
    assert switches >= 2, "the two writers did not interleave"
    assert not list(folder.glob(".review.json.*.tmp"))
    snapshot = json.loads((folder / REVIEW_FILE).read_text(encoding="utf-8"))
    assert len(snapshot["entries"]) == len(store)


def test_sync_takes_in_the_other_store_edits(tmp_path: Path) -> None:
    first = ReviewStore.open(tmp_path, SLIDE)
    second = ReviewStore.open(tmp_path, SLIDE)
    entry = first.add(verdict="agree", tile_id="t1", note="first")
    assert second.sync() is True and second.get(entry.entry_id).note == "first"
    assert second.sync() is False
    second.update(entry.entry_id, verdict="disagree")
    other = second.add(verdict="uncertain", tile_id="t2")
    # first's next edit merges: the field it changes is its own, the others are second's
    edited = first.update(entry.entry_id, note="first again")
    assert (edited.verdict, edited.note) == ("disagree", "first again")
    assert first.get(other.entry_id).verdict == "uncertain"
    second.remove(other.entry_id)
    with pytest.raises(Exception, match="may have been removed"):
        first.update(other.entry_id, note="gone")
    assert [e.entry_id for e in ReviewStore.open(tmp_path, SLIDE).entries()] == [entry.entry_id]


def test_old_journal_with_duplicated_sequence_numbers_replays_every_edit(tmp_path: Path) -> None:
    """Two writers before the lock: both numbered their edits 1..3; the snapshot holds only
    the last writer's three entries and journal_seq 3."""
    store = ReviewStore.open(tmp_path, SLIDE)
    for i in range(3):
        store.add(verdict="agree", tile_id=f"a{i}", reviewer="a")
    journal = (tmp_path / JOURNAL_FILE).read_text(encoding="utf-8").splitlines()
    lines = [journal[0]]
    for i, line in enumerate(journal[1:]):
        record = json.loads(line)
        twin = json.loads(line)
        twin["entry"] = {**record["entry"], "entry_id": f"b-{i}", "tile_id": f"b{i}"}
        lines += [json.dumps(twin), line]  # same seq, other writer
    (tmp_path / JOURNAL_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    snapshot = json.loads((tmp_path / REVIEW_FILE).read_text(encoding="utf-8"))
    del snapshot["journal_bytes"]  # as the old store wrote it
    (tmp_path / REVIEW_FILE).write_text(json.dumps(snapshot), encoding="utf-8")
    time.sleep(0.01)
    reopened = ReviewStore.open(tmp_path, SLIDE)
    assert sorted(e.tile_id for e in reopened.entries()) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    reopened.add(verdict="agree", tile_id="c")
    records = [json.loads(x) for x in (tmp_path / JOURNAL_FILE).read_text().splitlines()]
    assert records[-1]["seq"] == 4  # numbering goes on after the highest seen
    assert len(ReviewStore.open(tmp_path, SLIDE)) == 7


def test_read_only_results_folder_still_opens(tmp_path: Path) -> None:
    store = ReviewStore.open(tmp_path / "r", SLIDE)
    store.add(verdict="agree", tile_id="t")
    (tmp_path / "r" / ".review.lock").unlink(missing_ok=True)
    os.chmod(tmp_path / "r", 0o555)
    try:
        if os.access(tmp_path / "r", os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert len(ReviewStore.open(tmp_path / "r", SLIDE)) == 1
    finally:
        os.chmod(tmp_path / "r", 0o755)


def test_session_sync_review_emits_review_changed(tiled_tiff: Path, tmp_path: Path) -> None:
    from napari_imilia.review.session import ReviewSession

    root = tmp_path / "results"
    mine = ReviewSession.open(tiled_tiff, root)
    theirs = ReviewSession.open(tiled_tiff, root)
    assert mine.sync_review() is False  # nothing opened yet, nothing to take in
    assert len(mine.review) == 0
    seen: list[bool] = []
    mine.review_changed.connect(lambda: seen.append(True))
    theirs.add_review(verdict="agree", tile_id="t1", note="other window")
    assert mine.sync_review() is True and seen == [True]
    assert [e.note for e in mine.review.entries()] == ["other window"]
    assert mine.sync_review() is False and seen == [True]
