"""A shared results folder is untrusted input (issue 20): what a co-reviewer or a hostile
hand put in it cannot make us write outside it, run script, hang, exhaust memory or abort
the cohort report. Each test reproduces a case found on main."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from napari_imilia.cli import main
from napari_imilia.cohort.review import COHORT_FILE, Cohort
from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.report import write_reports
from napari_imilia.review import ReviewStore
from napari_imilia.review.grade import GRADE_FILE, SlideGrade, load_slide_grade
from napari_imilia.review.grading import commit_grade
from napari_imilia.review.reads import READ_SUFFIX, READS_DIR, load_slide_reads, reader_key
from napari_imilia.review.store import JOURNAL_FILE, LOCK_FILE, REVIEW_FILE
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
JS_ID = "javascript:alert(document.domain)//"
DEEP = 200_000


@pytest.fixture
def results(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A private copy of the scored generated cohort, inside ``tmp_path/share``."""
    return Path(shutil.copytree(scored_results, tmp_path / "share" / "results", symlinks=True))


def _edit_cohort(results: Path, change) -> None:
    path = results / COHORT_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ----------------------------------------------------------------------------- paths
def test_hostile_slide_ids_never_write_outside_the_results_folder(results: Path) -> None:
    outside = results.parent / "outside"
    victim = outside / "victim"
    victim.mkdir(parents=True)
    for name in ("slide.json", "tiles.csv", "heatmap.png", "tiles.geojson"):
        shutil.copy(results / "case_00" / name, victim / name)  # a result to lure the report
    info = json.loads((victim / "slide.json").read_text())
    (victim / "slide.json").write_text(json.dumps({**info, "slide_id": "../outside/victim"}))

    elsewhere = results.parent / "elsewhere"

    def hostile(data: dict) -> None:
        data["slides"][1]["slide_id"] = "../outside/victim"
        data["slides"][2]["slide_id"] = str(elsewhere)  # an absolute path
        data["current_slide_id"] = "../outside/victim"

    _edit_cohort(results, hostile)
    before = _files_under(outside)
    assert main(["report", str(results), "--top-tiles", "0"]) == 0
    cohort = Cohort.open(results)
    ids = [item.slide_id for item in cohort.items]
    assert "../outside/victim" not in ids and str(elsewhere) not in ids
    cleaned = cohort.items[1].slide_id
    assert "/" not in cleaned and not cleaned.startswith(".")
    assert any("not a safe folder name" in w for w in cohort.warnings)
    for index in (1, 2):
        assert cohort.slide_dir(index).parent.resolve() == results.resolve()
        cohort.set_grade(index, SlideGrade(nancy=3, reviewer="hostile"))
    assert _files_under(outside) == before  # no report.html, no slide_grade.json out there
    assert not elsewhere.exists()
    assert (results / "cohort_report.html").is_file()


