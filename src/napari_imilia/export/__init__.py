"""QuPath-compatible exports: GeoJSON objects and CSV tables, read and write (no Qt).

The format layer: it knows QuPath GeoJSON and CSV, the export context and geometry, but no
cell, epithelium or review classes (those callers pass their classes and colours in).
All coordinates are level-0 pixels, (x, y), top-left origin: QuPath's convention, so files
import into QuPath with File > Import objects (or drag and drop) onto the same slide.

- ``tiles_to_features``, ``polygons_to_features``: QuPath objects (GeoJSON Features);
  cells: ``napari_imilia.interpret.cells.cells_to_features``; review entries:
  ``napari_imilia.review.exports.reviews_to_features``;
- ``write_geojson`` / ``read_geojson`` (+ ``read_geojson_context``): FeatureCollections;
- ``write_table_csv`` / ``read_table_csv``: plain CSV with a ``.meta.json`` sidecar.

Every file carries an ``ExportContext`` (slide, model, extractor, µm/px, software version).
See docs/export_review.md.
"""

from napari_imilia.export.context import (
    METADATA_KEY,
    ExportContext,
    classification,
    color_for_name,
    stable_id,
)
from napari_imilia.export.geojson_objects import (
    COORD_DECIMALS,
    QUPATH_PROPERTY_KEYS,
    polygons_to_features,
    tiles_to_features,
)
from napari_imilia.export.geojson_read import (
    ImportedObject,
    read_geojson,
    read_geojson_context,
    read_geojson_file,
)
from napari_imilia.export.geojson_write import write_geojson
from napari_imilia.export.space import check_coordinate_space
from napari_imilia.export.tables import csv_meta_path, read_table_csv, write_table_csv

__all__ = [
    "COORD_DECIMALS",
    "METADATA_KEY",
    "QUPATH_PROPERTY_KEYS",
    "ExportContext",
    "ImportedObject",
    "check_coordinate_space",
    "classification",
    "color_for_name",
    "csv_meta_path",
    "polygons_to_features",
    "read_geojson",
    "read_geojson_context",
    "read_geojson_file",
    "read_table_csv",
    "stable_id",
    "tiles_to_features",
    "write_geojson",
    "write_table_csv",
]
