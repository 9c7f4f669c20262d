"""The slide layer: a slide shown in place of the previous one.

Stepping through a cohort replaces one slide by the next. :func:`show_slide` reuses the
viewer's slide layer (our reader's) when there is exactly one: its levels, scale, units,
name and metadata are swapped, and every layer napari-imilia drew over it stays, to be
redrawn for the next slide. Removing a layer costs napari a full garbage collection and
adding one builds its Qt controls, together most of a second per slide; a swap costs
neither. Otherwise the old slide layers are removed in one batch and a new layer is added.
"""

from __future__ import annotations

from typing import Any

from napari_imilia._napari.layers.placement import set_if_changed
from napari_imilia._napari.reader import slide_from_metadata, slide_layer_data
from napari_imilia._napari.roles import LAYER_ROLE_KEY


def slide_layers(viewer: Any) -> list[Any]:
    """The layers our reader made (one per open slide)."""
    return [layer for layer in viewer.layers if slide_from_metadata(layer.metadata) is not None]


def show_slide(viewer: Any, slide: Any) -> tuple[Any, bool]:
    """Show ``slide`` in place of the viewer's slide; returns (its layer, whether the layer
    was reused). A new layer starts the session through the viewer link's layer events; a
    reused one does not (the caller does)."""
    data, kwargs, _ = slide_layer_data(slide)
    ours = slide_layers(viewer)
    if len(ours) == 1:
        layer = ours[0]
        layer.metadata = kwargs["metadata"]
        set_if_changed(layer, "units", kwargs["units"])
        set_if_changed(layer, "scale", kwargs["scale"])
        layer.data = data
        layer.name = kwargs["name"]
        return layer, True
    # one batch: napari cleans its scene graph (a full gc.collect) once, not per layer
    with viewer.layers.batched_update():
        for layer in [*ours, *[lay for lay in viewer.layers if LAYER_ROLE_KEY in lay.metadata]]:
            if layer in viewer.layers:
                viewer.layers.remove(layer)
        layer = viewer.add_image(data, **kwargs)
    return layer, False
