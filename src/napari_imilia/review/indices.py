"""Index items, their grade scales, and the Nancy and Robarts indices that follow (no Qt).

A reviewer grades the *items* of a slide (kept in ``SlideGrade.items`` under the keys of
:data:`ITEMS`); the indices follow from them by the published rules:

- **Robarts histopathology index** (RHI; Mosli et al., "Development and validation of a
  histological index for UC", Gut 2017;66:50-58): RHI = 1 x chronic inflammatory infiltrate
  + 2 x lamina propria neutrophils + 3 x neutrophils in epithelium + 5 x erosion or
  ulceration, each item graded 0-3, so 0-33. Item scales (the paper's wording, shortened):
  chronic infiltrate 0 no increase, 1 mild but unequivocal, 2 moderate, 3 marked increase;
  lamina propria neutrophils 0 none, 1 mild but unequivocal, 2 moderate, 3 marked increase;
  neutrophils in epithelium 0 none, 1 < 5 % of crypts involved, 2 < 50 %, 3 >= 50 %;
  erosion or ulceration 0 none (no erosion, ulceration or granulation tissue), 1 recovering
  epithelium with adjacent inflammation or probable erosion (focally stripped), 2
  unequivocal erosion, 3 ulcer or granulation tissue.
- **Nancy histological index** (Marchal-Bressenot et al., "Development and validation of
  the Nancy histological index for UC", Gut 2017;66:43-49, and their practical guide, Gut
  2016;65:1919-20): a decision tree over three items: ulceration (loss of crypts replaced by
  granulation tissue, or fibrinopurulent exudate; epithelial stripping alone is not
  ulceration) -> grade 4; else the acute inflammatory cell infiltrate (neutrophils in the
  lamina propria or epithelium): moderate to severe (clusters, easily seen) -> 3, mild (few,
  hard to see) -> 2; else the chronic inflammatory infiltrate: moderate or marked increase
  -> 1, none or mild -> 0.

The two share items where their definitions do: Nancy's ulceration is RHI's erosion or
ulceration grade 3 ("ulcer or granulation tissue"; erosion, grade 1-2, is epithelial
stripping, not Nancy ulceration), and Nancy's "moderate or marked" chronic infiltrate is
RHI's chronic infiltrate grade 2-3. Nancy's acute inflammatory infiltrate has no RHI
counterpart (RHI splits neutrophils by compartment and grades crypts involved), so it is an
item of its own (0 none, 1 mild, 2 moderate to severe). Eosinophils are graded (0 no
increase, 1 mild, 2 moderate, 3 marked) as evidence of chronicity; neither index uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Item keys (as stored in ``SlideGrade.items``).
CHRONIC = "chronic_infiltrate"
LP_NEUTROPHILS = "lamina_propria_neutrophils"
EPI_NEUTROPHILS = "epithelium_neutrophils"
ACUTE = "acute_infiltrate"
EOSINOPHILS = "eosinophils"
EROSION = "erosion_ulceration"


@dataclass(frozen=True)
class IndexItem:
    """One graded item: ``key`` (stored), ``name`` (shown), ``levels`` (grade -> wording),
    ``used_by`` (the indices it enters)."""

    key: str
    name: str
    levels: tuple[str, ...]
    used_by: tuple[str, ...]

    @property
    def max_grade(self) -> int:
        return len(self.levels) - 1


ITEMS: tuple[IndexItem, ...] = (
    IndexItem(
        CHRONIC,
        "chronic infiltrate",
        ("no increase", "mild but unequivocal increase", "moderate increase", "marked increase"),
        ("RHI", "Nancy"),
    ),
    IndexItem(
        LP_NEUTROPHILS,
        "lamina propria neutrophils",
        ("none", "mild but unequivocal increase", "moderate increase", "marked increase"),
        ("RHI",),
    ),
    IndexItem(
        EPI_NEUTROPHILS,
        "neutrophils in epithelium",
        ("none", "< 5% of crypts involved", "< 50% of crypts involved", ">= 50% of crypts"),
        ("RHI",),
    ),
    IndexItem(
        ACUTE,
        "acute inflammatory infiltrate",
        ("none", "mild: few neutrophils, hard to see", "moderate to severe: clusters"),
        ("Nancy",),
    ),
    IndexItem(
        EOSINOPHILS,
        "eosinophils",
        ("no increase", "mild increase", "moderate increase", "marked increase"),
        (),
    ),
    IndexItem(
        EROSION,
        "erosion or ulceration",
        (
            "none",
            "recovering epithelium or probable erosion (focally stripped)",
            "unequivocal erosion",
            "ulcer or granulation tissue",
        ),
        ("RHI", "Nancy"),
    ),
)
ITEMS_BY_KEY: dict[str, IndexItem] = {item.key: item for item in ITEMS}
#: RHI weights per item (Mosli et al. 2017).
RHI_WEIGHTS: dict[str, int] = {CHRONIC: 1, LP_NEUTROPHILS: 2, EPI_NEUTROPHILS: 3, EROSION: 5}
RHI_MAX = sum(3 * w for w in RHI_WEIGHTS.values())  # 33
#: RHI erosion grade that is Nancy's ulceration; RHI chronic grade from which Nancy's is
#: "moderate or marked".
NANCY_ULCER_FROM, NANCY_CHRONIC_FROM = 3, 2


def checked_items(items: Mapping[str, int]) -> dict[str, int]:
    """The index items of ``items`` (other keys ignored), each within its scale
    (``ValueError`` naming the item otherwise)."""
    out: dict[str, int] = {}
    for key, item in ITEMS_BY_KEY.items():
        if key in items and items[key] is not None:
            value = int(items[key])
            if not 0 <= value <= item.max_grade:
                raise ValueError(f"{item.name} is graded 0-{item.max_grade}, got {value}")
            out[key] = value
    return out


def robarts(items: Mapping[str, int]) -> int | None:
    """RHI (0-33) from the four RHI items, or None while any of them is not graded."""
    graded = checked_items(items)
    if any(key not in graded for key in RHI_WEIGHTS):
        return None
    return sum(weight * graded[key] for key, weight in RHI_WEIGHTS.items())


def nancy(items: Mapping[str, int]) -> int | None:
    """Nancy grade (0-4) by the decision tree, or None while an item the tree reaches is not
    graded (an ulcer decides alone: grade 4 whatever else is graded)."""
    graded = checked_items(items)
    erosion = graded.get(EROSION)
    if erosion is not None and erosion >= NANCY_ULCER_FROM:
        return 4
    acute = graded.get(ACUTE)
    if erosion is None or acute is None:
        return None
    if acute >= 2:
        return 3
    if acute == 1:
        return 2
    chronic = graded.get(CHRONIC)
    if chronic is None:
        return None
    return 1 if chronic >= NANCY_CHRONIC_FROM else 0


#: Report and export columns: the indices from item grades, and the item grades.
INDEX_COLUMNS: tuple[str, ...] = ("nancy_from_items", "rhi")
ITEM_COLUMNS: tuple[str, ...] = tuple(f"item_{item.key}" for item in ITEMS)


def index_values(items: Mapping[str, int] | None) -> dict[str, int | None]:
    """``{"nancy_from_items": ..., "rhi": ...}`` for a grade's items (None where not
    decided, or where an item is off its scale: a report never fails on a stored grade),
    the two columns reports and exports carry."""
    items = items or {}
    try:
        return {"nancy_from_items": nancy(items), "rhi": robarts(items)}
    except (TypeError, ValueError):
        return {"nancy_from_items": None, "rhi": None}


def item_columns(items: Mapping[str, int] | None) -> dict[str, int | None]:
    """``{"item_<key>": grade or None}`` for every item of :data:`ITEMS`, in order."""
    items = items or {}
    return {f"item_{item.key}": items.get(item.key) for item in ITEMS}
