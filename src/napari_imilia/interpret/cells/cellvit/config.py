"""CellViT architecture settings (:class:`CellViTConfig`) and HistoPLUS's two released models.

Facts read from owkin/histoplus (``helpers/hub``, ``helpers/nn/cellvit``,
``helpers/nn/extractor/timm.py``, ``helpers/constants.py``):

- encoder: timm ``vit_base_patch14_reg4_dinov2`` (ViT-B/14, 4 registers, layer scale, SwiGLU
  MLP of 2 x 2048, position rows for the patches only), weights called ``aquavit_105k``;
  intermediate outputs of blocks 3, 5, 7 and 11 (0-based, before the final norm) feed the
  decoder;
- decoder widths 512 / 256 (skips), 512 (bottleneck), 256 / 128 / 64 (upsampling), a 32 / 64
  convolutional stem on the image itself;
- outputs: nuclei (2 channels), horizontal-vertical distances (2), cell types (15: Background
  plus 14 names, the order of ``CELL_CLASSES``);
- input: RGB / 255 normalised with Bioptimus's mean and std;
- ``histoplus_cellvit_segmentor_40x``: 0.25 µm/px, trained on 448 px tiles (position grid
  32 x 32); ``histoplus_cellvit_segmentor_20x``: 0.5 µm/px, 224 px (grid 16 x 16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from itertools import pairwise
from typing import Any

import numpy as np

from napari_imilia.errors import CheckpointError
from napari_imilia.features.vit.config import H0_MINI, ViTConfig
from napari_imilia.features.vit.config import scaled_down as scaled_down_vit
from napari_imilia.interpret.cells.types import CELL_CLASSES

#: Bioptimus normalisation of [0, 1] RGB used by HistoPLUS (``helpers/constants.py``).
BIOPTIMUS_MEAN: tuple[float, float, float] = (0.707223, 0.578729, 0.703617)
BIOPTIMUS_STD: tuple[float, float, float] = (0.211883, 0.230117, 0.177517)
#: Encoder blocks (0-based) whose outputs feed HistoPLUS's decoder.
HISTOPLUS_ENCODER_LAYERS: tuple[int, int, int, int] = (3, 5, 7, 11)


@dataclass(frozen=True)
class CellViTConfig:
    """A CellViT: ViT encoder, a neck turning 4 encoder depths into skips, 3 decoders.

    ``encoder.img_size_px`` is the training tile size (it sets the position grid; other
    window sizes resample it). ``encoder_layers``: 4 increasing 0-based block indices (the
    encoder keeps blocks up to the last one). ``skip_dims``, ``bottleneck_dim``,
    ``decoder_dims`` and ``stem_dims`` are channel widths (HistoPLUS's by default).
    ``class_names``: one name per type channel, each a ``CELL_CLASSES`` name, channel 0
    "Background". ``mpp``: µm/px the model was trained at. ``mean``/``std``: normalisation of
    RGB / 255.
    """

    encoder: ViTConfig
    encoder_layers: tuple[int, ...] = HISTOPLUS_ENCODER_LAYERS
    skip_dims: tuple[int, ...] = (512, 256)
    bottleneck_dim: int = 512
    decoder_dims: tuple[int, ...] = (256, 128, 64)
    stem_dims: tuple[int, ...] = (32, 64)
    class_names: tuple[str, ...] = CELL_CLASSES
    mpp: float = 0.25
    mean: tuple[float, ...] = BIOPTIMUS_MEAN
    std: tuple[float, ...] = BIOPTIMUS_STD
    name: str = "cellvit"

    def __post_init__(self) -> None:
        layers = tuple(int(i) for i in self.encoder_layers)
        object.__setattr__(self, "encoder_layers", layers)
        for attr in ("skip_dims", "decoder_dims", "stem_dims", "class_names", "mean", "std"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if len(layers) != 4 or any(b <= a for a, b in pairwise(layers)):
            raise ValueError(f"encoder_layers must be 4 increasing indices; got {layers}")
        if layers[0] < 0 or layers[-1] != self.encoder.depth - 1:
            raise ValueError(
                f"encoder_layers {layers} must lie in 0..{self.encoder.depth - 1} and end with "
                f"the last block ({self.encoder.depth - 1}): blocks after it are not kept"
            )
        sizes = {"skip_dims": 2, "decoder_dims": 3, "stem_dims": 2, "mean": 3, "std": 3}
        for attr, size in sizes.items():
            if len(getattr(self, attr)) != size:
                raise ValueError(f"{attr} needs {size} values; got {getattr(self, attr)}")
        if min(*self.skip_dims, self.bottleneck_dim, *self.decoder_dims, *self.stem_dims) < 1:
            raise ValueError("channel widths must be positive")
        if not (np.isfinite(self.mpp) and self.mpp > 0):
            raise ValueError(f"mpp must be a positive µm/px; got {self.mpp}")
        check_class_names(self.class_names)

    @property
    def num_classes(self) -> int:
        """Channels of the type map (background included)."""
        return len(self.class_names)

    @property
    def patch_size_px(self) -> int:
        return self.encoder.patch_size_px

    def taxonomy_ids(self) -> np.ndarray:
        """(num_classes,) int64: the ``CELL_CLASSES`` index of each type channel."""
        return np.array([CELL_CLASSES.index(n) for n in self.class_names], dtype=np.int64)

    def describe(self) -> str:
        return (
            f"CellViT {self.name!r}: encoder {self.encoder.describe()}, blocks "
            f"{list(self.encoder_layers)} to the decoder, {self.num_classes} type channels, "
            f"{self.mpp} µm/px, trained on {self.encoder.img_size_px} px tiles"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists for tuples); :meth:`from_dict` reads it back."""
        out = asdict(self)
        out["encoder"] = asdict(self.encoder)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellViTConfig:
        """Inverse of :meth:`to_dict`; ``ValueError``/``TypeError`` on unknown or bad keys."""
        data = dict(data)
        encoder = data.pop("encoder", None)
        if not isinstance(encoder, dict):
            raise TypeError("'encoder' must be an object of ViT settings")
        known = {f.name for f in fields(cls)} - {"encoder"}
        extra = sorted(set(data) - known)
        extra_encoder = sorted(set(encoder) - {f.name for f in fields(ViTConfig)})
        if extra or extra_encoder:
            raise TypeError(f"unknown keys {extra + [f'encoder.{k}' for k in extra_encoder]}")
        return cls(encoder=ViTConfig(**encoder), **data)


def check_class_names(names: tuple[str, ...]) -> None:
    """``ValueError`` unless ``names`` are distinct ``CELL_CLASSES`` names, "Background" first."""
    unknown = [n for n in names if n not in CELL_CLASSES]
    if unknown:
        raise ValueError(f"class names {unknown} are not in CELL_CLASSES {list(CELL_CLASSES)}")
    if len(names) < 2 or names[0] != "Background" or len(set(names)) != len(names):
        raise ValueError(
            f"class_names must be distinct, at least 2, starting with 'Background'; got {names}"
        )


HISTOPLUS_40X = CellViTConfig(
    encoder=replace(H0_MINI, img_size_px=448),
    mpp=0.25,
    name="histoplus_cellvit_segmentor_40x",
)
HISTOPLUS_20X = CellViTConfig(
    encoder=H0_MINI,
    mpp=0.5,
    name="histoplus_cellvit_segmentor_20x",
)
#: HistoPLUS release by training tile size, which is all a bare state dict tells apart.
HISTOPLUS_BY_TRAIN_PX: dict[int, CellViTConfig] = {448: HISTOPLUS_40X, 224: HISTOPLUS_20X}


def default_encoder_layers(depth: int) -> tuple[int, ...]:
    """HistoPLUS's blocks (3, 5, 7, 11) for 12 blocks, the same fractions of other depths."""
    if depth < 4:
        raise CheckpointError(f"a CellViT encoder needs at least 4 blocks; found {depth}")
    if depth == 12:
        return HISTOPLUS_ENCODER_LAYERS
    picks = [max(0, round((i + 1) * depth / 12) - 1) for i in HISTOPLUS_ENCODER_LAYERS]
    for k in range(1, 4):  # keep them strictly increasing on shallow encoders
        picks[k] = max(picks[k], picks[k - 1] + 1)
    picks[-1] = depth - 1
    return tuple(picks)


def scaled_down(
    config: CellViTConfig = HISTOPLUS_40X,
    *,
    embed_dim: int = 32,
    depth: int = 4,
    num_heads: int = 2,
    grid: int = 4,
    width_divisor: int = 32,
) -> CellViTConfig:
    """A small CellViT with every option of ``config`` (encoder kind, registers, layer scale,
    classes, µm/px) for tests and examples: same code path, small tensors. Channel widths are
    divided by ``width_divisor`` (at least 2 channels each)."""

    def narrow(dims: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(2, d // width_divisor) for d in dims)

    encoder = scaled_down_vit(
        config.encoder, embed_dim=embed_dim, depth=depth, num_heads=num_heads, grid=grid
    )
    return replace(
        config,
        encoder=encoder,
        encoder_layers=default_encoder_layers(depth),
        skip_dims=narrow(config.skip_dims),
        bottleneck_dim=narrow((config.bottleneck_dim,))[0],
        decoder_dims=narrow(config.decoder_dims),
        stem_dims=narrow(config.stem_dims),
        name=f"{config.name}-small",
    )
