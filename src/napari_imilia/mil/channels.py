"""What a multi-channel Chowder says per channel: channel scores, polarity, selected extremes.

IMILIA's Chowder (``imilia-chowder``) scores every tile on C channels and passes only, per
channel, the ``n_top`` highest and ``n_bottom`` lowest tile scores to its MLP (see
``mil/chowder.py``). :class:`ChannelReadout` keeps, for one slide:

- ``scores[n, k]``: tile n's raw score on channel k;
- ``polarity[k]``: +1 when raising channel k's selected scores raises the slide logit, -1 when
  it lowers it, 0 when it has no first-order effect (``ImiliaChowder.channel_polarity``,
  evaluated at this slide's extremes);
- ``top[n, k]`` / ``bottom[n, k]``: tile n was among channel k's selected highest / lowest
  scores (the tiles that reach the slide score).

An ensemble of M members has M x C channels: member m's channel c is labelled ``m{m}_ch{c}``
(a single model's is ``ch{c}``); channels of different members are trained separately and are
never averaged.

In ``tiles.csv`` (:func:`channel_columns`) each channel gives a column ``score_<label>``;
``extreme_channels`` lists the channels in which the tile was selected, comma-separated, each
label followed by ``+`` (among the top) or ``-`` (among the bottom), e.g. ``ch0+,ch3-``
(empty when none); ``extreme_top`` / ``extreme_bottom`` say whether it was a top / bottom
extreme in any channel; ``drive`` is the tile's net push on the slide score: the sum over its
selections of ``polarity x (+1 top, -1 bottom)`` (> 0: its selected extremes push the slide
score up relative to an ordinary tile, < 0: down; 0 when never selected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SCORE_PREFIX = "score_"


@dataclass(frozen=True)
class MemberChannels:
    """One model's channel output on one bag: ``scores (N, C)``, ``polarity (C,)`` and the
    selected ``top (n_top, C)`` / ``bottom (n_bottom, C)`` row indices (-1: no real tile)."""

    scores: np.ndarray
    polarity: np.ndarray
    top: np.ndarray
    bottom: np.ndarray


@dataclass(frozen=True)
class ChannelReadout:
    """Per-channel tile scores, polarity and selected extremes of one slide (module docstring)."""

    labels: list[str]
    scores: np.ndarray
    polarity: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    n_top: int
    n_bottom: int

    @property
    def drive(self) -> np.ndarray:
        """Per tile: sum of ``polarity x (+1 top, -1 bottom)`` over its selections."""
        signed = self.top.astype(np.float64) - self.bottom.astype(np.float64)
        return signed @ self.polarity.astype(np.float64)


def channel_label(member: int, channel: int, n_members: int) -> str:
    """``ch{c}`` for a single model, ``m{m}_ch{c}`` for member m of an ensemble."""
    return f"ch{channel}" if n_members == 1 else f"m{member}_ch{channel}"


def member_channels(module: Any, output: Any, n_real: int) -> MemberChannels | None:
    """Channel output of one forward pass of ``module`` (an ``ImiliaChowder``) on an
    unbatched bag whose first ``n_real`` rows are tiles (the rest zero padding), or None
    when the model has no channels."""
    import torch

    from napari_imilia.mil.chowder import extreme_indices

    channel_scores = getattr(output, "channel_scores", None)
    polarity = getattr(output, "channel_polarity", None)
    if channel_scores is None or polarity is None or not hasattr(module, "n_top"):
        return None
    with torch.no_grad():
        top, bottom = extreme_indices(channel_scores[None], None, module.n_top, module.n_bottom)
    top_np, bottom_np = top[0].cpu().numpy(), bottom[0].cpu().numpy()
    top_np = np.where(top_np < n_real, top_np, -1)  # padding rows are not tiles
    bottom_np = np.where(bottom_np < n_real, bottom_np, -1)
    return MemberChannels(
        scores=channel_scores[:n_real].float().cpu().numpy(),
        polarity=polarity.float().cpu().numpy(),
        top=top_np,
        bottom=bottom_np,
    )


def combine_members(members: Sequence[MemberChannels], n_tiles: int) -> ChannelReadout:
    """One readout from each member's channels; tiles past a member's rows get NaN scores."""
    labels: list[str] = []
    scores, polarity, tops, bottoms = [], [], [], []
    for m, member in enumerate(members):
        n_real, n_channels = member.scores.shape
        full = np.full((n_tiles, n_channels), np.nan, dtype=np.float32)
        full[:n_real] = member.scores
        scores.append(full)
        polarity.append(member.polarity.astype(np.float32))
        tops.append(_selected(member.top, n_tiles, n_channels))
        bottoms.append(_selected(member.bottom, n_tiles, n_channels))
        labels.extend(channel_label(m, c, len(members)) for c in range(n_channels))
    return ChannelReadout(
        labels=labels,
        scores=np.concatenate(scores, axis=1),
        polarity=np.concatenate(polarity),
        top=np.concatenate(tops, axis=1),
        bottom=np.concatenate(bottoms, axis=1),
        n_top=int(members[0].top.shape[0]),
        n_bottom=int(members[0].bottom.shape[0]),
    )


def _selected(indices: np.ndarray, n_tiles: int, n_channels: int) -> np.ndarray:
    flags = np.zeros((n_tiles, n_channels), dtype=bool)
    for c in range(n_channels):
        rows = indices[:, c]
        flags[rows[rows >= 0], c] = True
    return flags


def channel_columns(readout: ChannelReadout) -> pd.DataFrame:
    """The tiles.csv columns of a readout (one row per tile; see the module docstring)."""
    columns: dict[str, Any] = {
        f"{SCORE_PREFIX}{label}": readout.scores[:, k].astype(np.float64)
        for k, label in enumerate(readout.labels)
    }
    tokens = [""] * readout.scores.shape[0]
    sort_key = _token_order(readout.labels)
    for n in np.flatnonzero(readout.top.any(axis=1) | readout.bottom.any(axis=1)):
        marks = [f"{readout.labels[k]}+" for k in np.flatnonzero(readout.top[n])]
        marks += [f"{readout.labels[k]}-" for k in np.flatnonzero(readout.bottom[n])]
        tokens[n] = ",".join(sorted(marks, key=sort_key))
    columns["extreme_channels"] = tokens
    columns["extreme_top"] = readout.top.any(axis=1)
    columns["extreme_bottom"] = readout.bottom.any(axis=1)
    columns["drive"] = readout.drive
    return pd.DataFrame(columns)


def _token_order(labels: list[str]) -> Any:
    order = {label: k for k, label in enumerate(labels)}
    return lambda token: (order[token[:-1]], token[-1] == "-")


def channels_info(readout: ChannelReadout) -> dict[str, Any]:
    """slide.json's keys: ``channels`` (label, polarity, tiles.csv column of each channel)
    and ``extremes_per_channel`` (``top``, ``bottom``: how many tiles each channel selects)."""
    return {
        "channels": [
            {"label": label, "polarity": int(readout.polarity[k]), "column": SCORE_PREFIX + label}
            for k, label in enumerate(readout.labels)
        ],
        "extremes_per_channel": {"top": readout.n_top, "bottom": readout.n_bottom},
    }


def channel_labels(tiles: pd.DataFrame, info: dict[str, Any] | None = None) -> list[str]:
    """The channel labels of a result: from slide.json's ``channels`` when present, else the
    ``score_<label>`` columns of the tile table, in table order."""
    recorded = (info or {}).get("channels") or []
    labels = [str(entry["label"]) for entry in recorded if "label" in entry]
    if labels:
        return [label for label in labels if SCORE_PREFIX + label in tiles.columns]
    return [c[len(SCORE_PREFIX) :] for c in tiles.columns if c.startswith(SCORE_PREFIX)]


def normalise_channel_columns(tiles: pd.DataFrame) -> pd.DataFrame:
    """A tiles.csv read back: empty ``extreme_channels`` cells (NaN) become ``""``."""
    if "extreme_channels" in tiles.columns:
        tiles["extreme_channels"] = tiles["extreme_channels"].fillna("").astype(str)
    return tiles


def extreme_tokens(value: Any) -> list[str]:
    """``"ch0+,ch3-"`` → ``["ch0+", "ch3-"]`` (empty for an empty or missing cell)."""
    if not isinstance(value, str) or not value.strip():
        return []
    return [token.strip() for token in value.split(",") if token.strip()]
