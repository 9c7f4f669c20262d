"""Accuracy of a cell backend against known nuclei: detection, position, count and class.

Known nuclei (planted in a synthetic tile, or annotated) are matched one to one to detected
cells whose centroids lie within ``max_distance_um`` (Hungarian matching on distance). Per
tile: recall = matched / known; a detection left unmatched is a false positive only when it
lies at least ``edge_um`` inside the tile (a nucleus cut by the border may be planted just
outside). Per class: recall = known of the class predicted as it / known of the class
matched; precision = those / detections predicted as the class (matched, plus false
positives of that class). Positions are the distance between matched centroids (µm).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from napari_imilia.interpret.cells.types import TileCells

#: Default matching radius (µm): well under a nucleus-to-nucleus distance.
MATCH_UM = 4.0
#: Default border band (µm) where unmatched detections are not counted as false.
EDGE_UM = 3.0


@dataclass
class TileAccuracy:
    """One tile's comparison. ``pairs``: (known class, predicted class) per match;
    ``errors_um``: centroid distance per match; ``false_classes``: predicted class of each
    false positive; ``n_known``: known nuclei; ``n_known_inner`` / ``n_found_inner``: known
    nuclei and detections at least ``edge_um`` inside the tile (what counts compare)."""

    pairs: list[tuple[str, str]]
    errors_um: np.ndarray
    false_classes: list[str]
    n_known: int
    n_known_inner: int
    n_found_inner: int


def match_points(
    known_xy: np.ndarray, found_xy: np.ndarray, max_distance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (known, found) of a one-to-one matching minimising total distance among
    pairs closer than ``max_distance`` (same units as the points)."""
    known_xy = np.asarray(known_xy, dtype=np.float64).reshape(-1, 2)
    found_xy = np.asarray(found_xy, dtype=np.float64).reshape(-1, 2)
    if len(known_xy) == 0 or len(found_xy) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    distance = np.linalg.norm(known_xy[:, None] - found_xy[None], axis=2)
    rows, cols = linear_sum_assignment(np.where(distance <= max_distance, distance, 1e9))
    keep = distance[rows, cols] <= max_distance
    return rows[keep], cols[keep]


def evaluate_tile(
    cells: TileCells,
    known_xy: np.ndarray,
    known_classes: Sequence[str],
    *,
    tile_size_px: tuple[int, int],
    max_distance_um: float = MATCH_UM,
    edge_um: float = EDGE_UM,
) -> TileAccuracy:
    """Compare ``cells`` with known nuclei at ``known_xy`` ((N, 2) continuous level-0 px,
    the convention of ``cells.table``) of classes ``known_classes``. ``tile_size_px``:
    (width, height) of the tile in ``cells.labels`` pixels."""
    um_per_level0 = cells.mpp / cells.level0_per_px
    origin = np.asarray(cells.level0_xy, dtype=np.float64)
    known_um = (np.asarray(known_xy, dtype=np.float64).reshape(-1, 2) - origin) * um_per_level0
    found = cells.table[["centroid_x", "centroid_y"]].to_numpy(np.float64)
    found_um = (found - origin) * um_per_level0
    rows, cols = match_points(known_um, found_um, max_distance_um)
    predicted = cells.table["class_name"].astype(str).tolist()
    size_um = np.asarray(tile_size_px, dtype=np.float64) * cells.mpp

    def inside(xy_um: np.ndarray) -> np.ndarray:
        return ((xy_um >= edge_um) & (xy_um <= size_um - edge_um)).all(axis=1)

    inner = inside(found_um)
    false = np.setdiff1d(np.flatnonzero(inner), cols)
    return TileAccuracy(
        pairs=[(str(known_classes[r]), predicted[c]) for r, c in zip(rows, cols, strict=True)],
        errors_um=np.linalg.norm(known_um[rows] - found_um[cols], axis=1),
        false_classes=[predicted[i] for i in false],
        n_known=len(known_um),
        n_known_inner=int(inside(known_um).sum()),
        n_found_inner=int(inner.sum()),
    )


@dataclass
class AccuracyReport:
    """Accuracy over many tiles (see the module docstring for the definitions)."""

    tiles: list[TileAccuracy] = field(default_factory=list)

    def add(self, tiles: Iterable[TileAccuracy]) -> None:
        self.tiles.extend(tiles)

    @property
    def confusion(self) -> Counter:
        """(known class, predicted class) -> matched cells."""
        return Counter(pair for tile in self.tiles for pair in tile.pairs)

    @property
    def n_known(self) -> int:
        return sum(t.n_known for t in self.tiles)

    @property
    def n_matched(self) -> int:
        return sum(len(t.pairs) for t in self.tiles)

    @property
    def n_false(self) -> int:
        return sum(len(t.false_classes) for t in self.tiles)

    @property
    def recall(self) -> float:
        return self.n_matched / max(self.n_known, 1)

    @property
    def precision(self) -> float:
        return self.n_matched / max(self.n_matched + self.n_false, 1)

    def position_error_um(self, quantile: float = 0.5) -> float:
        """A quantile of the matched centroid distances (µm)."""
        errors = np.concatenate([t.errors_um for t in self.tiles] or [np.zeros(0)])
        return float(np.quantile(errors, quantile)) if errors.size else float("nan")

    def count_error(self, quantile: float = 0.5) -> float:
        """A quantile over tiles of |detections - known| / known, both counted at least
        ``edge_um`` inside the tile."""
        errors = [
            abs(t.n_found_inner - t.n_known_inner) / t.n_known_inner
            for t in self.tiles
            if t.n_known_inner
        ]
        return float(np.quantile(errors, quantile)) if errors else float("nan")

    def per_class(self) -> dict[str, dict[str, float | int]]:
        """Known class -> ``n_known`` (matched), ``recall``, ``n_predicted``, ``precision``."""
        confusion = self.confusion
        known: Counter = Counter()
        predicted = Counter(c for t in self.tiles for c in t.false_classes)
        for (truth, guess), n in confusion.items():
            known[truth] += n
            predicted[guess] += n
        out: dict[str, dict[str, float | int]] = {}
        for name in sorted(known):
            hits = confusion[(name, name)]
            out[name] = {
                "n_known": known[name],
                "recall": hits / known[name],
                "n_predicted": predicted[name],
                "precision": hits / predicted[name] if predicted[name] else float("nan"),
            }
        return out
