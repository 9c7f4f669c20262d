"""Measured evidence for each index item, from a slide's cell census (no Qt).

:func:`item_evidence` reads a :class:`~napari_imilia.interpret.census.CensusData` and gives,
per item of :data:`napari_imilia.review.indices.ITEMS` (:class:`ItemEvidence`): the value
over the whole slide, in the worst area (the highest value in any square window about
:data:`WORST_WINDOW_UM` µm wide: the indices' "worst area" rule; ``CensusData.worst_window``)
and the three tiles that show it most. What is measured for each item:

- chronic infiltrate: lymphocytes + plasmocytes in the lamina propria, per mm² of lamina
  propria;
- lamina propria neutrophils: neutrophils in the lamina propria, per mm² of lamina propria;
- neutrophils in epithelium: neutrophils in the epithelium, per mm² of epithelium; and, for
  the crypts involved (the census has an epithelium mask per tile, not crypt instances),
  the share of tiles holding epithelium (at least a quarter of the largest tile's) with at
  least one neutrophil in it, over the slide and in the worst window;
- acute inflammatory infiltrate (Nancy): neutrophils anywhere in tissue, per mm² of tissue;
- eosinophils: eosinophils anywhere, per mm² of tissue;
- erosion or ulceration: **not measured**. Surface without epithelium needs the luminal
  surface, and the epithelium methods give a mask per tile without it (no surface line, no
  crypt instances): the pathologist's call, said so in the panel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_imilia.interpret.census import CellSelection, CensusData
from napari_imilia.review.indices import (
    ACUTE,
    CHRONIC,
    EOSINOPHILS,
    EPI_NEUTROPHILS,
    EROSION,
    ITEMS,
    LP_NEUTROPHILS,
)

#: Side of the "worst area" window (µm), as a square of whole census tiles.
WORST_WINDOW_UM = 500.0
#: Tiles shown per item.
TOP_TILES = 3
#: A tile counts for "crypts involved" when its epithelium is at least this share of the
#: largest tile epithelium area.
EPITHELIUM_TILE_FRACTION = 0.25
NOT_MEASURED = (
    "not measured: the epithelium masks have no luminal surface to find where it is lost; "
    "the pathologist's call"
)

#: What the census counts for each item that it measures.
ITEM_SELECTIONS: dict[str, CellSelection] = {
    CHRONIC: CellSelection(
        ("Lymphocytes", "Plasmocytes"), ("lamina propria",), "lamina propria", "chronic infiltrate"
    ),
    LP_NEUTROPHILS: CellSelection(
        ("Neutrophils",), ("lamina propria",), "lamina propria", "lamina propria neutrophils"
    ),
    EPI_NEUTROPHILS: CellSelection(
        ("Neutrophils",), ("epithelium",), "epithelium", "neutrophils in epithelium"
    ),
    ACUTE: CellSelection(("Neutrophils",), (), "tissue", "neutrophils anywhere"),
    EOSINOPHILS: CellSelection(("Eosinophils",), (), "tissue", "eosinophils"),
}


@dataclass(frozen=True)
class ItemEvidence:
    """One item's evidence: ``what`` is counted; ``slide`` and ``worst`` cells/mm² (NaN
    when there is none of that area); ``worst_box`` the worst window (level-0 x, y, w, h);
    ``top_tiles`` census tile ids, most first; ``involved_slide`` / ``involved_worst`` the
    share of epithelial tiles with a neutrophil (neutrophils in epithelium only, else NaN);
    ``note`` why there is no value (erosion)."""

    key: str
    what: str
    slide: float = math.nan
    worst: float = math.nan
    worst_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    top_tiles: tuple[str, ...] = ()
    involved_slide: float = math.nan
    involved_worst: float = math.nan
    note: str = ""

    @property
    def measured(self) -> bool:
        return not self.note


def _involved(census: CensusData, tile_mask: np.ndarray | None = None) -> float:
    """Share of tiles with epithelium holding at least one epithelial neutrophil."""
    selection = ITEM_SELECTIONS[EPI_NEUTROPHILS]
    area = census.areas_mm2(selection)
    has_epithelium = area >= EPITHELIUM_TILE_FRACTION * area.max(initial=0)
    has_epithelium &= area > 0
    if tile_mask is not None:
        has_epithelium &= tile_mask
    if not has_epithelium.any():
        return math.nan
    return float((census.counts(selection)[has_epithelium] > 0).mean())


def item_evidence(census: CensusData, window_um: float = WORST_WINDOW_UM) -> list[ItemEvidence]:
    """The evidence of every item of ``ITEMS``, in their order (see the module docstring)."""
    out: list[ItemEvidence] = []
    for item in ITEMS:
        if item.key == EROSION:
            out.append(ItemEvidence(item.key, "surface without epithelium", note=NOT_MEASURED))
            continue
        selection = ITEM_SELECTIONS[item.key]
        worst = census.worst_window(selection, window_um)
        involved_slide = involved_worst = math.nan
        if item.key == EPI_NEUTROPHILS:
            involved_slide = _involved(census)
            in_window = np.isin(census.tiles["tile_id"].astype(str), list(worst.tile_ids))
            involved_worst = _involved(census, in_window)
        out.append(
            ItemEvidence(
                item.key,
                selection.label,
                slide=census.total(selection).density_per_mm2,
                worst=worst.density_per_mm2,
                worst_box=worst.box,
                top_tiles=tuple(census.top_tiles(selection, TOP_TILES)),
                involved_slide=involved_slide,
                involved_worst=involved_worst,
            )
        )
    return out


def evidence_features(evidence: list[ItemEvidence], key: str) -> np.ndarray | None:
    """The features a proposal for item ``key`` uses: log(1 + cells/mm²) over the slide and
    in the worst window (and the shares of epithelial tiles involved, for neutrophils in
    epithelium); None when the item is not measured. NaN (no such area) becomes 0."""
    found = next((e for e in evidence if e.key == key), None)
    if found is None or not found.measured:
        return None
    values = [math.log1p(_zero_nan(found.slide)), math.log1p(_zero_nan(found.worst))]
    if key == EPI_NEUTROPHILS:
        values += [_zero_nan(found.involved_slide), _zero_nan(found.involved_worst)]
    return np.asarray(values, dtype=np.float64)


def _zero_nan(value: float) -> float:
    return 0.0 if value is None or math.isnan(value) else float(value)
