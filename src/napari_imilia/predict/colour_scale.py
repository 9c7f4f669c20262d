"""Colour scales of the heatmap that mean the same on every slide (no Qt).

A reviewer reads colour, not the colour bar's numbers: a scale stretched over each slide's own
lowest and highest tile paints the hottest tile of an inactive slide as bright as that of an
active one. So by default a value is drawn on a **fixed scale**, the same on every slide:

- **cohort**: when a cohort is under review, from its slides scored by the same model
  (each slide's ``slide.json`` records the 1st and 99th percentile of every value column,
  :func:`value_ranges`; the cohort's scale runs from the lowest of those to the highest);
- **model reference**: else the model's own range, saved with each result
  (``slide.json``'s ``colour_scale``, :func:`model_reference`): the ``tile_score_reference``
  of the model's ``model.json`` (its training slides' tile scores, 1st-99th percentile) when
  the model has one, else the documented fallback :data:`FALLBACK_LOGIT_HALF_RANGE`;
- **fallback** for results written before scales were recorded: the same fallback.

Every scale is **centred** where a tile pushes the slide neither way: tile scores and channel
scores are logits, neutral at 0; attention is neutral at the uniform weight 1/N of a slide of
N tiles, so attention scales are kept in multiples of 1/N and turned into weights per slide
(:meth:`ColourScale.limits`). The centre sits in the middle of the colormap
(:func:`centred_positions`: a two-slope map, as matplotlib's ``TwoSlopeNorm``).

*This slide's range* (:func:`slide_scale`) stays available; the caption says which is shown.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Fallback half-range of a tile logit (tile scores, channel scores) when the model records no
#: reference: -6 to +6, a tile probability of 0.25 % to 99.75 %.
FALLBACK_LOGIT_HALF_RANGE = 6.0
#: Fallback top of the attention scale, in multiples of the uniform weight 1/N.
FALLBACK_ATTENTION_HIGH = 4.0
#: Percentiles of a slide's tile values recorded in ``slide.json`` (robust to one odd tile).
RANGE_PERCENTILES = (1.0, 99.0)
ATTENTION = "attention"
#: ``slide.json`` keys: each value column's percentiles, and the model's reference scales.
RANGES_KEY = "tile_value_ranges"
SCALE_KEY = "colour_scale"
#: Scale choices: fixed (the cohort's, else the model's) or this slide's own range.
FIXED, SLIDE = "fixed", "slide"


@dataclass(frozen=True)
class ColourScale:
    """Colour range of one value: ``low`` to ``high`` with ``centre`` (the neutral value) in
    the middle of the colormap. ``per_uniform``: the three are multiples of the uniform
    attention weight 1/N (turned into weights by :meth:`limits`). ``source`` says where the
    scale came from, for the caption ('cohort of 12 slides', 'model reference'...)."""

    low: float
    high: float
    centre: float
    source: str
    per_uniform: bool = False

    def limits(self, n_tiles: int = 1) -> tuple[float, float, float]:
        """(low, centre, high) in the value's units for a slide of ``n_tiles`` tiles."""
        unit = 1.0 / max(int(n_tiles), 1) if self.per_uniform else 1.0
        return self.low * unit, self.centre * unit, self.high * unit

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "high": self.high,
            "centre": self.centre,
            "source": self.source,
            "per_uniform": self.per_uniform,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColourScale:
        """``ValueError``/``KeyError``/``TypeError`` when ``data`` is not a scale."""
        scale = cls(
            low=float(data["low"]),
            high=float(data["high"]),
            centre=float(data["centre"]),
            source=str(data.get("source", "")),
            per_uniform=bool(data.get("per_uniform", False)),
        )
        if not all(map(math.isfinite, (scale.low, scale.high, scale.centre))):
            raise ValueError("colour scale bounds must be finite")
        return _centred(scale)


def _centred(scale: ColourScale) -> ColourScale:
    """``scale`` with its centre strictly inside (low, high): a side that does not reach past
    the centre mirrors the other one."""
    low, high, centre = scale.low, scale.high, scale.centre
    if high <= centre and low >= centre:
        low, high = centre - 1.0, centre + 1.0
    elif high <= centre:
        high = centre + (centre - low)
    elif low >= centre and not scale.per_uniform:
        low = centre - (high - centre)
    elif low >= centre:  # attention: weights are never negative
        low = 0.0 if centre > 0 else centre - (high - centre)
    return ColourScale(low, high, centre, scale.source, scale.per_uniform)


def is_attention(column: str) -> bool:
    return column == ATTENTION


def _neutral(column: str) -> float:
    """Value of a tile that pushes the slide neither way (attention: multiples of 1/N)."""
    return 1.0 if is_attention(column) else 0.0


def value_columns(tiles: pd.DataFrame) -> list[str]:
    """The tile table's columns a heatmap may show on a fixed scale: ``score``, ``attention``
    and the channels' ``score_<channel>``."""
    return [
        c
        for c in tiles.columns
        if (c == "score" or c == ATTENTION or c.startswith("score_"))
        and pd.api.types.is_numeric_dtype(tiles[c])
    ]


