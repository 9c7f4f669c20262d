"""The ``cellvit`` cell backend: a CellViT (HistoPLUS architecture) from a local file.

Per tile: resample to the model's µm/px (``base.resample_tile``); tissue from the given
mask or optical density (under 1%: flag ``no_tissue``, the network is not run) and the
quality flags of ``stain.tile_quality_flags`` (``out_of_focus``, ``not_he``, ``ink``: the
network still runs, its cells are flagged); then one of two protocols, the windows run in
batches on the GPU (bf16 autocast) or the CPU:

- ``histoplus`` (default): HistoPLUS's own (``cellvit.protocol``): 784 px windows on a
  DeepZoom grid overlapping by 64 px, cells found in each window from float16 maps, the
  duplicates removed as HistoPLUS removes them; classes and ``probability`` are HistoPLUS's
  (the fraction of the cell's pixels voting for its class);
- ``tile-context``: 224 px windows overlapping by 64 px whose output maps are stitched
  (``cellvit.windows``) before nuclei are extracted once (``cellvit.post``); ``probability``
  is the cell's mean softmax probability of its class.

Cells are measured with ``measure.build_tile_cells``. Labels are at the model's µm/px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from napari_imilia.device import inference_context, resolve_device
from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.cells.base import resample_tile
from napari_imilia.interpret.cells.cellvit.checkpoint import load_cellvit
from napari_imilia.interpret.cells.cellvit.config import CellViTConfig
from napari_imilia.interpret.cells.cellvit.model import CellViT
from napari_imilia.interpret.cells.cellvit.post import (
    HoverParams,
    hover_instances,
    hover_params_for_mpp,
    vote_classes,
)
from napari_imilia.interpret.cells.cellvit.protocol import (
    HISTOPLUS_OVERLAP_PX,
    HISTOPLUS_WINDOW_PX,
    segment_region,
)
from napari_imilia.interpret.cells.cellvit.windows import TileMaps, predict_tile_maps
from napari_imilia.interpret.cells.measure import build_tile_cells
from napari_imilia.interpret.cells.stain import optical_density, tile_quality_flags, tissue_from_od
from napari_imilia.interpret.cells.types import CellTile, TileCells

#: Inference protocols: HistoPLUS's windows and duplicate removal, or stitched maps.
PROTOCOLS = ("histoplus", "tile-context")
#: (window_px, overlap_px) of each protocol, model pixels.
PROTOCOL_WINDOWS = {
    "histoplus": (HISTOPLUS_WINDOW_PX, HISTOPLUS_OVERLAP_PX),
    "tile-context": (224, 64),
}

#: Tissue fraction under which a tile given with a tissue mask is skipped (flag ``no_tissue``).
MIN_TISSUE_FRACTION = 0.01


@dataclass
class _Prepared:
    rgb: np.ndarray
    tissue: np.ndarray | None
    mpp: float
    level0_per_px: float
    level0_xy: tuple[int, int]
    flags: list[str]

    @property
    def skip(self) -> bool:
        return "no_tissue" in self.flags


def cells_from_maps(
    maps: TileMaps, taxonomy_ids: np.ndarray, params: HoverParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instances of stitched maps: (labels (H, W) int32 numbered 1..n, ``CELL_CLASSES`` id per
    label and probability per label, both indexed by label value). Instances voting only
    background are removed."""
    labels = hover_instances(maps.nuclei_prob, maps.hv, params)
    channel, probability = vote_classes(labels, maps.type_prob)
    keep = channel > 0
    keep[0] = True
    lut = np.zeros(len(keep), dtype=np.int32)
    lut[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    labels = lut[labels]
    return labels, taxonomy_ids[channel[keep]], probability[keep]


class CellViTBackend:
    """Cells from a CellViT checkpoint (HistoPLUS's or one saved by ``save_cellvit``).

    ``checkpoint``: a ``.safetensors``/``.pt`` file (or a loaded ``CellViT``, whose own
    config is used); ``device``: ``auto``/``cpu``/``cuda[:N]``; ``batch_size``: windows per
    forward pass; ``config``: a JSON config path or ``CellViTConfig`` when the file has none
    beside it; ``mpp``: override the µm/px the model works at; ``protocol``: ``histoplus``
    (default) or ``tile-context`` (module docstring); ``window_px``/``overlap_px``: windows
    (model pixels, ``window_px`` a multiple of the patch size; the protocol's by default:
    784/64 and 224/64); ``hover``: post-processing settings (HistoPLUS's for the model's
    µm/px by default).
    """

    name = "cellvit"

    def __init__(
        self,
        checkpoint: str | Path | CellViT,
        device: str | torch.device = "auto",
        batch_size: int = 8,
        *,
        config: CellViTConfig | str | Path | None = None,
        mpp: float | None = None,
        protocol: str = "histoplus",
        window_px: int | None = None,
        overlap_px: int | None = None,
        hover: HoverParams | None = None,
    ) -> None:
        protocol = str(protocol).lower().replace("_", "-")
        if protocol not in PROTOCOLS:
            choices = ", ".join(PROTOCOLS)
            raise ImiliaError(f"unknown protocol {protocol!r}; choose one of {choices}")
        self.protocol = protocol
        window_px = PROTOCOL_WINDOWS[protocol][0] if window_px is None else int(window_px)
        overlap_px = PROTOCOL_WINDOWS[protocol][1] if overlap_px is None else int(overlap_px)
        if isinstance(checkpoint, CellViT):
            model, self.checkpoint = checkpoint.eval(), None
            if mpp is not None:
                model.config = replace(model.config, mpp=float(mpp))
        else:
            model = load_cellvit(checkpoint, config=config, mpp=mpp)
            self.checkpoint = Path(checkpoint)
        self.config: CellViTConfig = model.config
        patch = self.config.patch_size_px
        if int(batch_size) < 1:
            raise ImiliaError(f"batch_size must be at least 1; got {batch_size}")
        if window_px < patch or window_px % patch:
            raise ImiliaError(f"window_px must be a multiple of the patch size {patch} px")
        most = window_px // 2 if protocol == "histoplus" else window_px
        if not 0 <= overlap_px < most:
            raise ImiliaError(f"overlap_px must be in [0, {most}) for {protocol}; got {overlap_px}")
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.batch_size = int(batch_size)
        self.window_px = int(window_px)
        self.overlap_px = int(overlap_px)
        self.hover = hover or hover_params_for_mpp(self.config.mpp)
        self._taxonomy = self.config.taxonomy_ids()
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(self.config.mean, device=self.device).reshape(shape)
        self._std = torch.tensor(self.config.std, device=self.device).reshape(shape)

    @property
    def analysis_mpp(self) -> float:
        return float(self.config.mpp)

    def predict_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, w, w, 3) uint8 windows -> nuclei probability (B, w, w), HV (B, 2, w, w) and
        type probabilities (B, C, w, w), float32 on the CPU."""
        images = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device)
        images = images.permute(0, 3, 1, 2).float().div_(255.0)
        images = (images - self._mean) / self._std
        with inference_context(self.device):
            out = self.model(images)
            nuclei = torch.softmax(out["np"].float(), dim=1)[:, 1]
            types = torch.softmax(out["tp"].float(), dim=1)
            hv = out["hv"].float()
        return nuclei.cpu().numpy(), hv.cpu().numpy(), types.cpu().numpy()

    def segment(
        self,
        tile_rgb: np.ndarray,
        *,
        mpp: float,
        level0_xy: tuple[int, int],
        level0_per_px: float,
        tissue_mask: np.ndarray | None = None,
    ) -> TileCells:
        """Cells of one (H, W, 3) uint8 tile given at ``mpp`` µm/px; labels at the model's."""
        tile = CellTile(tile_rgb, mpp, level0_xy, level0_per_px, tissue_mask)
        return self.segment_many([tile])[0]

    def segment_many(self, tiles: Sequence[CellTile]) -> list[TileCells]:
        """``segment`` for each tile, in order; windows of all tiles share batches."""
        prepared = [self._prepare(tile) for tile in tiles]
        run = [i for i, p in enumerate(prepared) if not p.skip]
        results: dict[int, TileCells] = {
            i: self._empty(p) for i, p in enumerate(prepared) if p.skip
        }
        if self.protocol == "histoplus":
            for i in run:
                results[i] = self._histoplus_cells(prepared[i])
            return [results[i] for i in range(len(prepared))]
        stitched = predict_tile_maps(
            [prepared[i].rgb for i in run],
            self.predict_windows,
            window_px=self.window_px,
            overlap_px=self.overlap_px,
            batch_size=self.batch_size,
            num_classes=self.config.num_classes,
        )
        for k, maps in stitched:
            results[run[k]] = self._cells(prepared[run[k]], maps)
        return [results[i] for i in range(len(prepared))]

    def _prepare(self, tile: CellTile) -> _Prepared:
        rgb, tissue, mpp, per_px = resample_tile(
            tile.rgb,
            tile.tissue_mask,
            mpp=tile.mpp,
            level0_per_px=tile.level0_per_px,
            analysis_mpp=self.analysis_mpp,
        )
        found = tissue_from_od(optical_density(rgb), mpp=mpp) if tissue is None else tissue
        if float(found.mean()) < MIN_TISSUE_FRACTION:
            flags = ["no_tissue"]
        else:
            flags = tile_quality_flags(rgb, found, mpp=mpp)
        xy = (int(tile.level0_xy[0]), int(tile.level0_xy[1]))
        return _Prepared(rgb, tissue, mpp, per_px, xy, flags)

    def _empty(self, p: _Prepared) -> TileCells:
        labels = np.zeros(p.rgb.shape[:2], dtype=np.int32)
        return build_tile_cells(
            labels,
            np.zeros(1, np.int64),
            None,
            None,
            mpp=p.mpp,
            level0_xy=p.level0_xy,
            level0_per_px=p.level0_per_px,
            backend=self.name,
            flags=p.flags,
        )

    def _histoplus_cells(self, p: _Prepared) -> TileCells:
        labels, kept = segment_region(
            p.rgb,
            self.predict_windows,
            self.hover,
            window_px=self.window_px,
            overlap_px=self.overlap_px,
            batch_size=self.batch_size,
        )
        channels = np.array([0, *(c.channel for c in kept)], dtype=np.int64)
        probability = np.array([0.0, *(c.confidence for c in kept)])
        return self._measure(p, labels, self._taxonomy[channels], probability)

    def _cells(self, p: _Prepared, maps: TileMaps) -> TileCells:
        labels, class_ids, probability = cells_from_maps(maps, self._taxonomy, self.hover)
        return self._measure(p, labels, class_ids, probability)

    def _measure(
        self, p: _Prepared, labels: np.ndarray, class_ids: np.ndarray, probability: np.ndarray
    ) -> TileCells:
        if p.tissue is not None and labels.any():  # drop cells mostly outside the tissue
            area = np.bincount(labels.ravel())
            inside = np.bincount(labels.ravel(), weights=p.tissue.ravel(), minlength=len(area))
            outside = inside < 0.5 * np.maximum(area, 1)
            outside[0] = False
            labels = np.where(outside[labels], 0, labels)
        return build_tile_cells(
            labels,
            class_ids,
            probability,
            p.rgb,
            mpp=p.mpp,
            level0_xy=p.level0_xy,
            level0_per_px=p.level0_per_px,
            backend=self.name,
            flags=p.flags,
        )