def test_a_slide_folder_linked_out_of_the_root_is_refused(results: Path) -> None:
    outside = results.parent / "outside"
    shutil.move(results / "case_03", outside)
    (results / "case_03").symlink_to(outside, target_is_directory=True)
    cohort = Cohort.open(results)
    index = cohort.index_of("case_03")
    assert cohort[index].status == "error" and "symbolic link" in cohort[index].error
    assert cohort[index].score is None
    with pytest.raises(DataError):
        cohort.set_grade(index, SlideGrade(nancy=2))
    write_reports(cohort, top_k=0)
    assert not (outside / "report.html").exists() and not (outside / GRADE_FILE).exists()
    assert (results / "case_04" / "report.html").is_file()  # the others are reported

    from napari_imilia.trust.results import results_path

    with pytest.raises(DataError, match="outside the results folder"):
        results_path(results, "case_03")
    assert results_path(results, "case_04") == results / "case_04"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_javascript_slide_id_gives_no_link_that_runs_script(results: Path, tmp_path) -> None:
    _edit_cohort(results, lambda data: data["slides"][1].update(slide_id=JS_ID))
    lure = results / "javascript:alert(document.domain)"  # what the raw id's link points at
    lure.mkdir()
    (lure / "report.html").write_text("<p>lure</p>")
    for name in ("case_02", "case_05"):  # real slide pages to link to
        (results / name / "report.html").write_text("<p>slide</p>")
    assert main(["report", str(results), "--top-tiles", "0", "--no-slide-pages"]) == 0
    page = (results / "cohort_report.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert "./case_02/report.html" in hrefs and "./case_05/report.html" in hrefs
    assert not [h for h in hrefs if not h.startswith("./") or ":" in h], hrefs
    assert "Content-Security-Policy" in page
    # click every javascript: link in Chromium (CSP removed, to test the links themselves)
    probe = tmp_path / "probe.html"
    clicker = (
        "<script>window.alert=()=>{document.body.dataset.ran='yes'};"
        "window.addEventListener('load',()=>{const js=[...document.links].filter("
        "a=>a.protocol==='javascript:');document.body.dataset.links=document.links.length;"
        "document.body.dataset.js=js.length;js.forEach(a=>a.click());});</script>"
    )
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe.write_text(text.replace("</body>", clicker + "</body>"), encoding="utf-8")
    body = _chromium_body(probe)
    assert 'data-links="2"' in body and 'data-js="0"' in body and "data-ran" not in body
    # and the page's own policy stops any script that would slip in
    blocked = tmp_path / "blocked.html"
    blocked.write_text(page.replace("</body>", clicker + "</body>"), encoding="utf-8")
    assert "data-links" not in _chromium_body(blocked)


def _chromium_body(page: Path) -> str:
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return re.search(r"<body[^>]*>", dom).group(0)


# ----------------------------------------------------------------------------- limits
@pytest.mark.parametrize("name", ["slide.json", REVIEW_FILE, GRADE_FILE])
def test_a_file_nested_200000_deep_costs_its_slide_not_the_report(results: Path, name: str) -> None:
    (results / "case_04" / name).write_text(_nested(DEEP))
    cohort = Cohort.open(results)  # main: RecursionError
    written = write_reports(cohort, top_k=0)
    assert (results / "cohort_report.html").is_file() and "case_05" in written
    item = cohort[cohort.index_of("case_04")]
    if name == "slide.json":
        assert item.status == "error" and "nested" in item.error and item.score is None
    else:  # moved aside, the slide still reported
        assert list((results / "case_04").glob(f"{name}.corrupt-*"))


def test_a_cohort_file_nested_200000_deep_is_moved_aside(results: Path) -> None:
    (results / COHORT_FILE).write_text(_nested(DEEP))
    with pytest.raises(DataError, match="nested"):
        Cohort.open(results)
    assert list(results.glob(f"{COHORT_FILE}.corrupt-*"))
    assert main(["report", str(results), "--top-tiles", "0"]) == 0  # rebuilt from cohort.csv


def test_a_journal_linked_outside_gets_no_edit(results: Path) -> None:
    folder = results / "case_02"
    store = ReviewStore.open(folder, "case_02")
    store.add(verdict="agree", tile_id="t1", reviewer="ada")
    victim = results.parent / "victim.txt"
    victim.write_text("someone else's file\n")
    (folder / JOURNAL_FILE).unlink()
    (folder / JOURNAL_FILE).symlink_to(victim)
    with pytest.raises(DataError, match="outside the results folder") as error:
        store.add(verdict="disagree", tile_id="t2", reviewer="ada")
    assert "\n" not in str(error.value)
    with pytest.raises(DataError):
        ReviewStore.open(folder, "case_02")
    assert victim.read_text() == "someone else's file\n"


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder"])
def test_a_journal_that_is_no_regular_file_is_one_line(results: Path, kind: str) -> None:
    folder = results / "case_02"
    journal = folder / JOURNAL_FILE
    if kind == "dev-zero":
        journal.symlink_to("/dev/zero")  # main: MemoryError after reading gigabytes
    elif kind == "fifo":
        os.mkfifo(journal)  # main: waits for a writer forever
    else:
        journal.mkdir()
    with pytest.raises(DataError) as error:
        ReviewStore.open(folder, "case_02")
    assert "\n" not in str(error.value) and str(journal) in str(error.value)
    cohort = Cohort.open(results)
    write_reports(cohort, top_k=0)  # the slide gets no page, the rest do
    assert not (folder / "report.html").exists() and (results / "case_03" / "report.html").exists()
    assert any(w.startswith("case_02: no report") for w in cohort.warnings)


def test_fifos_and_devices_in_place_of_results_files_are_refused(results: Path) -> None:
    folder = results / "case_06"
    (folder / "slide.json").unlink()
    os.mkfifo(folder / "slide.json")
    cohort = Cohort.open(results)  # main: waits for a writer of the FIFO forever
    item = cohort[cohort.index_of("case_06")]
    assert item.score is None and "FIFO" in item.error
    (folder / GRADE_FILE).symlink_to("/dev/zero")
    with pytest.warns(UserWarning, match="outside the results folder"):
        assert load_slide_grade(folder, "case_06") is None  # moved aside, not read
    assert list(folder.glob(f"{GRADE_FILE}.corrupt-*"))

    from napari_imilia.trust.results import open_results_file, read_results_json

    with pytest.raises(DataError, match="FIFO"):
        read_results_json(folder / "slide.json", folder)
    (folder / "zero").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="outside"):
        open_results_file(folder / "zero", folder)
    with pytest.raises(DataError, match="a device"):
        open_results_file("/dev/zero", None)  # a device, even where any place is allowed


