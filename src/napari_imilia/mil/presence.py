"""Presence-based MIL (``max-mil``): a slide is positive iff at least one tile is.

A tile scorer MLP ``x_n -> s_n`` (ReLU hidden layers) and max pooling: the slide logit is the
highest tile score, ``max_n s_n``. Adding tiles can never lower a maximum, so appending any
number of normal (low-score) tiles leaves the slide logit unchanged or raises it — the standard
MIL assumption. The tile score is ``s_n`` itself, on the slide logit's scale; there is no
attention.

Training: max pooling passes gradient to one tile per slide only, so a scorer whose first
guess ranks the lesion tiles low may never see them and learns noise instead. The training
loss therefore adds ``mean_aux_weight`` x the same loss on the mean tile score of each slide
(every tile gets gradient; set it to 0 for pure max-pooling training). It is a training-time
term only: prediction is always the maximum.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from napari_imilia.mil.base import MILModel, MILOutput, as_batch


class MaxMIL(MILModel):
    """Tile scorer MLP + max pooling; tile score = the tile's own logit."""

    arch_name: ClassVar[str] = "max-mil"
    description: ClassVar[str] = (
        "presence MIL: tile scorer MLP + max pooling (a slide is positive iff some tile is); "
        "tile score = tile logit"
    )
    respects_presence_assumption: ClassVar[bool] = True

    def __init__(
        self,
        in_dim: int,
        *,
        hidden: list[int] | tuple[int, ...] = (128,),
        dropout: float = 0.0,
        mean_aux_weight: float = 0.5,
    ) -> None:
        hidden = [int(h) for h in hidden]
        if mean_aux_weight < 0:
            raise ValueError(f"mean_aux_weight must be >= 0, got {mean_aux_weight}")
        super().__init__(
            in_dim,
            {
                "hidden": hidden,
                "dropout": float(dropout),
                "mean_aux_weight": float(mean_aux_weight),
            },
        )
        self.mean_aux_weight = float(mean_aux_weight)
        layers: list[nn.Module] = []
        width = self.in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(float(dropout))]
            width = size
        layers.append(nn.Linear(width, 1))
        self.tile_scorer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MILOutput:
        x, mask, unbatched = as_batch(x, mask)
        scores = self.tile_scorer(x)[..., 0].float()  # (B, N)
        pooled = scores if mask is None else scores.masked_fill(mask, float("-inf"))
        logit = pooled.max(dim=1).values
        tile_scores = scores if mask is None else scores.masked_fill(mask, float("nan"))
        out = MILOutput(logit=logit, tile_scores=tile_scores, attention=None)
        return out.unbatched() if unbatched else out

    def training_loss(
        self,
        out: MILOutput,
        mask: torch.Tensor | None,
        targets: torch.Tensor,
        loss_fn: nn.Module,
    ) -> torch.Tensor:
        """Loss on the max-pooled logit + ``mean_aux_weight`` x loss on the mean tile score."""
        loss = loss_fn(out.logit.float(), targets)
        if self.mean_aux_weight == 0:
            return loss
        real = torch.ones_like(out.tile_scores, dtype=torch.bool) if mask is None else ~mask
        scores = torch.where(real, out.tile_scores, torch.zeros_like(out.tile_scores))
        mean = scores.sum(dim=1) / real.sum(dim=1).clamp(min=1)
        return loss + self.mean_aux_weight * loss_fn(mean, targets)
