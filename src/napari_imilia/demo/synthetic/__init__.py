"""Deterministic synthetic H&E of colonic mucosa with known ground truth.

:func:`render_tile` and :func:`render_region` draw haematoxylin-and-eosin-looking RGB images
at a given pixel size (µm/px) together with the truth: planted nuclei of known HistoPLUS
classes (instance and class label images, a :class:`PlantedCell` list), the crypt epithelium
mask, the tissue mask, and the planted inflamed areas. Same arguments, same pixels.
:func:`epithelium_truth` gives the true epithelium of any box of a scene at any µm/px
without drawing it (``synthetic.truth``).
"""

from napari_imilia.demo.synthetic.looks import (
    DEFAULT_DENSITY_PER_MM2,
    INFLAMED_COMPOSITION,
    INFLAMED_DENSITY_FACTOR,
    NORMAL_COMPOSITION,
)
from napari_imilia.demo.synthetic.render import (
    PlantedCell,
    SyntheticTile,
    make_scene,
    render_region,
    render_tile,
    tissue_blobs,
)
from napari_imilia.demo.synthetic.shapes import Box
from napari_imilia.demo.synthetic.truth import epithelium_mask_level0, epithelium_truth

__all__ = [
    "DEFAULT_DENSITY_PER_MM2",
    "INFLAMED_COMPOSITION",
    "INFLAMED_DENSITY_FACTOR",
    "NORMAL_COMPOSITION",
    "Box",
    "PlantedCell",
    "SyntheticTile",
    "epithelium_mask_level0",
    "epithelium_truth",
    "make_scene",
    "render_region",
    "render_tile",
    "tissue_blobs",
]
