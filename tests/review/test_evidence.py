"""Evidence per index item from the census of a generated slide with planted cells
(``demo.synthetic`` truth): each measured item's slide value matches the planted density
within :data:`TOLERANCE`; the worst window and top tiles show the planted inflamed area."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from napari_imilia.demo.sample import write_synthetic_slide
from napari_imilia.interpret.census import CensusData, census_slide
from napari_imilia.review.evidence import (
    ITEM_SELECTIONS,
    NOT_MEASURED,
    WORST_WINDOW_UM,
    evidence_features,
    item_evidence,
)
from napari_imilia.review.indices import (
    ACUTE,
    CHRONIC,
    EOSINOPHILS,
    EPI_NEUTROPHILS,
    EROSION,
    ITEMS,
    LP_NEUTROPHILS,
)
from support.planted import planted_cells

INFLAMED_BOX = (600, 400, 700, 600)  # level-0 px (x, y, w, h)
#: Relative tolerance of an item's slide value against the planted density (same area).
TOLERANCE = 0.12


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CensusData]:
    folder = tmp_path_factory.mktemp("evidence_slide")
    slide = write_synthetic_slide(
        folder / "planted.svs",
        width_px=2048,
        height_px=1536,
        seed=3,
        inflamed_regions=[INFLAMED_BOX],
        compression="zlib",
    )
    result = census_slide(slide, folder / "out", workers=1)
    return slide, CensusData.load(result.folder)


@pytest.mark.parametrize("key", [CHRONIC, LP_NEUTROPHILS, ACUTE, EOSINOPHILS])
def test_item_values_match_the_planted_densities(planted, key):
    slide, census = planted
    truth = planted_cells(slide, census.tiles)
    selection = ITEM_SELECTIONS[key]
    chosen = truth["class_name"].isin(selection.classes)
    if selection.compartments:
        chosen &= truth["compartment"].isin(selection.compartments)
    area = census.areas_mm2(selection).sum()
    expected = chosen.sum() / area
    evidence = {e.key: e for e in item_evidence(census)}[key]
    assert chosen.sum() > 40
    assert abs(evidence.slide - expected) <= TOLERANCE * expected, (evidence.slide, expected)


def test_worst_area_and_top_tiles_are_in_the_inflamed_area(planted):
    slide, census = planted
    evidence = {e.key: e for e in item_evidence(census)}
    chronic = evidence[CHRONIC]
    # the 500 µm window (4 x 4 tiles) is wider than the planted 350 x 300 µm area
    assert chronic.worst > 1.2 * chronic.slide
    selection = ITEM_SELECTIONS[CHRONIC]
    in_window = census.tiles_in_box(chronic.worst_box)
    truth = planted_cells(slide, census.tiles)
    chosen = truth["class_name"].isin(selection.classes) & (
        truth["compartment"] == "lamina propria"
    )
    expected = (chosen & np.isin(truth["tile"], np.flatnonzero(in_window))).sum() / (
        census.areas_mm2(selection)[in_window].sum()
    )
    assert abs(chronic.worst - expected) <= TOLERANCE * expected, (chronic.worst, expected)
    x, y, w, h = chronic.worst_box
    side_um = w * census.mpp
    assert abs(side_um - WORST_WINDOW_UM) <= census.stride_px * census.mpp / 2 + 1e-6
    assert x < INFLAMED_BOX[0] + INFLAMED_BOX[2] and INFLAMED_BOX[0] < x + w
    assert y < INFLAMED_BOX[1] + INFLAMED_BOX[3] and INFLAMED_BOX[1] < y + h
    assert len(chronic.top_tiles) == 3
    inflamed = set(census.tiles["tile_id"][census.tiles_in_box(INFLAMED_BOX)].astype(str))
    assert set(chronic.top_tiles) <= inflamed
    ids = census.tiles["tile_id"].astype(str)
    densities = dict(zip(ids, census.densities(ITEM_SELECTIONS[CHRONIC]), strict=True))
    assert all(densities[t] >= chronic.slide for t in chronic.top_tiles)


def test_erosion_is_not_measured_and_epithelial_neutrophils_count_tiles_involved(planted):
    _, census = planted
    evidence = item_evidence(census)
    assert [e.key for e in evidence] == [item.key for item in ITEMS]
    erosion = next(e for e in evidence if e.key == EROSION)
    assert not erosion.measured and erosion.note == NOT_MEASURED and math.isnan(erosion.slide)
    assert evidence_features(evidence, EROSION) is None
    epithelial = next(e for e in evidence if e.key == EPI_NEUTROPHILS)
    selection = ITEM_SELECTIONS[EPI_NEUTROPHILS]
    area = census.areas_mm2(selection)
    with_epithelium = (area >= 0.25 * area.max()) & (area > 0)
    involved = (census.counts(selection)[with_epithelium] > 0).mean()
    assert epithelial.involved_slide == pytest.approx(involved)
    assert 0.0 <= epithelial.involved_worst <= 1.0
    features = evidence_features(evidence, EPI_NEUTROPHILS)
    assert features.shape == (4,) and np.isfinite(features).all()
