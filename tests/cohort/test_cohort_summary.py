"""One progress type (RunProgress) and one cohort.csv writer, for imilia predict and Score all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from napari_imilia.cohort.review import Cohort
from napari_imilia.cohort.scoring import score_unscored
from napari_imilia.cohort.summary import SUMMARY_COLUMNS, read_summary
from napari_imilia.progress import RunProgress
from support.cohort_data import cohort_data  # noqa: F401 (fixture)


def test_run_progress_counts_computed_items_only() -> None:
    start = RunProgress(10, done=2, reused=2, elapsed_s=5.0)
    assert start.per_s is None and start.eta_s is None and start.per_min == 0.0
    assert start.text() == "2 of 10 slides scored"
    going = RunProgress(10, done=4, failed=1, reused=2, elapsed_s=60.0)
    assert going.per_min == pytest.approx(2.0) and going.slides_per_min == going.per_min
    assert going.eta_s == pytest.approx(180.0)  # 6 left at 2 a minute
    assert going.text() == "4 of 10 slides scored, about 3 min 0 s left"
    assert RunProgress(10, 4, elapsed_s=8.0).text() == "4 of 10 slides scored, about 12 s left"
    assert RunProgress(10, 4, cancelled=True).text() == "4 of 10 slides scored (cancelled)"
    tiles = RunProgress(100, 60, reused=0, elapsed_s=4.0, unit="tiles")
    assert tiles.per_s == pytest.approx(15.0) and tiles.eta_s == pytest.approx(40 / 15)


def test_score_all_merges_every_slide_into_cohort_csv(cohort_data, tmp_path: Path) -> None:  # noqa: F811
    """Score all writes cohort.csv with the writer imilia predict uses: rows of slides the
    file already lists stay, whole tile counts, read back by the same reader."""
    earlier = tmp_path / "cohort.csv"
    earlier.write_text(
        "slide,slide_id,status,score,n_tiles,error\n/elsewhere/old.svs,old,ok,0.25,7,\n"
    )
    cohort = Cohort.build(str(cohort_data["folder"] / "sub" / "case_0[89].tiff"), tmp_path)
    seen: list[RunProgress] = []
    final = score_unscored(cohort, model_path=cohort_data["model"], on_progress=seen.append)
    assert [p.done for p in seen] == [1, 2] and all(p.total == 2 for p in seen)
    assert (final.done, final.failed, final.cancelled) == (2, 0, False)

    table = read_summary(earlier)
    assert list(table.columns) == list(SUMMARY_COLUMNS)
    assert table["slide_id"].tolist() == ["old", "case_08", "case_09"]
    assert table["status"].tolist() == ["ok", "ok", "ok"]
    n_tiles = pd.read_csv(earlier, dtype=str)["n_tiles"].tolist()
    assert n_tiles[0] == "7" and all(value.isdigit() for value in n_tiles)
    assert table.set_index("slide_id").loc["case_08", "n_tiles"] == cohort[0].n_tiles


def test_text_that_pandas_reads_as_missing_keeps_its_value(tmp_path: Path) -> None:
    """A slide named NA, NULL or nan keeps its id in cohort.csv, and a reviewer's note 'NA'
    in an exported table reads back as typed (found by the results-folder fuzz test)."""
    from napari_imilia.cohort.summary import SUMMARY_FILE, read_summary, write_cohort_csv
    from napari_imilia.export.tables import read_table_csv

    names = ["NA", "NULL", "nan", "N/A"]
    table = pd.DataFrame(
        {
            "slide": [f"/s/{n}.svs" for n in names],
            "slide_id": names,
            "status": "ok",
            "score": [0.5, None, 0.25, 0.75],
            "n_tiles": [3, None, 2, 1],
            "error": "",
        }
    )
    write_cohort_csv(tmp_path, table)
    back = read_summary(tmp_path / SUMMARY_FILE)
    assert back["slide_id"].tolist() == names
    assert back["score"].isna().tolist() == [False, True, False, False]
    notes = tmp_path / "notes.csv"
    notes.write_text("tile_id,note,score\n1_2,NA,0.5\n3_4,,\n", encoding="utf-8")
    df, _ = read_table_csv(notes)
    assert df["note"].fillna("").tolist() == ["NA", ""] and df["score"].isna().tolist() == [
        False,
        True,
    ]
