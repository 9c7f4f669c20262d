"""What every MIL head shares: the output record, bag batching and the ``MILModel`` base class.

A *bag* is one slide's tile features: ``(N, D)``, or a padded batch ``(B, N, D)`` with a
padding mask ``(B, N)`` (``True`` where a row is padding, the convention of IMILIA's code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class MILOutput:
    """One forward pass over a bag (or a batch of bags).

    ``logit``: slide logit, shape ``(B,)`` (``()`` for an unbatched ``(N, D)`` bag).
    ``tile_scores``: one score per tile, ``(B, N)`` (``(N,)``), higher = more
    inflammation-like; padding rows hold NaN.
    ``attention``: per-tile attention weights (sum 1 over a bag's real tiles) or ``None`` for
    models without attention; padding rows hold 0.
    ``channel_scores``: raw per-channel tile scores ``(B, N, C)`` for multi-channel models.
    ``channel_polarity``: sign (+1/0/-1) of each channel's effect on the logit, ``(B, C)``.
    """

    logit: torch.Tensor
    tile_scores: torch.Tensor
    attention: torch.Tensor | None = None
    channel_scores: torch.Tensor | None = None
    channel_polarity: torch.Tensor | None = None

    def unbatched(self) -> MILOutput:
        """The first (only) bag of a batch of one, without the batch axis."""

        def first(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[0]

        return MILOutput(
            logit=self.logit[0],
            tile_scores=self.tile_scores[0],
            attention=first(self.attention),
            channel_scores=first(self.channel_scores),
            channel_polarity=first(self.channel_polarity),
        )


def as_batch(
    x: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Return ``(x as B x N x D, mask as B x N bool or None, was_unbatched)``."""
    if x.ndim == 2:
        if mask is not None:
            mask = mask.reshape(1, -1)
        return x.unsqueeze(0), (None if mask is None else mask.bool()), True
    if x.ndim != 3:
        raise ValueError(f"a bag must be N x D or B x N x D, got shape {tuple(x.shape)}")
    if mask is not None:
        if mask.ndim == 3:  # IMILIA's (B, N, 1)
            mask = mask[..., 0]
        if mask.shape != x.shape[:2]:
            raise ValueError(
                f"padding mask shape {tuple(mask.shape)} does not match bag {tuple(x.shape)}"
            )
        mask = mask.bool()
    return x, mask, False


def pad_bags(
    bags: list[torch.Tensor], pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (N_i, D) bags into ``(B, max N, D)`` zeros-padded, with the padding mask."""
    n_max = max(int(b.shape[0]) for b in bags)
    if pad_to is not None:
        n_max = max(n_max, pad_to)
    dim = int(bags[0].shape[1])
    x = bags[0].new_zeros((len(bags), n_max, dim))
    mask = torch.ones((len(bags), n_max), dtype=torch.bool, device=bags[0].device)
    for i, bag in enumerate(bags):
        x[i, : bag.shape[0]] = bag
        mask[i, : bag.shape[0]] = False
    return x, mask


def activation_module(name: str | None) -> nn.Module | None:
    """``sigmoid`` / ``relu`` / ``tanh`` / ``none`` → a module (or ``None``)."""
    key = (name or "none").lower()
    table: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}
    if key == "none":
        return None
    if key not in table:
        raise ValueError(f"unknown activation {name!r}; choose sigmoid, relu, tanh or none")
    return table[key]()


class MILModel(nn.Module):
    """Base class: a registered architecture built from ``(in_dim, **hparams)``.

    Subclasses set ``arch_name`` and ``description`` and implement ``forward(x, mask=None)``
    returning a :class:`MILOutput`. ``hparams`` holds the JSON-able keyword arguments that
    rebuild the same architecture (they go into ``model.json``).
    """

    arch_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Whether the slide logit can only grow when tiles are added (standard MIL assumption).
    respects_presence_assumption: ClassVar[bool] = False

    def __init__(self, in_dim: int, hparams: dict[str, Any]) -> None:
        super().__init__()
        if int(in_dim) < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        self.in_dim = int(in_dim)
        self.hparams = dict(hparams)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MILOutput:
        raise NotImplementedError

    def training_loss(
        self,
        out: MILOutput,
        mask: torch.Tensor | None,
        targets: torch.Tensor,
        loss_fn: nn.Module,
    ) -> torch.Tensor:
        """The loss ``imilia train`` minimises: ``loss_fn(slide logit, targets)`` by default."""
        return loss_fn(out.logit.float(), targets)
