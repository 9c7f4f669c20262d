"""ReviewSession: one slide's review state, without a display."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.predict.slide import PredictionResult
from napari_imilia.review.session import ReviewSession


def _fake_prediction(session: ReviewSession, out_dir: Path) -> PredictionResult:
    tiles = pd.DataFrame(
        {
            "tile_id": ["t0", "t1", "t2", "t3"],
            "x": [0, 448, 0, 448],
            "y": [0, 0, 448, 448],
            "width": [448] * 4,
            "height": [448] * 4,
            "tissue_fraction": [1.0] * 4,
            "score": [0.1, 0.9, 0.5, 0.7],
        }
    )
    tiles["rank"] = tiles["score"].rank(ascending=False).astype(int)
    info = {
        "slide": str(session.slide.path),
        "slide_id": session.slide_id,
        "score": 0.8,
        "logit": 1.4,
        "model_sha256": "abc",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles.to_csv(out_dir / "tiles.csv", index=False)
    (out_dir / "slide.json").write_text(json.dumps(info))
    return PredictionResult(session.slide_id, session.slide.path, 0.8, 1.4, tiles, info, out_dir)


@pytest.fixture
def session(small_svs: Path, tmp_path: Path) -> ReviewSession:
    return ReviewSession.open(small_svs, tmp_path / "results")


def test_tiles_need_a_prediction(session: ReviewSession) -> None:
    assert session.prediction is None
    assert session.tile_at(10, 10) is None
    with pytest.raises(DataError, match="not been scored"):
        _ = session.tiles


def test_prediction_lookup_ranking_and_selection(session: ReviewSession) -> None:
    seen: list[object] = []
    session.prediction_changed.connect(seen.append)
    session.tile_selected.connect(seen.append)
    result = _fake_prediction(session, session.results_dir)
    session.set_prediction(result)
    assert seen == [result]
    assert session.tile_at(500, 10) == "t1"
    assert session.tile_at(447, 447) == "t0"
    assert session.tile_at(448, 448) == "t3"
    assert session.tile_at(2000, 2000) is None
    assert list(session.ranked_tiles(2)["tile_id"]) == ["t1", "t3"]
    assert list(session.ranked_tiles(2, bottom=True)["tile_id"]) == ["t0", "t2"]
    session.select_tile("t3")
    session.select_tile("t3")  # no second emission
    assert seen[-1] == "t3" and seen.count("t3") == 1
    with pytest.raises(DataError, match="no tile"):
        session.select_tile("nope")
    with pytest.raises(DataError, match="at least 1"):
        session.ranked_tiles(0)


def test_reopening_loads_the_cached_prediction(small_svs: Path, tmp_path: Path) -> None:
    first = ReviewSession.open(small_svs, tmp_path)
    _fake_prediction(first, first.results_dir)
    again = ReviewSession.open(small_svs, tmp_path)
    assert again.prediction is not None
    assert list(again.tiles["tile_id"]) == ["t0", "t1", "t2", "t3"]


def test_inspection_cache_is_bounded_lru(small_svs: Path, tmp_path: Path) -> None:
    session = ReviewSession.open(small_svs, tmp_path, max_inspections=3)
    emitted: list[str] = []
    session.tile_inspected.connect(lambda tile_id, _: emitted.append(tile_id))
    for index in range(5):
        session.store_inspection(f"t{index}", {"n": index})
    assert session.inspected_tile_ids == ["t2", "t3", "t4"]
    assert session.cached_inspection("t2") == {"n": 2}
    session.store_inspection("t5", {"n": 5})
    assert session.inspected_tile_ids == ["t4", "t2", "t5"]
    assert session.cached_inspection("t0") is None
    assert emitted == ["t0", "t1", "t2", "t3", "t4", "t5"]
    with pytest.raises(ImiliaError):
        ReviewSession(session.slide, tmp_path, max_inspections=0)


def test_reviews_autosave_and_reload(small_svs: Path, tmp_path: Path) -> None:
    session = ReviewSession.open(small_svs, tmp_path)
    session.set_prediction(_fake_prediction(session, session.results_dir))
    changes: list[int] = []
    session.review_changed.connect(lambda: changes.append(1))
    entry = session.add_review(verdict="agree", tile_id="t1", note="dense infiltrate")
    session.update_review(entry.entry_id, verdict="uncertain")
    other = session.add_review(verdict="disagree", region=[(0, 0), (100, 0), (100, 100)])
    session.remove_review(other.entry_id)
    assert len(changes) == 4
    reopened = ReviewSession.open(small_svs, tmp_path)
    entries = reopened.review.entries()
    assert [(e.tile_id, e.verdict, e.note) for e in entries] == [
        ("t1", "uncertain", "dense infiltrate")
    ]


def test_prediction_of_another_slide_is_refused(session: ReviewSession, tmp_path: Path) -> None:
    result = _fake_prediction(session, tmp_path / "x")
    result.slide_id = "other"
    with pytest.raises(DataError, match="not of"):
        session.set_prediction(result)
