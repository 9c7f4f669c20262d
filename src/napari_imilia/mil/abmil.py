"""Gated-attention ABMIL (Ilse, Tomczak & Welling 2018), registered as ``abmil``.

``h_n = ReLU(W_e x_n)`` (embedding), attention ``a = softmax_n(w^T (tanh(V h_n) *
sigmoid(U h_n)))`` over the bag's real tiles, slide embedding ``z = sum_n a_n h_n`` and slide
logit ``c^T z + b`` with a linear classifier ``(c, b)``.

Tile score: the classifier applied to each tile's own embedding, ``t_n = c^T h_n + b`` (the
per-tile logit). Because the classifier is linear and the attention sums to 1, the slide logit
is exactly the attention-weighted mean of the tile scores, ``sum_n a_n t_n``; ``a_n t_n`` is a
tile's contribution. The attention itself is returned separately.

ABMIL does not respect the standard MIL (presence) assumption: adding many tiles whose score
is below the slide logit pulls the weighted mean, hence the slide logit, down.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from napari_imilia.mil.base import MILModel, MILOutput, as_batch


class GatedABMIL(MILModel):
    """Gated-attention MIL; tile score = per-tile classifier logit."""

    arch_name: ClassVar[str] = "abmil"
    description: ClassVar[str] = (
        "gated-attention ABMIL (Ilse et al. 2018): attention-weighted mean of tile embeddings, "
        "linear classifier; tile score = per-tile classifier logit"
    )
    respects_presence_assumption: ClassVar[bool] = False

    def __init__(
        self, in_dim: int, *, embed_dim: int = 128, attn_dim: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__(
            in_dim,
            {"embed_dim": int(embed_dim), "attn_dim": int(attn_dim), "dropout": float(dropout)},
        )
        self.embed = nn.Sequential(
            nn.Linear(self.in_dim, int(embed_dim)), nn.ReLU(), nn.Dropout(float(dropout))
        )
        self.attention_v = nn.Linear(int(embed_dim), int(attn_dim))
        self.attention_u = nn.Linear(int(embed_dim), int(attn_dim))
        self.attention_w = nn.Linear(int(attn_dim), 1)
        self.classifier = nn.Linear(int(embed_dim), 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MILOutput:
        x, mask, unbatched = as_batch(x, mask)
        h = self.embed(x)  # (B, N, M)
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        attn_logits = self.attention_w(gate)[..., 0].float()  # (B, N)
        if mask is not None:
            attn_logits = attn_logits.masked_fill(mask, float("-inf"))
        attention = torch.softmax(attn_logits, dim=1)
        slide_embedding = (attention[..., None].to(h.dtype) * h).sum(dim=1)  # (B, M)
        logit = self.classifier(slide_embedding)[:, 0]
        tile_scores = self.classifier(h)[..., 0].float()
        if mask is not None:
            tile_scores = tile_scores.masked_fill(mask, float("nan"))
        out = MILOutput(logit=logit, tile_scores=tile_scores, attention=attention)
        return out.unbatched() if unbatched else out
