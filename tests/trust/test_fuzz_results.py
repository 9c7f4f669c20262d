"""Property-based fuzzing (hypothesis) of the results-folder readers (issue 20): whatever a
co-reviewer leaves in ``slide.json``, ``review.json``, the review journal,
``slide_grade.json``, ``cohort_review.json`` or ``cohort.csv``, reading it gives valid values
or a one-line ``ImiliaError``, never another exception. Same fixed budgets as test_fuzz."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import FUZZ, json_values, numbers

from napari_imilia.cohort.item import CohortItem, read_slide_json
from napari_imilia.cohort.review import COHORT_FILE, Cohort
from napari_imilia.cohort.summary import SUMMARY_FILE, read_summary, write_cohort_csv
from napari_imilia.errors import DataError, ImiliaError
from napari_imilia.export.tables import spreadsheet_raw, spreadsheet_safe
from napari_imilia.predict.results import load_prediction
from napari_imilia.review import ReviewStore
from napari_imilia.review.entry import VERDICTS
from napari_imilia.review.grade import GRADE_FILE, SlideGrade, load_slide_grade
from napari_imilia.review.store import JOURNAL_FILE, REVIEW_FILE

SLIDE = "case"
texts = st.one_of(st.text(max_size=12), st.sampled_from(["=1+1", "+x", "-", "@", "\t", "'="]))
deep = st.one_of(st.sampled_from([65, 5000, 200_000]), st.integers(0, 3000)).map(
    lambda depth: "[" * depth + "]" * depth
)


def _folder() -> Path:
    root = Path(tempfile.mkdtemp(prefix="imilia-fuzz-results-"))
    (root / SLIDE).mkdir()
    return root


def _text(document) -> str:
    return document if isinstance(document, str) else json.dumps(document)


def _dict_like(keys: list[str], values=json_values):
    """Objects with the file's own keys (any values) or anything at all."""
    return st.one_of(
        st.fixed_dictionaries({}, optional={key: values for key in keys}), json_values, deep
    )


slide_docs = st.one_of(
    st.fixed_dictionaries(  # nearly right: the fields the readers use, any other value
        {"slide_id": st.just(SLIDE), "score": st.one_of(st.floats(0, 1), numbers)},
        optional={
            "logit": numbers,
            "n_tiles": st.one_of(st.integers(0, 9), numbers, texts),
            "slide": st.one_of(texts, json_values),
            "model": json_values,
        },
    ),
    _dict_like(["slide_id", "score", "logit", "n_tiles", "slide", "model"]),
)


@FUZZ
@given(slide_docs, st.booleans())
def test_slide_json_gives_a_result_or_a_one_line_error(document, with_tiles) -> None:
    root = _folder()
    folder = root / SLIDE
    (folder / "slide.json").write_text(_text(document), encoding="utf-8")
    if with_tiles:
        (folder / "tiles.csv").write_text("tile_id,x,y,width,height,score\nt,0,0,1,1,0.5\n")
    try:
        info = read_slide_json(folder, SLIDE)
    except DataError as error:
        assert "\n" not in str(error)
    else:
        assert info is None or 0.0 <= float(info["score"]) <= 1.0
    try:
        result = load_prediction(folder)
    except ImiliaError as error:
        assert "\n" not in str(error)
    else:
        assert 0.0 <= result.score <= 1.0 and result.slide_id == str(document["slide_id"])
    cohort = Cohort(root, [CohortItem(path=str(root / "missing.svs"), slide_id=SLIDE)])
    cohort.refresh()  # a bad file costs its slide, never raises
    assert cohort[0].status == "error"


valid_entries = st.fixed_dictionaries(
    {
        "entry_id": st.text(min_size=1, max_size=8),
        "target_kind": st.just("tile"),
        "tile_id": st.text(min_size=1, max_size=8),
        "region": st.none(),
        "verdict": st.sampled_from(VERDICTS),
        "reviewer_class": texts,
        "note": texts,
        "reviewer": texts,
        "created_utc": texts,
        "updated_utc": texts,
    }
)
entries = st.one_of(
    valid_entries,
    st.fixed_dictionaries(
        {},
        optional={
            "entry_id": st.one_of(texts, json_values),
            "target_kind": st.sampled_from(["tile", "region", "other"]),
            "tile_id": st.one_of(st.none(), texts),
            "region": st.one_of(st.none(), json_values),
            "verdict": st.sampled_from([*VERDICTS, "maybe"]),
            "reviewer_class": texts,
            "note": texts,
            "reviewer": texts,
            "created_utc": texts,
            "updated_utc": texts,
        },
    ),
)
review_docs = st.one_of(
    st.fixed_dictionaries(
        {"format": st.just("napari-imilia-review"), "slide_id": st.just(SLIDE)},
        optional={
            "schema_version": st.one_of(st.integers(-2, 3), json_values),
            "entries": st.one_of(
                st.lists(st.one_of(entries, json_values), max_size=4), json_values
            ),
            "journal_seq": st.one_of(numbers, json_values),
            "journal_bytes": st.one_of(st.integers(-5, 10**6), json_values),
        },
    ),
    json_values,
    deep,
)
records = st.one_of(
    st.fixed_dictionaries(
        {"seq": st.one_of(st.integers(0, 9), json_values)},
        optional={
            "op": st.sampled_from(["add", "update", "remove", "header", "zap"]),
            "entry": st.one_of(entries, json_values),
            "entry_id": texts,
            "slide_id": st.sampled_from([SLIDE, "other"]),
        },
    ),
    json_values,
    deep,
)
journal_lines = st.lists(
    st.one_of(records.map(_text), st.binary(max_size=30).map(lambda b: b.decode("latin-1"))),
    max_size=6,
)


