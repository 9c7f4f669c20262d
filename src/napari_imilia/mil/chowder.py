"""IMILIA's multi-channel Chowder (``imilia-chowder``), compatible with its released weights.

Architecture (Courtiol et al. 2018, multi-channel variant used by IMILIA, arXiv 2512.13440):

1. tile scorer ``score_model``: ``Linear(D -> C)`` (optionally hidden layers with sigmoid
   activations before it), giving C scores per tile;
2. extreme layer: per channel, the ``n_top`` highest scores sorted descending, then the
   ``n_bottom`` lowest sorted ascending, concatenated along the tile axis → ``(B, K, C)`` with
   ``K = n_top + n_bottom``; flattened in that memory order to ``(B, K * C)``
   (index ``k * C + c``);
3. ``mlp``: ``Linear(K*C -> 128) → sigmoid → Linear(128 -> 64) → sigmoid → Linear(64 -> 1)``.

Bags with fewer real tiles than ``n_top`` (or ``n_bottom``) get 0 in the missing extreme
slots, as IMILIA's code does for masked (padding) rows; with fewer than ``K`` tiles a tile can
appear both among the top and the bottom scores, again as in IMILIA's code.

Per-tile score (the heatmap value), see docs/mil_models.md:
``tile_score[n] = mean over channels c of polarity[c] * channel_score[n, c]`` where
``polarity[c] = sign( sum_k d logit / d extreme[k, c] )``, evaluated at this slide's extreme
scores: +1 when raising every selected score of channel c raises the slide logit (the channel
reads "inflammation"), -1 when it lowers it, 0 when it has no first-order effect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from napari_imilia.errors import CheckpointError
from napari_imilia.mil.base import MILModel, MILOutput, activation_module, as_batch

#: The released IMILIA head: 768-d H0-mini features, 5 channels, top/bottom 25, MLP 128-64.
IMILIA_RELEASE_HPARAMS: dict[str, Any] = {
    "n_channels": 5,
    "n_top": 25,
    "n_bottom": 25,
    "tiles_hidden": [],
    "mlp_hidden": [128, 64],
    "mlp_dropout": None,
    "mlp_activation": "sigmoid",
    "bias": True,
}
IMILIA_RELEASE_IN_DIM = 768


def _xavier_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class TileScorer(nn.Module):
    """Per-tile channel scores; layers live in ``hidden_layers`` (the release's key names)."""

    def __init__(self, in_dim: int, n_channels: int, hidden: list[int], bias: bool) -> None:
        super().__init__()
        self.hidden_layers = nn.ModuleList()
        width = in_dim
        for size in hidden:
            self.hidden_layers.append(nn.Linear(width, size, bias=bias))
            self.hidden_layers.append(nn.Sigmoid())
            width = size
        self.hidden_layers.append(nn.Linear(width, n_channels, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden_layers:
            x = layer(x)
        return x


def select_extremes(
    scores: torch.Tensor, mask: torch.Tensor | None, n_top: int, n_bottom: int
) -> torch.Tensor:
    """``(B, N, C)`` scores → ``(B, n_top + n_bottom, C)``: top descending, bottom ascending.

    Padding rows (``mask`` True) are never selected; a slot with no real tile left is 0.
    """
    return _select(scores, mask, n_top, n_bottom)[0]


def extreme_indices(
    scores: torch.Tensor, mask: torch.Tensor | None, n_top: int, n_bottom: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of the scores :func:`select_extremes` picks, in its order.

    Returns ``(top (B, n_top, C), bottom (B, n_bottom, C))`` int64 tile indices along dim 1;
    -1 where the slot holds no real tile (a padding row or a missing one).
    """
    _, top, bottom = _select(scores, mask, n_top, n_bottom)
    return top, bottom


def _select(
    scores: torch.Tensor, mask: torch.Tensor | None, n_top: int, n_bottom: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extreme values ``(B, K, C)`` and the top and bottom row indices (-1: no real tile)."""
    n_tiles = scores.shape[1]
    needed = max(n_top, n_bottom)
    if n_tiles < needed:  # too few rows for topk: add padding rows, which end up as zeros
        extra = needed - n_tiles
        scores = torch.cat([scores, scores.new_zeros((scores.shape[0], extra, scores.shape[2]))], 1)
        if mask is None:
            mask = torch.zeros(scores.shape[:2], dtype=torch.bool, device=scores.device)
            mask[:, n_tiles:] = True
        else:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], extra))], 1)
    empty = torch.zeros((scores.shape[0], 0, scores.shape[2]), dtype=torch.long)
    top_values, top = (
        _sorted_extremes(scores, mask, n_top, largest=True)
        if n_top
        else (
            scores[:, :0],
            empty,
        )
    )
    bottom_values, bottom = (
        _sorted_extremes(scores, mask, n_bottom, largest=False)
        if n_bottom
        else (scores[:, :0], empty)
    )
    return torch.cat([top_values, bottom_values], dim=1), top, bottom


