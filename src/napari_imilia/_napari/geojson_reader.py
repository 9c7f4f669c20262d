"""npe2 reader: a QuPath (or napari-imilia) GeoJSON file as a Shapes layer in µm.

Coordinates in the file are level-0 pixels; the layer's vertices are napari world µm on
the slide layer's convention (:mod:`napari_imilia.export.layers`). µm/px and the slide size
come from the slide open in the current viewer (its review session or slide layer), else
from the file's own ``imilia`` metadata; with neither the layer is in pixels. A file whose
coordinates do not fit the open slide (µm, 0-1, y-up, another image:
``check_coordinate_space``) or that is malformed gives an error notification, no layer.
Classification, name, measurements and metadata go to ``layer.features``. napari is
imported only inside functions, Qt never.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia._napari.notify import notify
from napari_imilia._napari.roles import IMPORT_ROLE, LAYER_ROLE_KEY
from napari_imilia.errors import ImiliaError
from napari_imilia.trust.json_limits import ImportLimits, ImportProgress

#: File name endings this reader opens (lower case).
GEOJSON_SUFFIXES: tuple[str, ...] = (".geojson", ".geojson.gz", ".geojson.zip")

PathOrPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
LayerDataTuple = tuple[Any, dict[str, Any], str]


@dataclass(frozen=True)
class Placement:
    """Where level-0 pixels go: µm/px (1: pixels), and the slide it is checked against."""

    mpp: float
    slide_id: str | None = None
    dimensions_px: tuple[int, int] | None = None
    summary: dict[str, Any] | None = None


def placement_of_slide(slide: Any) -> Placement:
    """Placement on an open :class:`~napari_imilia.slide.Slide` (µm/px 1 without MPP)."""
    return Placement(float(slide.mpp or 1.0), slide.slide_id, slide.dimensions, slide.summary())


def edge_width_um(mpp: float, dimensions_px: tuple[int, int] | None) -> float:
    """Outline width (world units) visible both zoomed in and on the whole slide."""
    extent = max(dimensions_px) * mpp if dimensions_px else 0.0
    return max(3.0 * mpp, extent / 2000.0)


def geojson_layer_data(
    path: str | os.PathLike[str],
    placement: Placement | None,
    *,
    limits: ImportLimits | None = None,
    progress: ImportProgress | None = None,
) -> LayerDataTuple:
    """Shapes layer data tuple of a GeoJSON file, read once within ``limits`` (default
    ``ImportLimits.from_env()``); ``ImiliaError`` (``DataError``) if it is malformed, over a
    limit or does not fit ``placement``'s slide. ``progress(done, total)`` follows the
    features read. Warnings of the reading (repaired polygons, dropped holes, skipped
    points) are in ``metadata['imilia_import_notes']``."""
    from napari_imilia.export import read_geojson_file
    from napari_imilia.export.layer_geojson import EXPORT_KEY, MPP_KEY
    from napari_imilia.export.layers import objects_to_shapes

    path = Path(path)
    dimensions = None if placement is None else placement.dimensions_px
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        objects, ctx = read_geojson_file(
            path,
            slide_dimensions_px=dimensions,
            mpp=None if placement is None else placement.mpp,
            limits=limits,
            progress=progress,
        )
    if placement is None:
        placement = Placement(ctx.mpp if ctx is not None and ctx.mpp > 0 else 1.0)
    shapes = objects_to_shapes(objects, placement.mpp)
    notes = [str(w.message) for w in caught] + shapes.notes
    if not shapes.shape_type:
        notes.append(f"{path.name} holds no shapes to show (an empty FeatureCollection?)")
    if ctx is not None and placement.slide_id and ctx.slide_id != placement.slide_id:
        notes.append(
            f"{path.name} was exported from slide {ctx.slide_id!r}, not the open "
            f"slide {placement.slide_id!r}"
        )
    pixels = placement.dimensions_px is None and (ctx is None or not ctx.mpp > 0)
    if pixels:
        notes.append(f"{path.name}: no slide is open, so it is shown in level-0 pixels")
    metadata = {
        LAYER_ROLE_KEY: IMPORT_ROLE,
        MPP_KEY: placement.mpp,
        "imilia_slide": placement.summary,
        "imilia_source": str(path),
        "imilia_import_notes": notes,
    }
    if ctx is not None:
        metadata[EXPORT_KEY] = ctx.to_dict()
    units = ("pixel", "pixel") if pixels else ("µm", "µm")
    kwargs = {
        "name": path.name.split(".geojson")[0],
        "shape_type": shapes.shape_type,
        "features": shapes.features,
        "edge_color": shapes.edge_color if len(shapes.data) else "yellow",
        "face_color": np.zeros(4) if not len(shapes.data) else _transparent(shapes.edge_color),
        "edge_width": edge_width_um(placement.mpp, placement.dimensions_px),
        "units": units,
        "metadata": metadata,
    }
    return shapes.data, kwargs, "shapes"


def _transparent(rgba: np.ndarray) -> np.ndarray:
    faces = np.array(rgba, dtype=np.float64, copy=True)
    faces[:, 3] = 0.15
    return faces


def current_placement() -> Placement | None:
    """Placement on the slide of napari's current viewer (session first, then any slide
    layer), or None when no slide is open."""
    import napari

    from napari_imilia._napari.reader import slide_from_metadata
    from napari_imilia._napari.state import viewer_state

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    session = viewer_state(viewer).session
    if session is not None:
        return placement_of_slide(session.slide)
    for layer in viewer.layers:
        slide = slide_from_metadata(layer.metadata)
        if slide is not None:
            return placement_of_slide(slide)
    return None


def napari_get_geojson_reader(path: PathOrPaths) -> Callable[..., list] | None:
    """:func:`read_geojson_layers` when every path is an existing ``.geojson(.gz|.zip)``."""
    paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
    if paths and all(p.name.lower().endswith(GEOJSON_SUFFIXES) and p.is_file() for p in paths):
        return read_geojson_layers
    return None


def read_geojson_layers(path: PathOrPaths) -> list:
    """One Shapes layer per readable file; a bad file gives an error notification and no
    layer (napari's empty-file sentinel ``[(None,)]`` when nothing could be read)."""
    from napari.utils import progress

    paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
    placement = current_placement()
    layers = []
    for candidate in paths:
        try:
            with progress(desc=f"importing {candidate.name}") as bar:

                def advance(done: int, total: int, bar: Any = bar) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                layer = geojson_layer_data(candidate, placement, progress=advance)
        except ImiliaError as error:
            notify("error", f"napari-imilia cannot import {candidate.name}: {error}")
            continue
        for note in layer[1]["metadata"]["imilia_import_notes"]:
            notify("warning", note)
        layers.append(layer)
    return layers or [(None,)]