def value_ranges(tiles: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per value column (:func:`value_columns`): its 1st and 99th percentile over the slide's
    tiles (attention in multiples of 1/N), for ``slide.json``'s :data:`RANGES_KEY`."""
    ranges: dict[str, dict[str, float]] = {}
    for column in value_columns(tiles):
        values = tiles[column].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        if is_attention(column):
            values = values * values.size
        low, high = np.percentile(values, RANGE_PERCENTILES)
        ranges[column] = {"low": round(float(low), 6), "high": round(float(high), 6)}
    return ranges


def fallback_scale(column: str) -> ColourScale:
    """The documented fallback when nothing better is known: tile logits -6 to +6 centred at
    0; attention 0 to 4 x the uniform weight, centred at 1/N."""
    if is_attention(column):
        source = "default 0 to 4/N (no model reference)"
        return ColourScale(0.0, FALLBACK_ATTENTION_HIGH, 1.0, source, per_uniform=True)
    half = FALLBACK_LOGIT_HALF_RANGE
    return ColourScale(-half, half, 0.0, f"default ±{half:g} (no model reference)")


def model_reference(model_config: Mapping[str, Any] | None, tiles: pd.DataFrame) -> dict:
    """``slide.json``'s :data:`SCALE_KEY`: the model's reference scale of each value column.

    From ``model.json``'s ``tile_score_reference`` (``{"low": .., "high": ..}`` of the tile
    score, optionally ``{column: {...}}`` per column) when the model records one, else
    :func:`fallback_scale`.
    """
    reference: Any = None
    if model_config:
        training = model_config.get("training") or {}
        reference = model_config.get("tile_score_reference") or (
            training.get("tile_score_reference") if isinstance(training, Mapping) else None
        )
    scales = {}
    for column in value_columns(tiles):
        scale = fallback_scale(column)
        known = _reference_for(reference, column)
        if known is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):  # damaged: fallback
                scale = ColourScale.from_dict(
                    {
                        "centre": _neutral(column),
                        "per_uniform": is_attention(column),
                        **known,
                        "source": "model reference",
                    }
                )
        scales[column] = scale.to_dict()
    return scales


def _reference_for(reference: Any, column: str) -> Mapping[str, Any] | None:
    if not isinstance(reference, Mapping):
        return None
    if isinstance(reference.get(column), Mapping):
        return reference[column]
    if column == "score" and "low" in reference and "high" in reference:
        return reference
    return None


def reference_scale(info: Mapping[str, Any], column: str) -> ColourScale:
    """The model reference scale of ``column`` saved in a result's ``slide.json`` (``info``);
    the fallback for results written before it was recorded."""
    saved = (info.get(SCALE_KEY) or {}).get(column) if isinstance(info, Mapping) else None
    if isinstance(saved, Mapping):
        try:
            return ColourScale.from_dict(saved)
        except (ValueError, KeyError, TypeError):
            pass
    return fallback_scale(column)


def cohort_scale(ranges: Iterable[Mapping[str, Any] | None], column: str) -> ColourScale | None:
    """The scale of ``column`` over a cohort's slides: from the lowest recorded low to the
    highest recorded high of their :data:`RANGES_KEY` (slides without one are left out),
    centred at the neutral value. None when fewer than 2 slides record the column."""
    lows, highs = [], []
    for slide_ranges in ranges:
        found = (slide_ranges or {}).get(column)
        if not isinstance(found, Mapping):
            continue
        try:
            low, high = float(found["low"]), float(found["high"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(low) and math.isfinite(high):
            lows.append(low)
            highs.append(high)
    if len(lows) < 2:
        return None
    scale = ColourScale(
        min(lows),
        max(highs),
        _neutral(column),
        f"cohort of {len(lows)} slides",
        per_uniform=is_attention(column),
    )
    return _centred(scale)


def slide_scale(values: np.ndarray, column: str) -> ColourScale:
    """This slide's own range (lowest to highest finite value), centred in the middle."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    if high <= low:
        high = low + 1e-6
    return ColourScale(low, high, (low + high) / 2, "this slide's range")


def centred_positions(values: np.ndarray, low: float, centre: float, high: float) -> np.ndarray:
    """Where ``values`` fall on the colormap (0-1, clipped): ``low`` at 0, ``centre`` at 0.5,
    ``high`` at 1, linear on either side (a two-slope map)."""
    values = np.asarray(values, dtype=np.float64)
    below = 0.5 * (values - low) / max(centre - low, 1e-12)
    above = 0.5 + 0.5 * (values - centre) / max(high - centre, 1e-12)
    return np.clip(np.where(values < centre, below, above), 0.0, 1.0)


def results_scale(results_root: str | Path, column: str = "score") -> ColourScale | None:
    """:func:`cohort_scale` of the slides scored in ``results_root`` (every
    ``<slide_id>/tiles.csv``): how a model's ``tile_score_reference`` is measured on its
    training slides (docs/review_viewer.md)."""
    ranges = []
    for tiles_csv in sorted(Path(results_root).glob("*/tiles.csv")):
        ranges.append(value_ranges(pd.read_csv(tiles_csv, dtype={"tile_id": str})))
    return cohort_scale(ranges, column)