def _sorted_extremes(
    scores: torch.Tensor, mask: torch.Tensor | None, k: int, *, largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest (descending) or smallest (ascending) scores of each slide along
    dim 1 and their row indices; padding rows (``mask`` True) are pushed past the end and a
    slot holding one is 0 (index -1)."""
    pad = float("-inf") if largest else float("inf")
    filled = scores if mask is None else scores.masked_fill(mask[..., None], pad)
    values, indices = filled.topk(k, dim=1, largest=largest, sorted=True)
    if mask is not None:
        is_pad = values == pad
        values = torch.where(is_pad, torch.zeros_like(values), values)
        indices = torch.where(is_pad, torch.full_like(indices, -1), indices)
    return values, indices


def _activation_derivative(name: str, pre: torch.Tensor) -> torch.Tensor:
    if name == "sigmoid":
        s = torch.sigmoid(pre)
        return s * (1 - s)
    if name == "relu":
        return (pre > 0).to(pre.dtype)
    if name == "tanh":
        return 1 - torch.tanh(pre) ** 2
    return torch.ones_like(pre)


class ImiliaChowder(MILModel):
    """IMILIA's multi-channel Chowder; state-dict compatible with the released folds."""

    arch_name: ClassVar[str] = "imilia-chowder"
    description: ClassVar[str] = (
        "IMILIA's multi-channel Chowder: linear tile scorer (C channels), top/bottom-k scores "
        "per channel, sigmoid MLP; loads IMILIA's released folds"
    )
    respects_presence_assumption: ClassVar[bool] = False

    def __init__(
        self,
        in_dim: int,
        *,
        n_channels: int = 5,
        n_top: int = 25,
        n_bottom: int = 25,
        tiles_hidden: list[int] | tuple[int, ...] = (),
        mlp_hidden: list[int] | tuple[int, ...] = (128, 64),
        mlp_dropout: list[float] | tuple[float, ...] | None = None,
        mlp_activation: str = "sigmoid",
        bias: bool = True,
    ) -> None:
        tiles_hidden = [int(h) for h in tiles_hidden]
        mlp_hidden = [int(h) for h in mlp_hidden]
        dropout = None if mlp_dropout is None else [float(p) for p in mlp_dropout]
        if n_top < 0 or n_bottom < 0 or n_top + n_bottom < 1:
            raise ValueError(f"need n_top + n_bottom >= 1, got n_top={n_top} n_bottom={n_bottom}")
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        if dropout is not None and len(dropout) != len(mlp_hidden):
            raise ValueError("mlp_dropout needs one probability per mlp_hidden layer")
        activation_module(mlp_activation)  # validates the name
        super().__init__(
            in_dim,
            {
                "n_channels": int(n_channels),
                "n_top": int(n_top),
                "n_bottom": int(n_bottom),
                "tiles_hidden": tiles_hidden,
                "mlp_hidden": mlp_hidden,
                "mlp_dropout": dropout,
                "mlp_activation": mlp_activation.lower(),
                "bias": bool(bias),
            },
        )
        self.n_channels, self.n_top, self.n_bottom = int(n_channels), int(n_top), int(n_bottom)
        self.activation_name = mlp_activation.lower()
        self.score_model = TileScorer(self.in_dim, self.n_channels, tiles_hidden, bool(bias))
        blocks: list[nn.Module] = []
        width = (self.n_top + self.n_bottom) * self.n_channels
        for i, size in enumerate(mlp_hidden):
            block: list[nn.Module] = [nn.Linear(width, size)]  # MLP layers always have a bias
            act = activation_module(mlp_activation)
            if act is not None:
                block.append(act)
            if dropout is not None:
                block.append(nn.Dropout(dropout[i]))
            blocks.append(nn.Sequential(*block))
            width = size
        blocks.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*blocks)
        self.apply(_xavier_init)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MILOutput:
        x, mask, unbatched = as_batch(x, mask)
        channel_scores = self.score_model(x)  # (B, N, C)
        extremes = select_extremes(channel_scores, mask, self.n_top, self.n_bottom)
        flat = extremes.reshape(extremes.shape[0], -1)  # (B, K*C), index k*C + c
        logit = self.mlp(flat)[:, 0]
        polarity = self.channel_polarity(flat)
        scores32 = channel_scores.float()
        tile_scores = (scores32 * polarity[:, None, :]).mean(dim=2)
        if mask is not None:
            tile_scores = tile_scores.masked_fill(mask, float("nan"))
        out = MILOutput(
            logit=logit,
            tile_scores=tile_scores,
            attention=None,
            channel_scores=channel_scores,
            channel_polarity=polarity,
        )
        return out.unbatched() if unbatched else out

    def mlp_input_gradient(self, flat: torch.Tensor) -> torch.Tensor:
        """d logit / d (flattened extreme scores), ``(B, K*C)``, in eval mode (no dropout)."""
        with torch.no_grad():
            h = flat.float()
            cached: list[tuple[nn.Linear, torch.Tensor]] = []
            for block in list(self.mlp)[:-1]:
                linear = block[0]
                pre = nn.functional.linear(h, linear.weight.float(), _float(linear.bias))
                cached.append((linear, pre))
                act = activation_module(self.activation_name)
                h = pre if act is None else act(pre)
            last: nn.Linear = self.mlp[-1]
            grad = last.weight.float()[0].expand(h.shape[0], -1)
            for linear, pre in reversed(cached):
                grad = (grad * _activation_derivative(self.activation_name, pre)) @ (
                    linear.weight.float()
                )
        return grad

    def channel_polarity(self, flat: torch.Tensor) -> torch.Tensor:
        """Sign of ``sum_k d logit / d extreme[k, c]`` per channel, ``(B, C)``."""
        grad = self.mlp_input_gradient(flat)
        per_channel = grad.reshape(grad.shape[0], -1, self.n_channels).sum(dim=1)
        return torch.sign(per_channel)


