"""Nancy and Robarts from item grades, against a table worked by hand from the published
definitions (Marchal-Bressenot et al. Gut 2017; Mosli et al. Gut 2017)."""

from __future__ import annotations

import pytest

from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.indices import (
    ACUTE,
    CHRONIC,
    EOSINOPHILS,
    EPI_NEUTROPHILS,
    EROSION,
    ITEMS,
    LP_NEUTROPHILS,
    RHI_MAX,
    index_values,
    item_columns,
    nancy,
    robarts,
)

# (erosion or ulceration 0-3, acute infiltrate 0-2, chronic infiltrate 0-3) -> Nancy, worked
# by hand down the tree: ulcer (RHI erosion 3) -> 4; else acute moderate-severe -> 3, mild
# -> 2; else chronic moderate or marked (2-3) -> 1, none or mild (0-1) -> 0.
NANCY_TABLE = [
    ((3, 0, 0), 4),  # ulceration decides alone
    ((3, 2, 3), 4),
    ((2, 2, 0), 3),  # unequivocal erosion is stripping, not ulceration: the tree goes on
    ((0, 2, 3), 3),
    ((1, 1, 0), 2),
    ((0, 1, 3), 2),
    ((0, 0, 3), 1),  # marked chronic infiltrate
    ((0, 0, 2), 1),  # moderate
    ((2, 0, 1), 0),  # mild chronic infiltrate: no significant disease
    ((0, 0, 0), 0),
]


@pytest.mark.parametrize(("grades", "expected"), NANCY_TABLE)
def test_nancy_follows_the_decision_tree(grades, expected):
    erosion, acute, chronic = grades
    assert nancy({EROSION: erosion, ACUTE: acute, CHRONIC: chronic}) == expected


def test_nancy_needs_only_the_items_the_tree_reaches():
    assert nancy({EROSION: 3}) == 4
    assert nancy({EROSION: 0, ACUTE: 2}) == 3  # chronic not needed
    assert nancy({EROSION: 0, ACUTE: 0}) is None  # chronic needed
    assert nancy({ACUTE: 2}) is None  # ulceration not said yet
    assert nancy({}) is None


# (chronic, lamina propria neutrophils, neutrophils in epithelium, erosion) -> RHI,
# 1 x chronic + 2 x LP neutrophils + 3 x epithelial neutrophils + 5 x erosion.
RHI_TABLE = [
    ((0, 0, 0, 0), 0),
    ((3, 3, 3, 3), 33),
    ((1, 0, 0, 0), 1),
    ((0, 1, 0, 0), 2),
    ((0, 0, 1, 0), 3),
    ((0, 0, 0, 1), 5),
    ((2, 1, 1, 0), 7),  # 2 + 2 + 3
    ((3, 2, 2, 1), 18),  # 3 + 4 + 6 + 5
    ((1, 3, 0, 2), 17),  # 1 + 6 + 0 + 10
]


@pytest.mark.parametrize(("grades", "expected"), RHI_TABLE)
def test_robarts_is_the_weighted_sum(grades, expected):
    keys = (CHRONIC, LP_NEUTROPHILS, EPI_NEUTROPHILS, EROSION)
    assert robarts(dict(zip(keys, grades, strict=True))) == expected


def test_robarts_range_and_missing_items():
    assert RHI_MAX == 33
    assert robarts({CHRONIC: 3, LP_NEUTROPHILS: 3, EPI_NEUTROPHILS: 3}) is None
    full = {CHRONIC: 1, LP_NEUTROPHILS: 0, EPI_NEUTROPHILS: 0, EROSION: 0, EOSINOPHILS: 3}
    assert robarts(full) == 1  # eosinophils enter no index


def test_out_of_scale_grades_are_refused():
    with pytest.raises(ValueError, match="acute inflammatory infiltrate is graded 0-2"):
        nancy({ACUTE: 3, EROSION: 0})
    with pytest.raises(ValueError, match="erosion or ulceration is graded 0-3"):
        robarts({EROSION: 4, CHRONIC: 0, LP_NEUTROPHILS: 0, EPI_NEUTROPHILS: 0})


def test_item_grades_round_trip_through_a_slide_grade_and_give_the_columns():
    items = {CHRONIC: 2, LP_NEUTROPHILS: 1, EPI_NEUTROPHILS: 1, EROSION: 0, ACUTE: 1}
    grade = SlideGrade.from_dict(SlideGrade(nancy=2, items=items).to_dict())
    assert index_values(grade.items) == {"nancy_from_items": 2, "rhi": 7}
    columns = item_columns(grade.items)
    assert list(columns) == [f"item_{item.key}" for item in ITEMS]
    assert columns["item_eosinophils"] is None and columns["item_chronic_infiltrate"] == 2
    assert index_values(None) == {"nancy_from_items": None, "rhi": None}
    off_scale = {**items, CHRONIC: 7}  # a stored grade off the item's scale: no index, no crash
    assert index_values(off_scale) == {"nancy_from_items": None, "rhi": None}
