"""A pre-norm Vision Transformer in plain torch whose parameter names are timm's.

Parameter names (``strict=True`` compatible with timm ``VisionTransformer`` trunks):
``cls_token``, ``reg_token``, ``pos_embed``, ``patch_embed.proj.{weight,bias}``,
``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.ls1.gamma``,
``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``, ``blocks.{i}.ls2.gamma``,
``norm``. The forward pass matches timm's ``forward_features`` with ``dynamic_img_size=True``:
inputs of another size get a bicubic (antialiased) resampling of the patch position rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_imilia.features.vit.config import ViTConfig


def resample_pos_embed(
    patch_pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Bicubic (antialiased) resampling of (1, h*w, D) patch position rows to another grid.

    Returns the input unchanged when the grids are equal, as timm does.
    """
    if tuple(old_grid) == tuple(new_grid):
        return patch_pos
    dim = patch_pos.shape[-1]
    grid = patch_pos.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=True)
    return grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(patch_pos.dtype)


class PatchEmbed(nn.Module):
    """Non-overlapping convolutional patch embedding; returns (B, h, w, D)."""

    def __init__(self, patch_size_px: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size_px, stride=patch_size_px)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (q, k, v stacked in order)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class GeluMlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PackedSwiGLU(nn.Module):
    """timm ``SwiGLUPacked``: ``fc1`` gives [a | b]; output ``fc2(SiLU(a) * b)``.

    The activation goes on the *first* half (timm ``gate_last=False``; DINOv2 ``w12``/``w3``).
    """

    def __init__(self, dim: int, packed_hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, packed_hidden_dim)
        self.fc2 = nn.Linear(packed_hidden_dim // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * value)


class LayerScale(nn.Module):
    """Per-channel scale ``x * gamma``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm block: ``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.norm_eps)
        self.attn = Attention(dim, config.num_heads, qkv_bias=config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.norm_eps)
        if config.mlp_kind == "swiglu_packed":
            self.mlp: nn.Module = PackedSwiGLU(dim, config.mlp_hidden_dim)
        else:
            self.mlp = GeluMlp(dim, config.mlp_hidden_dim)
        scale = config.layer_scale_init
        self.ls1: nn.Module = LayerScale(dim, scale) if scale is not None else nn.Identity()
        self.ls2: nn.Module = LayerScale(dim, scale) if scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


@dataclass
class ViTOutput:
    """Final-norm outputs: class token (B, D) or None, registers (B, R, D), patches (B, h, w, D)."""

    cls_token: torch.Tensor | None
    registers: torch.Tensor
    patch_tokens: torch.Tensor


class VisionTransformer(nn.Module):
    """The trunk of a timm ``VisionTransformer`` (no pooling head), see the module docstring."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size_px, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.class_token else None
        self.reg_token = (
            nn.Parameter(torch.zeros(1, config.num_reg_tokens, dim))
            if config.num_reg_tokens
            else None
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, config.pos_embed_len, dim))
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)

    @torch.no_grad()
    def init_random(self, seed: int) -> VisionTransformer:
        """Fill every parameter with seeded random values (tests and shape checks).

        Unlike a training init, norms, biases and layer scales are random too, so that a
        misplaced key changes the output. Real use loads a checkpoint instead.
        """
        generator = torch.Generator().manual_seed(int(seed))
        for name, param in self.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith(".gamma"):
                param.copy_(0.2 + 0.1 * noise.abs())
            elif name.startswith("norm.") or ".norm" in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * noise)
            elif name.endswith("bias") or name.endswith("_token") or name == "pos_embed":
                param.copy_(0.05 * noise)
            else:
                fan_in = param[0].numel()
                param.copy_(noise / fan_in**0.5)
        return self

    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        tokens = []
        if self.cls_token is not None:
            tokens.append(self.cls_token.expand(batch, -1, -1))
        if self.reg_token is not None:
            tokens.append(self.reg_token.expand(batch, -1, -1))
        return tokens

    def embed_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embedding, prefix tokens and positions: (B, prefix + h*w, D) and (h, w)."""
        patches = self.patch_embed(images)
        batch, grid_h, grid_w, dim = patches.shape
        patches = patches.reshape(batch, grid_h * grid_w, dim)
        native = (self.config.grid_size, self.config.grid_size)
        n_prefix_pos = self.config.num_prefix_tokens if self.config.pos_embed_includes_prefix else 0
        prefix_pos = self.pos_embed[:, :n_prefix_pos]
        patch_pos = resample_pos_embed(self.pos_embed[:, n_prefix_pos:], native, (grid_h, grid_w))
        prefix = self._prefix_tokens(batch)
        if self.config.pos_embed_includes_prefix:
            tokens = torch.cat([*prefix, patches], dim=1)
            return tokens + torch.cat([prefix_pos, patch_pos], dim=1), (grid_h, grid_w)
        return torch.cat([*prefix, patches + patch_pos], dim=1), (grid_h, grid_w)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """All tokens after the final norm, (B, prefix + h*w, D), and the patch grid (h, w)."""
        tokens, grid = self.embed_tokens(images)
        return self.norm(self.blocks(tokens)), grid

    def forward(self, images: torch.Tensor) -> ViTOutput:
        """(B, 3, H, W) normalised images -> class token, registers and patch tokens."""
        tokens, (grid_h, grid_w) = self.forward_features(images)
        n_cls = int(self.config.class_token)
        n_prefix = self.config.num_prefix_tokens
        return ViTOutput(
            cls_token=tokens[:, 0] if n_cls else None,
            registers=tokens[:, n_cls:n_prefix],
            patch_tokens=tokens[:, n_prefix:].reshape(tokens.shape[0], grid_h, grid_w, -1),
        )