def _float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


_SCORER_KEY = re.compile(r"^score_model\.hidden_layers\.(\d+)\.(weight|bias)$")
_MLP_HIDDEN_KEY = re.compile(r"^mlp\.(\d+)\.0\.(weight|bias)$")
_MLP_LAST_KEY = re.compile(r"^mlp\.(\d+)\.(weight|bias)$")


def looks_like_chowder(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys follow the Chowder layout (``score_model.*`` and ``mlp.*``)."""
    keys = list(state_dict)
    return any(_SCORER_KEY.match(k) for k in keys) and any(k.startswith("mlp.") for k in keys)


def infer_chowder_hparams(
    state_dict: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """Read ``(in_dim, hparams)`` of a Chowder off its tensor shapes.

    ``n_top + n_bottom`` is the MLP's input width divided by the channel count; it is split
    evenly unless ``overrides`` gives ``n_top``/``n_bottom``. The MLP activation is not stored
    in a state dict: sigmoid (IMILIA's) unless overrides says otherwise.
    """
    overrides = dict(overrides or {})
    found = ", ".join(f"{k} {tuple(v.shape)}" for k, v in state_dict.items())
    scorer = sorted({int(m.group(1)) for k in state_dict if (m := _SCORER_KEY.match(k))})
    if scorer != list(range(0, 2 * len(scorer), 2)):
        raise CheckpointError(
            f"Chowder tile scorer layers at unexpected positions {scorer}; found: {found}"
        )
    weights = [state_dict[f"score_model.hidden_layers.{i}.weight"] for i in scorer]
    in_dim = int(weights[0].shape[1])
    n_channels = int(weights[-1].shape[0])
    tiles_hidden = [int(w.shape[0]) for w in weights[:-1]]
    hidden_idx = sorted({int(m.group(1)) for k in state_dict if (m := _MLP_HIDDEN_KEY.match(k))})
    last_idx = sorted({int(m.group(1)) for k in state_dict if (m := _MLP_LAST_KEY.match(k))})
    if hidden_idx != list(range(len(hidden_idx))) or last_idx != [len(hidden_idx)]:
        raise CheckpointError(f"Chowder MLP layers are not mlp.0.0 ... mlp.N; found: {found}")
    mlp_weights = [state_dict[f"mlp.{i}.0.weight"] for i in hidden_idx]
    mlp_weights.append(state_dict[f"mlp.{last_idx[0]}.weight"])
    if int(mlp_weights[-1].shape[0]) != 1:
        raise CheckpointError(
            f"Chowder head has {mlp_weights[-1].shape[0]} outputs; only 1 (a slide logit) "
            f"is supported; found: {found}"
        )
    mlp_in = int(mlp_weights[0].shape[1])
    if mlp_in % n_channels:
        raise CheckpointError(
            f"Chowder MLP input width {mlp_in} is not a multiple of {n_channels} channels"
        )
    n_extremes = mlp_in // n_channels
    n_top, n_bottom = overrides.pop("n_top", None), overrides.pop("n_bottom", None)
    if n_top is None and n_bottom is None:
        if n_extremes % 2:
            raise CheckpointError(
                f"Chowder selects {n_extremes} extreme scores per channel, an odd number: "
                "pass n_top and n_bottom (hparams={'n_top': ..., 'n_bottom': ...})"
            )
        n_top = n_bottom = n_extremes // 2
    elif n_top is None:
        n_top = n_extremes - int(n_bottom)
    elif n_bottom is None:
        n_bottom = n_extremes - int(n_top)
    if int(n_top) + int(n_bottom) != n_extremes or min(int(n_top), int(n_bottom)) < 0:
        raise CheckpointError(
            f"n_top={n_top} + n_bottom={n_bottom} must equal {n_extremes} "
            f"(MLP input {mlp_in} / {n_channels} channels)"
        )
    hparams = {
        "n_channels": n_channels,
        "n_top": int(n_top),
        "n_bottom": int(n_bottom),
        "tiles_hidden": tiles_hidden,
        "mlp_hidden": [int(w.shape[0]) for w in mlp_weights[:-1]],
        "mlp_dropout": None,
        "mlp_activation": "sigmoid",
        "bias": "score_model.hidden_layers.0.bias" in state_dict,
    }
    hparams.update(overrides)
    return in_dim, hparams


def is_imilia_release_shape(in_dim: int, hparams: Mapping[str, Any]) -> bool:
    """True for the exact shape of IMILIA's released folds (then H0-mini features apply)."""
    keys = ("n_channels", "n_top", "n_bottom", "tiles_hidden", "mlp_hidden")
    return in_dim == IMILIA_RELEASE_IN_DIM and all(
        list(hparams[k]) == list(IMILIA_RELEASE_HPARAMS[k])
        if isinstance(hparams[k], list | tuple)
        else hparams[k] == IMILIA_RELEASE_HPARAMS[k]
        for k in keys
    )
