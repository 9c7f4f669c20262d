"""Per-nucleus features and the transparent rule table of the ``classical`` backend.

Features (one value per nucleus; µm, µm², OD in log10 units, colours in [0, 1]):

- ``area_um2``, ``eccentricity``, ``major_um``, ``minor_um`` (equal-moment ellipse),
  ``solidity`` (contour area / its convex hull's area), ``lobes`` (fragments merged
  into the nucleus, 1 for a single piece);
- ``hematoxylin`` (mean nuclear hematoxylin OD: chromatin density), ``texture`` (its
  standard deviation);
- cytoplasm ring: pixels within ``ring_um`` of the nucleus, nearer to it than to any other
  nucleus, in tissue and not nuclear: ``ring_hematoxylin`` (basophilic, purple cytoplasm),
  ``ring_redness`` (mean (R - B) / 255: orange-red eosinophil granules >> pink stroma >
  purple), ``ring_granularity`` (standard deviation of the eosin OD);
- ``cytoplasm_offset_um``: distance from the nucleus centroid to the centroid of the
  basophilic cytoplasm (ring hematoxylin above ``basophilic_min_od``) within ``zone_um``: large
  for the eccentric nucleus of a plasma cell;
- ``epithelial_context``: number of similarly oriented large nuclei within ``row_um`` (nuclei in
  rows), or ``2 * epithelium_context_weight`` when the nucleus lies in the epithelium mask.

Classification: each class rule is a list of conditions ``(feature, ">=" or "<=", threshold)``
with thresholds from ``ClassicalRules``. A condition's soft truth is the logistic of its
margin, ``1 / (1 + exp(-(value - threshold) / softness))`` (reversed for "<="), with
``softness`` per feature (``SOFTNESS``); a rule's score is the minimum over its conditions, so
score >= 0.5 exactly when every condition holds. Rules are tried in table order (immune
cells first, so an intraepithelial lymphocyte stays a lymphocyte); the first whose score is
>= 0.5 gives the class, else ``default_class``. The cell's ``probability`` is the rule confidence
``score_win / (sum of all rule scores + (1 - max score))``: a margin-based number in (0, 1],
not a calibrated probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage.segmentation import expand_labels

from napari_imilia.interpret.cells.measure import label_contours, label_moments
from napari_imilia.interpret.cells.types import CELL_CLASSES


@dataclass(frozen=True)
class ClassicalRules:
    """Thresholds of the rule table (µm, µm², log10 OD, [0, 1] colour); override any."""

    ring_um: float = 2.0
    zone_um: float = 5.0
    row_um: float = 14.0
    basophilic_min_od: float = 0.15
    epithelium_context_weight: float = 1.0
    # Eosinophils: orange-red granular cytoplasm.
    eosinophil_min_redness: float = 0.25
    eosinophil_min_area_um2: float = 9.0
    eosinophil_max_area_um2: float = 55.0
    # Neutrophils: irregular (lobed) dense nucleus, pale cytoplasm.
    neutrophil_max_solidity: float = 0.935
    neutrophil_min_hematoxylin: float = 0.5
    neutrophil_max_eccentricity: float = 0.9
    neutrophil_max_area_um2: float = 50.0
    neutrophil_max_redness: float = 0.2
    neutrophil_max_ring_hematoxylin: float = 0.13
    # Plasmocytes: round dense nucleus, eccentric in basophilic cytoplasm.
    plasmocyte_min_ring_hematoxylin: float = 0.105
    plasmocyte_min_offset_um: float = 1.0
    plasmocyte_min_area_um2: float = 14.0
    plasmocyte_max_area_um2: float = 50.0
    plasmocyte_max_eccentricity: float = 0.85
    plasmocyte_min_hematoxylin: float = 0.45
    # Lymphocytes: small, round, dense, scant cytoplasm.
    lymphocyte_min_area_um2: float = 12.0
    lymphocyte_max_area_um2: float = 46.0
    lymphocyte_max_eccentricity: float = 0.8
    lymphocyte_min_solidity: float = 0.94
    lymphocyte_min_hematoxylin: float = 0.55
    lymphocyte_max_ring_hematoxylin: float = 0.11
    lymphocyte_max_offset_um: float = 1.0
    # Epithelial: larger oval nuclei in rows or in the epithelium mask.
    epithelial_min_area_um2: float = 18.0
    epithelial_min_context: float = 0.5
    epithelial_min_eccentricity: float = 0.6
    epithelial_min_minor_um: float = 3.2
    # Fibroblasts: thin spindles.
    fibroblast_min_eccentricity: float = 0.93
    fibroblast_max_minor_um: float = 3.6
    # Macrophages: large pale (vesicular) nucleus outside epithelium.
    macrophage_min_area_um2: float = 28.0
    macrophage_max_hematoxylin: float = 0.5
    macrophage_max_context: float = 0.5
    default_class: str = "Minor Stromal Cell"

    def table(self) -> dict[str, list[tuple[str, str, float]]]:
        """The rule table: class name -> conditions (feature, ">=" / "<=", threshold)."""
        return {
            "Eosinophils": [
                ("ring_redness", ">=", self.eosinophil_min_redness),
                ("area_um2", ">=", self.eosinophil_min_area_um2),
                ("area_um2", "<=", self.eosinophil_max_area_um2),
            ],
            "Neutrophils": [
                ("solidity", "<=", self.neutrophil_max_solidity),
                ("hematoxylin", ">=", self.neutrophil_min_hematoxylin),
                ("eccentricity", "<=", self.neutrophil_max_eccentricity),
                ("area_um2", "<=", self.neutrophil_max_area_um2),
                ("ring_redness", "<=", self.neutrophil_max_redness),
                ("ring_hematoxylin", "<=", self.neutrophil_max_ring_hematoxylin),
            ],
            "Plasmocytes": [
                ("ring_hematoxylin", ">=", self.plasmocyte_min_ring_hematoxylin),
                ("cytoplasm_offset_um", ">=", self.plasmocyte_min_offset_um),
                ("area_um2", ">=", self.plasmocyte_min_area_um2),
                ("area_um2", "<=", self.plasmocyte_max_area_um2),
                ("eccentricity", "<=", self.plasmocyte_max_eccentricity),
                ("hematoxylin", ">=", self.plasmocyte_min_hematoxylin),
            ],
            "Lymphocytes": [
                ("area_um2", ">=", self.lymphocyte_min_area_um2),
                ("area_um2", "<=", self.lymphocyte_max_area_um2),
                ("eccentricity", "<=", self.lymphocyte_max_eccentricity),
                ("solidity", ">=", self.lymphocyte_min_solidity),
                ("hematoxylin", ">=", self.lymphocyte_min_hematoxylin),
                ("ring_hematoxylin", "<=", self.lymphocyte_max_ring_hematoxylin),
                ("cytoplasm_offset_um", "<=", self.lymphocyte_max_offset_um),
            ],
            "Epithelial": [
                ("area_um2", ">=", self.epithelial_min_area_um2),
                ("epithelial_context", ">=", self.epithelial_min_context),
                ("minor_um", ">=", self.epithelial_min_minor_um),
                ("eccentricity", ">=", self.epithelial_min_eccentricity),
            ],
            "Fibroblasts": [
                ("eccentricity", ">=", self.fibroblast_min_eccentricity),
                ("minor_um", "<=", self.fibroblast_max_minor_um),
            ],
            "Macrophages": [
                ("area_um2", ">=", self.macrophage_min_area_um2),
                ("hematoxylin", "<=", self.macrophage_max_hematoxylin),
                ("epithelial_context", "<=", self.macrophage_max_context),
            ],
        }


#: Softness (the logistic's scale) of each feature's conditions, in the feature's units.
SOFTNESS: dict[str, float] = {
    "area_um2": 3.0,
    "eccentricity": 0.04,
    "major_um": 0.5,
    "minor_um": 0.3,
    "solidity": 0.015,
    "lobes": 0.3,
    "hematoxylin": 0.05,
    "texture": 0.03,
    "ring_hematoxylin": 0.02,
    "ring_redness": 0.04,
    "ring_granularity": 0.03,
    "cytoplasm_offset_um": 0.3,
    "epithelial_context": 0.3,
}


def classify(
    features: dict[str, np.ndarray], rules: ClassicalRules
) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (into ``CELL_CLASSES``) and rule confidences, one per nucleus."""
    table = rules.table()
    n = len(features["area_um2"])
    scores = np.ones((len(table), n))
    for k, conditions in enumerate(table.values()):
        for feature, op, threshold in conditions:
            margin = (np.asarray(features[feature], np.float64) - threshold) / SOFTNESS[feature]
            margin = np.nan_to_num(margin if op == ">=" else -margin, nan=-50.0)
            scores[k] = np.minimum(scores[k], 1.0 / (1.0 + np.exp(-np.clip(margin, -50, 50))))
    passing = scores >= 0.5
    matched = passing.any(axis=0)
    first = passing.argmax(axis=0)  # rules are tried in table order
    names = list(table)
    class_ids = np.array([CELL_CLASSES.index(names[k]) for k in first], dtype=np.int64)
    class_ids[~matched] = CELL_CLASSES.index(rules.default_class)
    default_score = 1.0 - scores.max(axis=0)
    winner = np.where(matched, scores[first, np.arange(n)], default_score)
    return class_ids, winner / (scores.sum(axis=0) + default_score)


