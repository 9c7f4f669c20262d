"""ViT hyper-parameters (:class:`ViTConfig`) and the configs of the pathology foundation models.

Sizes follow timm's conventions so that a timm state dict loads with ``strict=True``:

- ``mlp_hidden_dim`` is the width of ``mlp.fc1``'s output. For the packed SwiGLU MLP (timm
  ``SwiGLUPacked`` = ``GluMlp(act=SiLU, gate_last=False)``) that output holds both halves, so
  ``mlp.fc2`` takes ``mlp_hidden_dim // 2`` inputs. timm computes it as
  ``int(embed_dim * mlp_ratio)``; :func:`mlp_hidden_from_ratio` does the same.
- ``pos_embed_includes_prefix`` is timm's ``not no_embed_class``: when True, ``pos_embed`` has
  one row per class/register token before the patch rows (original ViT, UNI); when False it has
  rows for the patches only (DINOv2-with-registers models in timm, UNI2-h).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

MlpKind = Literal["gelu", "swiglu_packed"]

#: Letters timm/papers use for ViT widths; used only to describe shapes in messages.
_WIDTH_NAMES: dict[int, str] = {192: "Ti", 384: "S", 768: "B", 1024: "L", 1280: "H", 1536: "g"}


def mlp_hidden_from_ratio(embed_dim: int, mlp_ratio: float) -> int:
    """timm's MLP width: ``int(embed_dim * mlp_ratio)`` (the packed width for SwiGLU)."""
    return int(embed_dim * mlp_ratio)


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a pre-norm Vision Transformer (DINOv2 / timm family)."""

    img_size_px: int = 224
    patch_size_px: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_hidden_dim: int = 3072
    mlp_kind: MlpKind = "gelu"
    num_reg_tokens: int = 0
    class_token: bool = True
    pos_embed_includes_prefix: bool = True
    layer_scale_init: float | None = None
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    arch_name: str = ""

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {self.num_heads}")
        if self.img_size_px % self.patch_size_px:
            raise ValueError(
                f"img_size_px {self.img_size_px} is not a multiple of patch {self.patch_size_px}"
            )
        if self.mlp_kind == "swiglu_packed" and self.mlp_hidden_dim % 2:
            raise ValueError(
                f"packed SwiGLU needs an even mlp_hidden_dim, not {self.mlp_hidden_dim}"
            )
        if self.mlp_kind not in ("gelu", "swiglu_packed"):
            raise ValueError(f"unknown mlp_kind {self.mlp_kind!r}")

    @property
    def grid_size(self) -> int:
        """Patches per side at the native input size."""
        return self.img_size_px // self.patch_size_px

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        """Class token (if any) plus register tokens, in that order, before the patches."""
        return int(self.class_token) + self.num_reg_tokens

    @property
    def pos_embed_len(self) -> int:
        return self.num_patches + (self.num_prefix_tokens if self.pos_embed_includes_prefix else 0)

    def describe(self) -> str:
        """Short human description, e.g. ``ViT-B/14 (768-d, 12 blocks, 4 registers, SwiGLU)``."""
        name = self.arch_name or describe_shape(self.embed_dim, self.patch_size_px)
        mlp = "SwiGLU" if self.mlp_kind == "swiglu_packed" else "GELU"
        return (
            f"{name} ({self.embed_dim}-d, {self.depth} blocks, {self.num_reg_tokens} register "
            f"tokens, {mlp} MLP {self.mlp_hidden_dim})"
        )


def describe_shape(embed_dim: int, patch_size_px: int) -> str:
    """``ViT-<width letter>/<patch>``, e.g. ``ViT-L/16``; unknown widths show the number."""
    return f"ViT-{_WIDTH_NAMES.get(embed_dim, str(embed_dim))}/{patch_size_px}"


#: SwiGLU width used by DINOv2 giant and the models distilled from or built like it: timm's
#: ``mlp_ratio=2.66667 * 2`` (DINOv2's ``SwiGLUFFNFused`` with ratio 4 gives the same shapes).
_SWIGLU_RATIO = 2.66667 * 2

H0_MINI = ViTConfig(
    img_size_px=224,
    patch_size_px=14,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_hidden_dim=mlp_hidden_from_ratio(768, _SWIGLU_RATIO),  # 4096 -> fc2 takes 2048
    mlp_kind="swiglu_packed",
    num_reg_tokens=4,
    pos_embed_includes_prefix=False,
    layer_scale_init=1e-5,
    arch_name="ViT-B/14",
)

H_OPTIMUS_0 = ViTConfig(
    img_size_px=224,
    patch_size_px=14,
    embed_dim=1536,
    depth=40,
    num_heads=24,
    mlp_hidden_dim=mlp_hidden_from_ratio(1536, _SWIGLU_RATIO),  # 8192 -> fc2 takes 4096
    mlp_kind="swiglu_packed",
    num_reg_tokens=4,
    pos_embed_includes_prefix=False,
    layer_scale_init=1e-5,
    arch_name="ViT-g/14",
)

UNI = ViTConfig(
    img_size_px=224,
    patch_size_px=16,
    embed_dim=1024,
    depth=24,
    num_heads=16,
    mlp_hidden_dim=4096,
    mlp_kind="gelu",
    layer_scale_init=1e-5,
    arch_name="ViT-L/16",
)

UNI2_H = ViTConfig(
    img_size_px=224,
    patch_size_px=14,
    embed_dim=1536,
    depth=24,
    num_heads=24,
    mlp_hidden_dim=mlp_hidden_from_ratio(1536, _SWIGLU_RATIO),  # 8192
    mlp_kind="swiglu_packed",
    num_reg_tokens=8,
    pos_embed_includes_prefix=False,
    layer_scale_init=1e-5,
    arch_name="ViT-H/14",
)

PHIKON = ViTConfig(
    img_size_px=224,
    patch_size_px=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_hidden_dim=3072,
    mlp_kind="gelu",
    layer_scale_init=None,
    norm_eps=1e-12,
    arch_name="ViT-B/16",
)

PHIKON_V2 = ViTConfig(
    img_size_px=224,
    patch_size_px=16,
    embed_dim=1024,
    depth=24,
    num_heads=16,
    mlp_hidden_dim=4096,
    mlp_kind="gelu",
    layer_scale_init=1.0,
    norm_eps=1e-6,
    arch_name="ViT-L/16",
)


def scaled_down(
    config: ViTConfig, *, embed_dim: int = 32, depth: int = 2, num_heads: int = 2, grid: int = 4
) -> ViTConfig:
    """A small ViT with every option of ``config`` (MLP kind and width ratio, registers, layer
    scale, position convention, eps) for tests and examples: same code path, tiny tensors.
    """
    ratio = config.mlp_hidden_dim / config.embed_dim
    hidden = max(2, round(embed_dim * ratio))
    hidden += hidden % 2 if config.mlp_kind == "swiglu_packed" else 0
    return replace(
        config,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_hidden_dim=hidden,
        img_size_px=grid * config.patch_size_px,
        arch_name="",
    )
