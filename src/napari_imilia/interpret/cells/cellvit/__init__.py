"""CellViT cell backend with the HistoPLUS architecture (owkin/histoplus), in plain torch.

- :mod:`.config`: :class:`CellViTConfig`, HistoPLUS's releases;
- :mod:`.model`: the network (:class:`CellViT`), HistoPLUS's keys;
- :mod:`.checkpoint`: safe loading, architecture from shapes,
  :func:`save_cellvit`;
- :mod:`.windows`: sliding windows and map stitching;
- :mod:`.post`: HoVer-Net instance extraction and class votes;
- :mod:`.backend`: :class:`CellViTBackend` (``segment``,
  ``segment_many``).
"""

from napari_imilia.interpret.cells.cellvit.backend import CellViTBackend, cells_from_maps
from napari_imilia.interpret.cells.cellvit.checkpoint import (
    expected_shapes,
    histoplus_state_dict,
    infer_config,
    load_cellvit,
    save_cellvit,
    to_model_keys,
)
from napari_imilia.interpret.cells.cellvit.config import (
    BIOPTIMUS_MEAN,
    BIOPTIMUS_STD,
    HISTOPLUS_20X,
    HISTOPLUS_40X,
    CellViTConfig,
    scaled_down,
)
from napari_imilia.interpret.cells.cellvit.model import CellViT
from napari_imilia.interpret.cells.cellvit.post import (
    HoverParams,
    hover_instances,
    hover_params_for_mpp,
)

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
