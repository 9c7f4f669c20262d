"""The cell census of whole slides: every cell of every tissue tile, by class and compartment.

- ``census_slide(slide, out_dir, CensusSettings(...))``: one slide, resumable, into
  ``OUT/<slide_id>/census/`` (``cells.parquet``, ``tiles.csv``, ``regions.csv``,
  ``cells.geojson``, ``census.json``); ``census_cohort`` many slides, here or on dask;
- ``CensusData.load(folder)``: counts and densities of a ``CellSelection`` per tile, per
  region, over the slide, as a multiscale grid and in the worst window of a given size.

See docs/cells.md ("Whole-slide census").
"""

from napari_imilia.interpret.census.data import (
    AREAS,
    PRESETS,
    CellSelection,
    CensusData,
    WindowValue,
)
from napari_imilia.interpret.census.finish import CENSUS_FILES, COUNT_COLUMNS, count_column
from napari_imilia.interpret.census.plan import CensusSettings
from napari_imilia.interpret.census.record import COMPARTMENTS, CensusTile
from napari_imilia.interpret.census.run import (
    CensusCancelled,
    CensusResult,
    census_dir,
    census_slide,
)

__all__ = [
    "AREAS",
    "CENSUS_FILES",
    "COMPARTMENTS",
    "COUNT_COLUMNS",
    "PRESETS",
    "CellSelection",
    "CensusCancelled",
    "CensusData",
    "CensusResult",
    "CensusSettings",
    "CensusTile",
    "WindowValue",
    "census_dir",
    "census_slide",
    "count_column",
]
