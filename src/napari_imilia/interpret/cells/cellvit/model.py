"""The CellViT network in plain torch, with HistoPLUS's module names.

State-dict keys (``strict=True`` against HistoPLUS checkpoints once the encoder's MLP names
``mlp.w12``/``mlp.w3`` are read as ``mlp.fc1``/``mlp.fc2``, see ``cellvit.checkpoint``):

- ``backbone.feature_extractor.model.*``: the ViT trunk of ``features.vit`` without its
  final norm (HistoPLUS takes block outputs before it, as timm ``features_only`` does);
- ``neck.necks.{0..3}``: 0 = two 3x3 conv blocks on the normalised image (stem); 1, 2, 3 =
  3, 2, 1 upsampling blocks on encoder depths 1, 2, 3;
- ``{np,hv,tp}_branch``: ``bottleneck_upsampler`` on the deepest features, then
  ``decoder3_upsampler``, ``decoder2_upsampler``, ``decoder1_upsampler``, each concatenating
  [skip, upsampled] and ending in a 2x transposed convolution, and ``decoder0_header``
  ending in a 1x1 convolution to the output channels.

Conv blocks are ``block = Sequential(conv 3x3, BatchNorm, ReLU)``; upsampling blocks
``block = Sequential(transposed conv 2x2 stride 2, conv 3x3, BatchNorm, ReLU)``. Dropout
(p = 0 in HistoPLUS, no parameters) is left out. With patch 14, the x16 decoder ends at
16/14 of the input size: the full-resolution features are resized bilinearly to the input
size before ``decoder0_header``, as HistoPLUS does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_imilia.features.vit.model import VisionTransformer
from napari_imilia.interpret.cells.cellvit.config import CellViTConfig


class ConvBlock(nn.Module):
    """3x3 convolution (same size), BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """2x upsampling (transposed 2x2 convolution, stride 2), 3x3 convolution, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _up2(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


class Neck(nn.Module):
    """Skip features: the image at full size and three encoder depths upsampled x8, x4, x2."""

    def __init__(self, config: CellViTConfig) -> None:
        super().__init__()
        dim = config.encoder.embed_dim
        skip1, skip2 = config.skip_dims
        d3, d2, _ = config.decoder_dims
        stem_hidden, stem_out = config.stem_dims
        self.necks = nn.ModuleList(
            [
                nn.Sequential(ConvBlock(3, stem_hidden), ConvBlock(stem_hidden, stem_out)),
                nn.Sequential(UpBlock(dim, skip1), UpBlock(skip1, skip2), UpBlock(skip2, d2)),
                nn.Sequential(UpBlock(dim, skip1), UpBlock(skip1, d3)),
                nn.Sequential(UpBlock(dim, config.bottleneck_dim)),
            ]
        )

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """[image, depth 1, depth 2, depth 3] -> [n0 (full), n1 (x8), n2 (x4), n3 (x2)]."""
        return [neck(x) for neck, x in zip(self.necks, inputs, strict=True)]


class DecoderBranch(nn.Module):
    """One output head: deepest features + skips -> (B, out_channels, H, W) logits."""

    def __init__(self, config: CellViTConfig, out_channels: int) -> None:
        super().__init__()
        bottleneck = config.bottleneck_dim
        d3, d2, d1 = config.decoder_dims
        stem_out = config.stem_dims[1]
        self.bottleneck_upsampler = _up2(config.encoder.embed_dim, bottleneck)
        self.decoder3_upsampler = nn.Sequential(
            ConvBlock(2 * bottleneck, bottleneck),
            ConvBlock(bottleneck, bottleneck),
            ConvBlock(bottleneck, bottleneck),
            _up2(bottleneck, d3),
        )
        self.decoder2_upsampler = nn.Sequential(
            ConvBlock(2 * d3, d3), ConvBlock(d3, d3), _up2(d3, d2)
        )
        self.decoder1_upsampler = nn.Sequential(
            ConvBlock(2 * d2, d2), ConvBlock(d2, d2), _up2(d2, d1)
        )
        self.decoder0_header = nn.Sequential(
            ConvBlock(stem_out + d1, d1),
            ConvBlock(d1, d1),
            nn.Conv2d(d1, out_channels, kernel_size=1),
        )

    def forward(self, deepest: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        b = self.bottleneck_upsampler(deepest)
        b = self.decoder3_upsampler(torch.cat([skips[3], b], dim=1))
        b = self.decoder2_upsampler(torch.cat([skips[2], b], dim=1))
        b = self.decoder1_upsampler(torch.cat([skips[1], b], dim=1))
        full = skips[0]
        if b.shape[-2:] != full.shape[-2:]:  # patch 14: x16 overshoots the input size
            b = F.interpolate(b, size=full.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder0_header(torch.cat([full, b], dim=1))


class Encoder(nn.Module):
    """The ViT trunk under HistoPLUS's path ``feature_extractor.model``; returns the patch
    tokens of ``encoder_layers`` as (B, D, h, w) maps (pre-norm block outputs)."""

    def __init__(self, config: CellViTConfig) -> None:
        super().__init__()
        vit = VisionTransformer(config.encoder)
        vit.norm = nn.Identity()  # unused: features are taken before the final norm
        self.feature_extractor = nn.ModuleDict({"model": vit})
        self.layers = config.encoder_layers

    @property
    def vit(self) -> VisionTransformer:
        return self.feature_extractor["model"]  # type: ignore[return-value]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        vit = self.vit
        tokens, (grid_h, grid_w) = vit.embed_tokens(images)
        n_prefix = vit.config.num_prefix_tokens
        maps = []
        for index, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if index in self.layers:
                patches = tokens[:, n_prefix:]
                maps.append(patches.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w))
        return maps


class CellViT(nn.Module):
    """CellViT (HistoPLUS layout): normalised (B, 3, H, W) images, H and W multiples of the
    patch size, -> ``{"np": (B, 2, H, W), "hv": (B, 2, H, W), "tp": (B, classes, H, W)}``
    (nuclei and type logits, horizontal/vertical distances)."""

    def __init__(self, config: CellViTConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Encoder(config)
        self.neck = Neck(config)
        self.np_branch = DecoderBranch(config, 2)
        self.hv_branch = DecoderBranch(config, 2)
        self.tp_branch = DecoderBranch(config, config.num_classes)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        patch = self.config.patch_size_px
        if images.shape[-1] % patch or images.shape[-2] % patch:
            raise ValueError(f"input {tuple(images.shape[-2:])} px is not a multiple of {patch}")
        depths = self.backbone(images)
        skips = self.neck([images, *depths[:3]])
        return {
            "np": self.np_branch(depths[3], skips),
            "hv": self.hv_branch(depths[3], skips),
            "tp": self.tp_branch(depths[3], skips),
        }

    @torch.no_grad()
    def init_random(self, seed: int) -> CellViT:
        """Seeded random parameters and BatchNorm statistics (tests, benchmarks, shape checks);
        real use loads a checkpoint. Norm and bias values are random too, so a misplaced key
        changes the output."""
        self.backbone.vit.init_random(seed)
        generator = torch.Generator().manual_seed(int(seed) + 1)
        for name, module in self.named_modules():
            if name.startswith("backbone"):
                continue
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(1.0 + 0.1 * torch.randn(n, generator=generator).abs())
            elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                weight = module.weight
                fan_in = weight.shape[1 if isinstance(module, nn.Conv2d) else 0]
                fan_in *= weight.shape[2] * weight.shape[3]
                noise = torch.randn(weight.shape, generator=generator)
                weight.copy_(noise * (2.0 / fan_in) ** 0.5)
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=generator))
        return self
