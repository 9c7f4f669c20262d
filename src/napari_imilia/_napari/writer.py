"""npe2 writer: Shapes and Labels layers as one QuPath GeoJSON file in level-0 pixels.

napari calls :func:`write_geojson_layers` (declared in ``napari.yaml`` for ``.geojson`` and
``.geojson.gz``) with the layers' data and attributes. Each shape or label becomes one
QuPath object (see :mod:`napari_imilia.export.layer_geojson`). µm/px comes from the layer's
metadata (napari-imilia layers carry it), else from the slide open in the current viewer.
The file carries the export context (slide, model and hash, extractor, µm/px, version) of
the layer's metadata or of the viewer's review session. napari is imported only inside
functions, Qt never.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_imilia.errors import DataError
from napari_imilia.export.context import ExportContext
from napari_imilia.export.geojson_write import write_geojson
from napari_imilia.export.layer_geojson import (
    EXPORT_KEY,
    labels_layer_to_features,
    layer_mpp,
    shapes_layer_to_features,
)
from napari_imilia.review.exports import LAYER_CLASS_COLORS, LAYER_ROLE_CLASSES

FullLayerData = tuple[Any, dict[str, Any], str]


def _current_session() -> Any | None:
    """The review session of the current napari viewer, if any (None without napari)."""
    try:
        import napari
    except ImportError:  # pragma: no cover - napari is a dependency of the plugin
        return None
    viewer = napari.current_viewer()
    if viewer is None:
        return None
    from napari_imilia._napari.state import viewer_state

    return viewer_state(viewer).session


def _context(layers: Sequence[FullLayerData], session: Any | None, mpp: float | None) -> Any:
    for _, meta, _ in layers:
        stored = (meta.get("metadata") or {}).get(EXPORT_KEY)
        if isinstance(stored, Mapping):
            return ExportContext.from_dict(stored, source=f"layer {meta.get('name')!r}")
    if session is not None:
        from napari_imilia.review.bundle import export_context

        return export_context(session)
    name = str(layers[0][1].get("name") or "layers")
    return ExportContext(name, "", "none", "", "none", mpp or 0.0, 0)


def write_geojson_layers(path: str, layer_data: list[FullLayerData]) -> list[str]:
    """Write Shapes / Labels layers to ``path`` (``.geojson``, or gzip for ``.geojson.gz``)
    as one FeatureCollection; returns ``[path]``. Raises ``DataError`` for other layer
    types or when a Shapes layer's µm/px is unknown."""
    if not layer_data:
        raise DataError("no layers to write")
    session = _current_session()
    slide_mpp = None
    if session is not None and session.slide.mpp:
        slide_mpp = float(session.slide.mpp)
    features: list[dict[str, Any]] = []
    first_mpp = None
    for data, meta, layer_type in layer_data:
        mpp = layer_mpp(meta, slide_mpp)
        first_mpp = first_mpp or mpp
        if layer_type == "shapes":
            if mpp is None:
                raise DataError(
                    f"shapes layer {meta.get('name')!r}: its µm/px is unknown, so it cannot be "
                    "placed in level-0 pixels; open its slide with napari-imilia first"
                )
            features += shapes_layer_to_features(data, meta, mpp, class_colors=LAYER_CLASS_COLORS)
        elif layer_type == "labels":
            features += labels_layer_to_features(
                data, meta, mpp, class_colors=LAYER_CLASS_COLORS, role_classes=LAYER_ROLE_CLASSES
            )
        else:
            raise DataError(
                f"layer {meta.get('name')!r} is a {layer_type} layer; only shapes and labels "
                "layers can be written as QuPath GeoJSON"
            )
    ctx = _context(layer_data, session, first_mpp)
    written = write_geojson(Path(path), features, ctx)
    return [str(written)]
