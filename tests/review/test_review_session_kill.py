"""The Review panel's path (ReviewSession add + update) survives SIGKILL between two edits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from napari_imilia.review.session import ReviewSession

# What the Review panel does per verdict: add an entry, then edit it (class, note).
CHILD = """
import sys
from napari_imilia.review.session import ReviewSession
session = ReviewSession.open(sys.argv[1], sys.argv[2])
assert session.prediction is not None
for i in range(100_000):
    entry = session.add_review(verdict="agree", tile_id=f"t{i % 4}", note=f"{i}")
    print(f"add {i}", flush=True)
    session.update_review(entry.entry_id, verdict="disagree", note=f"{i} edited")
    print(f"update {i}", flush=True)
"""


def _write_prediction(slide_path: Path, results_root: Path) -> None:
    """A scored result for the slide (4 tiles) as ``predict_slide`` leaves it on disk."""
    session = ReviewSession.open(slide_path, results_root)
    folder = session.results_dir
    folder.mkdir(parents=True)
    tiles = pd.DataFrame(
        {
            "tile_id": ["t0", "t1", "t2", "t3"],
            "x": [0, 224, 0, 224],
            "y": [0, 0, 224, 224],
            "width": 224,
            "height": 224,
            "tissue_fraction": 1.0,
            "score": [0.1, 0.9, 0.5, 0.7],
            "rank": [4, 1, 3, 2],
        }
    )
    tiles.to_csv(folder / "tiles.csv", index=False)
    info = {
        "slide": str(slide_path),
        "slide_id": session.slide_id,
        "score": 0.7,
        "logit": 0.8,
        "model_sha256": "ef" * 32,
    }
    (folder / "slide.json").write_text(json.dumps(info), encoding="utf-8")


def test_sigkill_between_session_edits(tiled_tiff: Path, tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write_prediction(tiled_tiff, root)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tiled_tiff), str(root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    done: list[str] = []
    for line in child.stdout:
        done.append(line.strip())
        if done[-1] == "add 20":  # kill now: the child keeps editing until the signal lands
            break
    os.kill(child.pid, signal.SIGKILL)
    done += child.stdout.read().split("\n")
    assert child.wait(timeout=20) == -signal.SIGKILL
    confirmed = [d for d in done if d]
    reopened = ReviewSession.open(tiled_tiff, root)
    notes = [e.note for e in reopened.review.entries()]
    assert reopened.review.model_sha256 == "ef" * 32
    # every confirmed edit is there, in order; only the edit in flight may be missing
    expected = []
    for step in confirmed:
        kind, i = step.split()
        if kind == "add":
            expected.append(i)
        else:
            expected[-1] = f"{i} edited"
    kind, i = confirmed[-1].split()
    # in flight: the update of the entry just added, or the next add
    in_flight = [*expected[:-1], f"{i} edited"] if kind == "add" else [*expected, str(int(i) + 1)]
    assert notes in (expected, in_flight)
    verdicts = {e.note: e.verdict for e in reopened.review.entries()}
    assert all(v == "disagree" for n, v in verdicts.items() if n.endswith("edited"))
    assert not list(reopened.results_dir.glob(".review.json.*.tmp"))