def nucleus_features(
    labels: np.ndarray,
    lobes: dict[int, int],
    her: np.ndarray,
    foreground: np.ndarray,
    tissue: np.ndarray,
    rgb: np.ndarray,
    *,
    mpp: float,
    epithelium_mask: np.ndarray | None = None,
    rules: ClassicalRules | None = None,
    rings_px: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The features above for labels 1..N of ``labels`` (N = max label, all present), in
    label order. ``rings_px``: their contours in pixel (x, y), as ``label_contours`` gives
    with origin 0 and scale 1 (computed when None)."""
    rules = rules or ClassicalRules()
    n = int(labels.max())
    values = np.arange(1, n + 1)
    if rings_px is None:
        rings_px = label_contours(labels, values, level0_xy=(0, 0), level0_per_px=1.0)
    hematoxylin = her[:, :, 0]
    moments = label_moments(labels, values, hematoxylin)
    index = labels.ravel()
    count = np.maximum(moments["area_px"], 1.0)
    h_sq = np.bincount(index, (hematoxylin.astype(np.float64) ** 2).ravel(), n + 1)[1:]
    texture = np.sqrt(np.maximum(h_sq / count - moments["hematoxylin"] ** 2, 0.0))
    features = {
        "area_um2": moments["area_px"] * mpp * mpp,
        "eccentricity": moments["eccentricity"],
        "major_um": moments["major_px"] * mpp,
        "minor_um": moments["minor_px"] * mpp,
        "solidity": _solidity(rings_px),
        "lobes": np.array([lobes.get(int(v), 1) for v in values], dtype=np.float64),
        "hematoxylin": moments["hematoxylin"],
        "texture": texture,
    }
    features.update(_ring_features(labels, n, her, foreground, tissue, rgb, mpp, rules))
    features["cytoplasm_offset_um"] = _cytoplasm_offset(
        labels, n, hematoxylin, foreground, tissue, moments, mpp, rules
    )
    features["epithelial_context"] = _epithelial_context(
        features, moments, labels, mpp, epithelium_mask, rules
    )
    return features


def _solidity(rings: list[np.ndarray]) -> np.ndarray:
    """Per contour ring: polygon area / convex hull area (1 for convex shapes)."""
    solidity = np.ones(len(rings))
    for i, ring in enumerate(rings):
        x, y = ring[:, 0], ring[:, 1]
        area = abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2
        try:
            hull = ConvexHull(ring).volume
        except QhullError:
            continue
        if hull > 0:
            solidity[i] = area / hull
    return np.minimum(solidity, 1.0)


def _ring_features(labels, n, her, foreground, tissue, rgb, mpp, rules) -> dict[str, np.ndarray]:
    grown = expand_labels(labels, rules.ring_um / mpp)
    ring = np.where((labels == 0) & ~foreground & tissue, grown, 0).ravel()
    count = np.bincount(ring, minlength=n + 1)[1:].astype(np.float64)
    safe = np.maximum(count, 1.0)
    rgb = np.asarray(rgb, dtype=np.float64) / 255.0
    redness = (rgb[:, :, 0] - rgb[:, :, 2]).ravel()
    eosin = her[:, :, 1].astype(np.float64).ravel()
    mean_e = np.bincount(ring, eosin, n + 1)[1:] / safe
    var_e = np.bincount(ring, eosin * eosin, n + 1)[1:] / safe - mean_e**2
    empty = count < 3
    out = {
        "ring_hematoxylin": np.bincount(ring, her[:, :, 0].astype(np.float64).ravel(), n + 1)[1:]
        / safe,
        "ring_redness": np.bincount(ring, redness, n + 1)[1:] / safe,
        "ring_granularity": np.sqrt(np.maximum(var_e, 0.0)),
    }
    for values in out.values():
        values[empty] = np.nan
    return out


def _cytoplasm_offset(labels, n, hematoxylin, foreground, tissue, moments, mpp, rules):
    zone = expand_labels(labels, rules.zone_um / mpp)
    basophilic = (labels == 0) & ~foreground & tissue & (hematoxylin > rules.basophilic_min_od)
    owner = np.where(basophilic, zone, 0).ravel()
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    count = np.bincount(owner, minlength=n + 1)[1:].astype(np.float64)
    safe = np.maximum(count, 1.0)
    r = np.bincount(owner, rows.ravel(), n + 1)[1:] / safe
    c = np.bincount(owner, cols.ravel(), n + 1)[1:] / safe
    offset = np.hypot(r - moments["row"], c - moments["col"]) * mpp
    min_pixels = 0.5 * moments["area_px"]  # too little cytoplasm to say where it lies
    return np.where(count >= min_pixels, offset, 0.0)


def _epithelial_context(features, moments, labels, mpp, epithelium_mask, rules):
    n = len(features["area_um2"])
    large = (features["area_um2"] >= rules.epithelial_min_area_um2) & (
        features["eccentricity"] >= 0.5
    )
    y, x = moments["row"] * mpp, moments["col"] * mpp
    distance = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    angle = moments["orientation"]
    turn = np.abs(np.angle(np.exp(2j * (angle[:, None] - angle[None, :])))) / 2
    aligned = (distance <= rules.row_um) & (turn <= np.radians(30)) & large[None, :]
    np.fill_diagonal(aligned, False)
    context = aligned.sum(axis=1).astype(np.float64)
    if epithelium_mask is not None and n:
        rows = np.clip(np.rint(moments["row"]).astype(int), 0, labels.shape[0] - 1)
        cols = np.clip(np.rint(moments["col"]).astype(int), 0, labels.shape[1] - 1)
        inside = np.asarray(epithelium_mask, dtype=bool)[rows, cols]
        in_mask = 2 * rules.epithelium_context_weight
        context = np.where(inside, np.maximum(context, in_mask), context)
    return context
