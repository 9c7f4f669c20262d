"""Which tiles of a scored slide to inspect: ``top:K``, ``bottom:K``, ``all`` or ids."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_imilia.errors import ImiliaError


def select_tiles(tiles: pd.DataFrame, spec: str) -> pd.DataFrame:
    """Rows of a scored tile table chosen by ``spec``, in a fixed order, without repeats.

    ``spec`` is a comma-separated list of ``top:K`` (highest scores first), ``bottom:K``
    (lowest first), ``all`` (table order) and tile ids (``"448_224"``). ``ImiliaError``
    for an empty or malformed spec, K < 1, or ids the table lacks.
    """
    items = [item.strip() for item in str(spec).split(",") if item.strip()]
    if not items:
        raise ImiliaError("--tiles is empty; use top:50, bottom:50, all or tile ids (x_y)")
    ids = tiles["tile_id"].astype(str)
    order = tiles.assign(_pos=np.arange(len(tiles)))
    chosen: list[int] = []
    unknown: list[str] = []
    for item in items:
        head, sep, tail = item.partition(":")
        if item.lower() == "all":
            chosen.extend(range(len(tiles)))
        elif sep:
            chosen.extend(_ranked(order, head.strip().lower(), tail.strip(), item))
        else:
            hits = np.flatnonzero(ids.to_numpy() == item)
            if hits.size == 0:
                unknown.append(item)
            chosen.extend(hits[:1].tolist())
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ImiliaError(
            f"--tiles names {len(unknown)} tile id(s) not in the prediction: {shown}; ids are "
            "level-0 x_y as in tiles.csv"
        )
    unique = list(dict.fromkeys(chosen))
    return tiles.iloc[unique].reset_index(drop=True)


def _ranked(order: pd.DataFrame, kind: str, count: str, item: str) -> list[int]:
    if kind not in ("top", "bottom"):
        raise ImiliaError(
            f"--tiles item {item!r} is not understood; use top:K, bottom:K, all or tile ids"
        )
    try:
        k = int(count)
    except ValueError:
        raise ImiliaError(f"--tiles item {item!r}: K must be a whole number") from None
    if k < 1:
        raise ImiliaError(f"--tiles item {item!r}: K must be at least 1")
    if "score" not in order.columns:
        raise ImiliaError("the prediction's tile table has no score column")
    ranked = order.sort_values("score", ascending=kind == "bottom", kind="mergesort")
    return ranked["_pos"].head(k).astype(int).tolist()
