"""What to inspect tiles with: a plain, picklable choice of backends and the loaded tools.

``InspectConfig`` names the cell backend and the epithelium method with their local files;
``InspectTools.load(config, slide)`` creates the backend and loads the EpiSeg probe and its
extractor once, so the napari panel and every batch worker reuse them tile after tile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_imilia.errors import ImiliaError
from napari_imilia.interpret.cells.base import CellBackend
from napari_imilia.interpret.epithelium import METHODS
from napari_imilia.interpret.tile import TileInspection, inspect_tile, inspect_tiles_batched

#: Cell backends ``InspectConfig`` knows how to configure from files.
CELL_BACKENDS: tuple[str, ...] = ("classical", "cellvit", "histoplus-json")


@dataclass(frozen=True)
class InspectConfig:
    """Backends and their files (paths as given; nothing is read until ``load``).

    ``cell_backend``: ``"classical"`` (no weights), ``"cellvit"`` (needs ``cell_checkpoint``)
    or ``"histoplus-json"`` (needs ``histoplus_json``: HistoPLUS's cell JSON of this slide).
    ``epithelium_method``: ``"stain-heuristic"`` or ``"episeg"`` (needs ``episeg_probe``; its
    extractor is the probe's, loaded from ``episeg_extractor_weights``). ``device`` is for
    the deep models. ``analysis_mpp`` overrides the µm/px tiles are analysed at: the
    classical backend's ``analysis_mpp``, the µm/px a CellViT checkpoint works at (its
    ``mpp=``; needed for checkpoints that are not a HistoPLUS release and have no JSON
    config), the resolution HistoPLUS JSON cells are rasterised at.
    """

    cell_backend: str = "classical"
    cell_checkpoint: str | None = None
    histoplus_json: str | None = None
    epithelium_method: str = "stain-heuristic"
    episeg_probe: str | None = None
    episeg_extractor_weights: str | None = None
    device: str = "auto"
    analysis_mpp: float | None = None
    cell_protocol: str = "histoplus"

    def __post_init__(self) -> None:
        key = self.cell_backend.strip().lower().replace("_", "-")
        object.__setattr__(self, "cell_backend", key)
        if key not in CELL_BACKENDS:
            raise ImiliaError(
                f"unknown cell backend {self.cell_backend!r}; choose one of "
                f"{', '.join(CELL_BACKENDS)}"
            )
        if key == "cellvit" and not self.cell_checkpoint:
            raise ImiliaError(
                "cell backend 'cellvit' needs a local checkpoint: pass --cell-checkpoint PATH"
            )
        if key == "histoplus-json" and not self.histoplus_json:
            raise ImiliaError(
                "cell backend 'histoplus-json' needs HistoPLUS's cell JSON of this slide: pass "
                "--histoplus-json PATH"
            )
        if self.epithelium_method == "episeg" and not self.episeg_probe:
            raise ImiliaError(
                "epithelium method 'episeg' needs a trained probe: pass --episeg-probe PATH "
                "(train one with `imilia train-episeg`), or use 'stain-heuristic'"
            )
        protocol = self.cell_protocol.strip().lower().replace("_", "-")
        object.__setattr__(self, "cell_protocol", protocol)
        if protocol not in ("histoplus", "tile-context"):
            raise ImiliaError(
                f"unknown CellViT protocol {self.cell_protocol!r} (--cell-protocol); choose "
                "histoplus or tile-context"
            )
        if self.analysis_mpp is not None and not (
            math.isfinite(self.analysis_mpp) and self.analysis_mpp > 0
        ):
            raise ImiliaError(
                f"analysis µm/px must be a positive number (--analysis-mpp); got "
                f"{self.analysis_mpp}"
            )
        if self.epithelium_method not in METHODS:
            raise ImiliaError(
                f"unknown epithelium method {self.epithelium_method!r}; choose one of "
                f"{', '.join(METHODS)}"
            )

    @property
    def uses_deep_model(self) -> bool:
        """True when a torch model runs (cellvit cells or EpiSeg's extractor)."""
        return self.cell_backend == "cellvit" or self.epithelium_method == "episeg"

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the choice (for result files)."""
        return {
            "cell_backend": self.cell_backend,
            "cell_checkpoint": self.cell_checkpoint,
            "histoplus_json": self.histoplus_json,
            "epithelium_method": self.epithelium_method,
            "episeg_probe": self.episeg_probe,
            "analysis_mpp": self.analysis_mpp,
            "cell_protocol": self.cell_protocol if self.cell_backend == "cellvit" else None,
        }


@dataclass
class InspectTools:
    """A created cell backend plus the EpiSeg probe and extractor (None for the heuristic)."""

    config: InspectConfig
    backend: CellBackend
    probe: Any | None = None
    extractor: Any | None = None

    @classmethod
    def load(cls, config: InspectConfig, slide: Any) -> InspectTools:
        """Create what ``config`` names; ``slide`` is needed by the HistoPLUS importer."""
        from napari_imilia.interpret.cells import create_cell_backend

        if config.cell_backend == "classical":
            options = {} if config.analysis_mpp is None else {"analysis_mpp": config.analysis_mpp}
            backend = create_cell_backend("classical", **options)
        elif config.cell_backend == "cellvit":
            backend = create_cell_backend(
                "cellvit",
                checkpoint=Path(config.cell_checkpoint or ""),
                device=config.device,
                mpp=config.analysis_mpp,
                protocol=config.cell_protocol,
            )
        else:
            backend = create_cell_backend(
                "histoplus-json", path=Path(config.histoplus_json or ""), slide=slide
            )
        probe = extractor = None
        if config.epithelium_method == "episeg":
            from napari_imilia.features.extractors import create_extractor
            from napari_imilia.interpret.epithelium import load_episeg_probe

            probe = load_episeg_probe(Path(config.episeg_probe or ""))
            extractor = create_extractor(
                probe.extractor_name,
                weights_path=config.episeg_extractor_weights,
                device=config.device,
            )
            probe.check_extractor(extractor)
        return cls(config, backend, probe, extractor)

    def inspect(self, slide: Any, tile_row: Any) -> TileInspection:
        """``inspect_tile`` with these tools (the result's ``config`` is this config)."""
        result = inspect_tile(
            slide,
            tile_row,
            cell_backend=self.backend,
            epithelium_method=self.config.epithelium_method,
            episeg_probe=self.probe,
            episeg_extractor=self.extractor,
            analysis_mpp=self.config.analysis_mpp,
        )
        result.config = self.config
        return result

    def inspect_many(self, slide: Any, tile_rows: Sequence[Any]) -> list[TileInspection]:
        """``inspect_tiles_batched`` with these tools (one batched cell-backend call)."""
        results = inspect_tiles_batched(
            slide,
            tile_rows,
            cell_backend=self.backend,
            epithelium_method=self.config.epithelium_method,
            episeg_probe=self.probe,
            episeg_extractor=self.extractor,
            analysis_mpp=self.config.analysis_mpp,
        )
        for result in results:
            result.config = self.config
        return results