def test_a_symlinked_review_lock_is_an_imilia_error(results: Path) -> None:
    folder = results / "case_01"
    victim = results.parent / "victim.txt"
    victim.write_text("keep me\n")
    (folder / LOCK_FILE).symlink_to(victim)
    with pytest.raises(ImiliaError, match="symbolic link"):  # main: a raw OSError (ELOOP)
        ReviewStore.open(folder, "case_01").add(verdict="agree", tile_id="t1")
    from napari_imilia.trust.results import check_lock_file

    with pytest.raises(DataError):
        check_lock_file(folder / LOCK_FILE)
    assert victim.read_text() == "keep me\n"


def test_grade_files_linked_outside_are_neither_read_nor_appended_to(results: Path) -> None:
    folder = results / "case_07"
    secret = results.parent / "grade_elsewhere.json"
    old = {"nancy": 4, "note": "not yours", "reviewer": "Dr Old"}
    secret.write_text(json.dumps({"format": "napari-imilia-slide-grade", "slide_id": "case_07",
                                  "grade": old}))  # fmt: skip
    (folder / GRADE_FILE).symlink_to(secret)  # a legacy grade file leading out
    with pytest.warns(UserWarning, match="outside the results folder"):
        assert load_slide_grade(folder, "case_07") is None  # main: read the other file
    assert json.loads(secret.read_text())["grade"]["note"] == "not yours"

    journal = folder / READS_DIR / (reader_key("Dr Ada") + READ_SUFFIX)
    journal.parent.mkdir()
    victim = results.parent / "victim.jsonl"
    victim.write_text("keep me\n")
    journal.symlink_to(victim)  # a reader's journal leading out
    with pytest.raises(DataError, match="outside the results folder"):
        commit_grade(results, "case_07", "Dr Ada", SlideGrade(nancy=1))
    assert victim.read_text() == "keep me\n"  # nothing appended through the link
    reads = load_slide_reads(folder, "case_07")
    assert reads.reads == [] and any("outside the results folder" in w for w in reads.warnings)


def test_a_slide_json_over_the_size_limit_is_refused(results: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMILIA_IMPORT_MAX_MB", "1")
    info = results / "case_08" / "slide.json"
    data = json.loads(info.read_text())
    data["padding"] = "x" * (2 << 20)
    info.write_text(json.dumps(data))
    cohort = Cohort.open(results)
    item = cohort[cohort.index_of("case_08")]
    assert item.status == "error" and "IMILIA_IMPORT_MAX_MB" in item.error

    from napari_imilia.trust.results import read_results_json

    with pytest.raises(DataError, match="over the import limit"):
        read_results_json(info, info.parent)


def test_a_feature_file_attribute_nested_200000_deep_is_kept_as_text(results: Path) -> None:
    import h5py

    from napari_imilia.features.cache import cache_matches, read_features

    path = results / "features" / "case_09.h5"
    with h5py.File(path, "a") as h5:
        h5.attrs["extractor"] = _nested(DEEP)  # main: RecursionError on every read
    bag = read_features(path)
    assert bag.attrs["extractor"] == _nested(DEEP) and bag.n_tiles > 0
    assert cache_matches(path, {"extractor": "imilia-stain-stats"}) is False
