"""A cohort shared by several readers: no grade copies to go stale, each reader's place kept
(two real processes), an old cohort file's grades read as legacy grades, a blinded study's
table without the scores a reader has not earned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_imilia.cohort.review import COHORT_FILE, Cohort
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.reads import PRE_AI
from napari_imilia.review.study import create_study
from support.cohort_data import N_SLIDES, cohort_data, scored_results  # noqa: F401 (fixtures)


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


# A reader working through the cohort in their own process: grades slides, then stays on one.
READER = """
import sys, time
from pathlib import Path
from napari_imilia.cohort.review import Cohort
from napari_imilia.review.grade import SlideGrade
root, reader, stay = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
cohort = Cohort.open(root, reader=reader)
print("ready", flush=True)
while not (root / "go").exists():
    time.sleep(0.005)
for n, item in enumerate(cohort.items[1:9]):
    index = cohort.index_of(item.slide_id)
    cohort.set_current(index)
    cohort.set_grade(index, SlideGrade(nancy=n % 5, note=f"{reader} {item.slide_id}"))
cohort.set_current(cohort.index_of(stay))
print("done", flush=True)
"""


def test_two_reader_processes_keep_every_grade_and_their_own_place(scored_copy: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = []
    for reader, stay in (("Dr A", "case_03"), ("Dr B", "case_06")):
        child = subprocess.Popen(
            [sys.executable, "-c", READER, str(scored_copy), reader, stay],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout.readline().strip() == "ready"
        children.append(child)
    (scored_copy / "go").touch()
    for child in children:
        assert child.stdout.read().strip() == "done" and child.wait(timeout=300) == 0
    as_a = Cohort.open(scored_copy, reader="Dr A")
    as_b = Cohort.open(scored_copy, reader="Dr B")
    assert as_a[as_a.current_index].slide_id == "case_03"  # neither lost the other's place
    assert as_b[as_b.current_index].slide_id == "case_06"
    for item in as_a.items[1:9]:
        notes = sorted(r.grade.note for r in item.reads.reads)
        assert notes == [f"Dr A {item.slide_id}", f"Dr B {item.slide_id}"]
    saved = json.loads((scored_copy / COHORT_FILE).read_text())
    assert not any("grade" in record for record in saved["slides"])  # no stale copies
    assert all(record["opened_utc"] for record in saved["slides"][1:9])


def test_an_old_cohort_file_keeps_its_grades_and_place(scored_copy: Path) -> None:
    path = scored_copy / COHORT_FILE
    data = json.loads(path.read_text())
    data["schema_version"] = 1
    data["current_slide_id"] = "case_04"
    old = {"nancy": 2, "activity": "", "model_agreement": "agree", "note": "old copy",
           "reviewer": "Dr Old", "updated_utc": "2025-03-01T00:00:00Z"}  # fmt: skip
    data["slides"][2]["grade"] = old
    path.write_text(json.dumps(data))
    cohort = Cohort.open(scored_copy, reader="Dr New")
    item = cohort[2]
    assert cohort[cohort.current_index].slide_id == "case_04"
    assert item.grade.note == "old copy" and item.status == "reviewed"
    assert item.reads.reads[0].legacy and item.reads.reads[0].reader == "Dr Old"
    cohort.set_current(3)  # saved in the new form: the old copy stays as a legacy grade
    again = Cohort.open(scored_copy, reader="Dr New")
    assert again[2].grade.note == "old copy" and again[again.current_index].slide_id == "case_02"
    assert json.loads(path.read_text())["slides"][2]["legacy_grade"]["note"] == "old copy"


def test_blinded_study_table_hides_unread_scores(scored_copy: Path) -> None:
    cohort = Cohort.open(scored_copy, reader="Dr A")
    slides = [item.slide_id for item in cohort.items if not item.error]
    create_study(scored_copy, slides, ["Dr A", "Dr B"], blinded=True, seed=2)
    cohort.refresh()
    assert all(item.model_hidden for item in cohort.items if not item.error)
    assert cohort.table()["score"].isna().all()
    index = cohort.index_of(cohort.study.order_for("Dr A")[0])
    assert cohort.step(+1) == index  # Alt+N follows Dr A's shuffled order
    read = cohort.set_grade(index, SlideGrade(nancy=3))
    assert read.phase == PRE_AI and not cohort[index].model_hidden
    table = cohort.table().set_index("slide_id")
    assert table["score"].notna().sum() == 1 and table.loc[cohort[index].slide_id, "nancy"] == 3
    as_b = Cohort.open(scored_copy, reader="Dr B")  # B sees neither A's grade nor the score
    assert as_b[index].grade is None and as_b[index].model_hidden
    assert as_b.summary_text().startswith(f"0 of {N_SLIDES + 1} reviewed")