@FUZZ
@given(st.one_of(st.none(), review_docs), journal_lines, st.booleans())
def test_review_files_give_entries_or_a_one_line_error(document, lines, torn) -> None:
    folder = _folder() / SLIDE
    if document is not None:
        (folder / REVIEW_FILE).write_text(_text(document), encoding="utf-8")
    if lines:
        text = "\n".join(line.replace("\n", " ") for line in lines) + ("" if torn else "\n")
        (folder / JOURNAL_FILE).write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            store = ReviewStore.open(folder, SLIDE)
        except DataError as error:  # another slide's review, a newer schema
            assert "\n" not in str(error)
            return
        for entry in store.entries():
            assert entry.verdict in VERDICTS and isinstance(entry.note, str)
        entry = store.add(verdict="agree", tile_id="t", note="=1+1")  # still writable
    assert ReviewStore.open(folder, SLIDE).get(entry.entry_id).note == "=1+1"


grade_docs = st.one_of(
    st.fixed_dictionaries(
        {"format": st.just("napari-imilia-slide-grade"), "slide_id": st.just(SLIDE)},
        optional={
            "grade": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "nancy": st.one_of(st.integers(-1, 5), numbers, texts),
                        "activity": texts,
                        "note": st.one_of(texts, json_values),
                        "reviewer": texts,
                    },
                ),
                json_values,
            )
        },
    ),
    json_values,
    deep,
)


@FUZZ
@given(grade_docs)
def test_slide_grade_gives_a_grade_none_or_a_one_line_error(document) -> None:
    folder = _folder() / SLIDE
    (folder / GRADE_FILE).write_text(_text(document), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grade = load_slide_grade(folder, SLIDE)
    assert grade is None or (isinstance(grade, SlideGrade) and grade.nancy in (None, 0, 1, 2, 3, 4))


slide_records = st.fixed_dictionaries(
    {},
    optional={
        "path": st.one_of(texts, json_values),
        "slide_id": st.one_of(texts, st.sampled_from(["../up", "/abs", "javascript:x//"])),
        "labels": st.one_of(st.dictionaries(texts, texts, max_size=2), json_values),
        "grade": st.one_of(st.none(), json_values),
        "opened_utc": texts,
        "score_error": texts,
    },
)
cohort_docs = st.one_of(
    st.fixed_dictionaries(
        {"format": st.just("napari-imilia-cohort")},
        optional={
            "schema_version": st.one_of(st.integers(0, 3), json_values),
            "slides": st.one_of(
                st.lists(st.one_of(slide_records, json_values), max_size=4), json_values
            ),
            "current_slide_id": st.one_of(texts, json_values),
            "source": texts,
        },
    ),
    json_values,
    deep,
)


@FUZZ
@given(cohort_docs)
def test_cohort_file_gives_a_cohort_inside_its_root_or_a_one_line_error(document) -> None:
    root = _folder()
    (root / COHORT_FILE).write_text(_text(document), encoding="utf-8")
    try:
        cohort = Cohort.open(root)
    except DataError as error:
        assert "\n" not in str(error)
        return
    for index in range(len(cohort)):
        try:
            folder = cohort.slide_dir(index)
        except DataError:
            continue
        assert folder.parent.resolve() == root.resolve()


summary_rows = st.lists(
    st.fixed_dictionaries(
        {
            "slide": texts,
            "slide_id": texts,
            "status": st.sampled_from(["ok", "error", "not scored"]),
            "score": st.one_of(st.none(), st.floats(-1, 1)),
            "n_tiles": st.one_of(st.none(), st.integers(0, 10**6)),
            "error": st.one_of(st.none(), texts),
        }
    ),
    max_size=4,
    unique_by=lambda row: row["slide_id"],
)


@FUZZ
@given(summary_rows, st.one_of(st.none(), st.text(max_size=200)))
def test_cohort_csv_round_trips_raw_text_and_refuses_garbage(rows, garbage) -> None:
    root = _folder()
    if garbage is not None:
        (root / SUMMARY_FILE).write_text(garbage, encoding="utf-8")
        try:
            read_summary(root / SUMMARY_FILE)
        except ImiliaError as error:
            assert "\n" not in str(error)
        (root / SUMMARY_FILE).unlink()
    table = pd.DataFrame(rows, columns=["slide", "slide_id", "status", "score", "n_tiles", "error"])
    written = write_cohort_csv(root, table)
    back = read_summary(root / SUMMARY_FILE)
    assert back["slide_id"].fillna("").tolist() == written["slide_id"].fillna("").tolist()


@FUZZ
@given(st.text(max_size=40))
def test_spreadsheet_rule_is_reversible_and_never_leaves_a_formula(text) -> None:
    safe = spreadsheet_safe(text)
    assert spreadsheet_raw(safe) == text
    if safe[:1] in ("=", "+", "-", "@", "\t", "\r"):
        float(safe)  # only a plain number may start like a formula
