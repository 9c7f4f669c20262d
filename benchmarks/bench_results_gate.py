"""What the results-folder gate costs (issue 20): reading back review journals, opening a
cohort's results folder, reading tiles through the decode guard, writing spreadsheet-safe CSV.

Run as ``PYTHONPATH=src python benchmarks/bench_results_gate.py`` (and with ``PYTHONPATH``
pointing at an older ``src`` to compare). Measures the median wall time over ``--repeats``:

- ``ReviewStore.open`` replaying a journal of ``--edits`` lines (no snapshot: every line is
  parsed, each within the import limits; the snapshot it then writes included);
- ``Cohort.open`` of a results folder of ``--slides`` slides (``slide.json``, ``tiles.csv``,
  ``slide_grade.json`` each read through the gate; the slides' files are tiny stand-ins);
- every 224 px tile of level 0 of the real ``small_HE.svs`` read with
  ``tiling.grid.read_level_region`` (the native array, through the decode guard);
- ``cohort_report.csv``-like CSV text of ``--rows`` rows with ``spreadsheet_csv`` against
  plain ``DataFrame.to_csv``.

Prints a markdown table. Nothing here asserts; figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SLIDE = Path(__file__).resolve().parents[2] / "shared" / "data" / "small_HE.svs"


def _median_ms(step: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _journal(folder: Path, edits: int) -> None:
    lines = [{"seq": 0, "op": "header", "slide_id": "s", "format": "napari-imilia-review-journal"}]
    for i in range(edits):
        entry = {
            "entry_id": f"e{i % 500}",
            "target_kind": "tile",
            "tile_id": f"t{i % 500}",
            "region": None,
            "verdict": ("agree", "disagree", "uncertain")[i % 3],
            "reviewer_class": "active inflammation",
            "note": "crypt abscess, cryptitis" * (1 + i % 3),
            "reviewer": "Dr Ada",
            "created_utc": "2026-01-01T00:00:00Z",
            "updated_utc": "2026-01-01T00:00:00Z",
        }
        lines.append({"seq": i + 1, "op": "add", "utc": "2026-01-01T00:00:00Z", "entry": entry})
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    (folder / "review.journal.jsonl").write_text(text, encoding="utf-8")


def _results(root: Path, slides: int) -> None:
    records = []
    for i in range(slides):
        slide_id = f"case_{i:04d}"
        folder = root / slide_id
        folder.mkdir(parents=True)
        info = {"slide_id": slide_id, "slide": str(SLIDE), "score": (i % 100) / 100, "n_tiles": 45}
        (folder / "slide.json").write_text(json.dumps(info))
        (folder / "tiles.csv").write_text("tile_id,x,y,width,height,score\nt,0,0,224,224,0.5\n")
        grade = {"nancy": i % 5, "activity": "", "model_agreement": "", "note": "", "reviewer": "",
                 "updated_utc": "2026-01-01T00:00:00Z"}  # fmt: skip
        doc = {"format": "napari-imilia-slide-grade", "slide_id": slide_id, "grade": grade}
        (folder / "slide_grade.json").write_text(json.dumps(doc))
        records.append({"path": str(SLIDE), "slide_id": slide_id, "labels": {}, "grade": None})
    cohort = {"format": "napari-imilia-cohort", "schema_version": 1, "slides": records}
    (root / "cohort_review.json").write_text(json.dumps(cohort))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10_000)
    parser.add_argument("--slides", type=int, default=300)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import pandas as pd

    import napari_imilia
    from napari_imilia.cohort import review as cohort_review
    from napari_imilia.review import ReviewStore
    from napari_imilia.slide import open_slide
    from napari_imilia.tiling.grid import level_array, read_level_region

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _journal(root / "s", args.edits)

        def replay() -> None:
            (root / "s" / "review.json").unlink(missing_ok=True)  # replay it all, every time
            ReviewStore.open(root / "s", "s")

        ms = _median_ms(replay, args.repeats)
        rows.append((f"`ReviewStore.open`, journal of {args.edits:,} edits, no snapshot", ms))

        _results(root / "results", args.slides)
        cohort_review.unreadable_reason = lambda path: ""  # the stand-ins are not slides
        ms = _median_ms(lambda: cohort_review.Cohort.open(root / "results"), args.repeats)
        rows.append((f"`Cohort.open`, {args.slides} slides (3 files each read back)", ms))

    with open_slide(SLIDE) as slide:
        array = level_array(slide, 0)
        width, height = slide.dimensions
        corners = [(x, y) for y in range(0, height, 224) for x in range(0, width, 224)]

        def read_all() -> None:
            for xy in corners:
                read_level_region(array, 1.0, xy, (224, 224))

        ms = _median_ms(read_all, args.repeats)
        rows.append((f"{len(corners)} tiles of 224 px read from small_HE.svs level 0", ms))

    table = pd.DataFrame(
        {
            "slide_id": [f"=case_{i}" if i % 7 == 0 else f"case_{i}" for i in range(args.rows)],
            "score": [i / args.rows for i in range(args.rows)],
            "note": ["@SUM(1+1)" if i % 5 == 0 else "crypt abscess" for i in range(args.rows)],
        }
    )
    ms = _median_ms(lambda: table.to_csv(index=False), args.repeats)
    rows.append((f"`DataFrame.to_csv`, {args.rows:,} rows x 3", ms))
    try:
        from napari_imilia.export.tables import spreadsheet_csv
    except ImportError:
        pass
    else:
        ms = _median_ms(lambda: spreadsheet_csv(table), args.repeats)
        rows.append((f"`spreadsheet_csv`, {args.rows:,} rows x 3", ms))

    print(
        f"napari-imilia from {Path(napari_imilia.__file__).parent}, Python {sys.version.split()[0]}"
    )
    print("| step | median wall ms |\n| --- | ---: |")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
