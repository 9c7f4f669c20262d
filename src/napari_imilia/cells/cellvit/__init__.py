"""CellViT cell backend with the HistoPLUS architecture (owkin/histoplus), in plain torch.

- :mod:`~napari_imilia.cells.cellvit.config`: :class:`CellViTConfig`, HistoPLUS's releases;
- :mod:`~napari_imilia.cells.cellvit.model`: the network (:class:`CellViT`), HistoPLUS's keys;
- :mod:`~napari_imilia.cells.cellvit.checkpoint`: safe loading, architecture from shapes,
  :func:`save_cellvit`;
- :mod:`~napari_imilia.cells.cellvit.windows`: sliding windows and map stitching;
- :mod:`~napari_imilia.cells.cellvit.post`: HoVer-Net instance extraction and class votes;
- :mod:`~napari_imilia.cells.cellvit.backend`: :class:`CellViTBackend` (``segment``,
  ``segment_many``).
"""

from napari_imilia.cells.cellvit.backend import CellViTBackend, cells_from_maps
from napari_imilia.cells.cellvit.checkpoint import (
    expected_shapes,
    histoplus_state_dict,
    infer_config,
    load_cellvit,
    save_cellvit,
    to_model_keys,
)
from napari_imilia.cells.cellvit.config import (
    BIOPTIMUS_MEAN,
    BIOPTIMUS_STD,
    HISTOPLUS_20X,
    HISTOPLUS_40X,
    CellViTConfig,
    scaled_down,
)
from napari_imilia.cells.cellvit.model import CellViT
from napari_imilia.cells.cellvit.post import HoverParams, hover_instances, hover_params_for_mpp

__all__ = [
    "BIOPTIMUS_MEAN",
    "BIOPTIMUS_STD",
    "HISTOPLUS_20X",
    "HISTOPLUS_40X",
    "CellViT",
    "CellViTBackend",
    "CellViTConfig",
    "HoverParams",
    "cells_from_maps",
    "expected_shapes",
    "histoplus_state_dict",
    "hover_instances",
    "hover_params_for_mpp",
    "infer_config",
    "load_cellvit",
    "save_cellvit",
    "scaled_down",
    "to_model_keys",
]
