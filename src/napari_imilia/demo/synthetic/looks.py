"""What synthetic H&E looks like: stain colours, tissue compartments and cell classes.

Colours follow Beer-Lambert: each pixel holds a haematoxylin, an eosin and a "red" (eosin on
haemoglobin or eosinophil granules) concentration; its optical density (OD) per RGB channel is
``background + h * H + e * E + r * R`` and its intensity ``255 * exp(-OD)``. Sizes are in µm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: OD per unit concentration for (R, G, B): haematoxylin (blue-purple), eosin (pink), red.
HAEMATOXYLIN_OD: tuple[float, float, float] = (0.66, 0.74, 0.30)
EOSIN_OD: tuple[float, float, float] = (0.06, 0.92, 0.42)
RED_OD: tuple[float, float, float] = (0.10, 1.05, 0.92)

#: Glass / background OD (a slightly warm white, about RGB 244, 243, 245).
BACKGROUND_OD: tuple[float, float, float] = (0.045, 0.048, 0.040)

#: (haematoxylin, eosin, red) concentrations of the tissue compartments.
STROMA_HER: tuple[float, float, float] = (0.10, 0.36, 0.0)
EPITHELIUM_HER: tuple[float, float, float] = (0.24, 0.52, 0.0)
GOBLET_HER: tuple[float, float, float] = (0.13, 0.04, 0.0)
LUMEN_HER: tuple[float, float, float] = (0.03, 0.02, 0.0)
DEBRIS_HER: tuple[float, float, float] = (0.35, 0.55, 0.05)
BASEMENT_MEMBRANE_E: float = 0.35

#: Geometry of colonic crypts cut across (rings of epithelium around a lumen), µm.
CRYPT_OUTER_RADIUS_UM: tuple[float, float] = (23.0, 32.0)
CRYPT_LUMEN_RADIUS_UM: tuple[float, float] = (3.5, 7.0)
ABSCESS_OUTER_RADIUS_UM: tuple[float, float] = (30.0, 36.0)
ABSCESS_LUMEN_RADIUS_UM: tuple[float, float] = (11.0, 14.0)
CRYPT_PITCH_UM: float = 96.0
CRYPT_JITTER_UM: float = 9.0
SURFACE_EPITHELIUM_UM: float = 24.0


@dataclass(frozen=True)
class CellLook:
    """Appearance of one cell class.

    ``nucleus_um`` is the mean (major, minor) nucleus diameter; ``cell_um`` the cytoplasm
    (major, minor) diameter for that nucleus (``None``: no visible cytoplasm); the nucleus sits
    ``nucleus_offset_um`` from the cell centre along the major axis. ``chromatin`` is one of
    "dense", "clock" (plasma cell clock face), "vesicular" (pale with a dark rim) or "none"
    (anucleate red cell: the "nucleus" ellipse is the whole disc, with a pale centre).
    """

    nucleus_um: tuple[float, float]
    nucleus_sd_um: float
    lobes: tuple[int, int]
    cell_um: tuple[float, float] | None
    nucleus_offset_um: float
    nucleus_her: tuple[float, float, float]
    chromatin: str
    cytoplasm_her: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cytoplasm_texture: float = 0.0
    granular: bool = False


CELL_LOOKS: dict[str, CellLook] = {
    "Lymphocytes": CellLook(
        nucleus_um=(6.6, 6.1),
        nucleus_sd_um=0.35,
        lobes=(1, 1),
        cell_um=(7.6, 7.2),
        nucleus_offset_um=0.0,
        nucleus_her=(2.35, 0.30, 0.0),
        chromatin="dense",
        cytoplasm_her=(0.30, 0.42, 0.0),
        cytoplasm_texture=0.05,
    ),
    "Plasmocytes": CellLook(
        nucleus_um=(6.4, 5.9),
        nucleus_sd_um=0.35,
        lobes=(1, 1),
        cell_um=(11.5, 8.6),
        nucleus_offset_um=2.0,
        nucleus_her=(1.85, 0.30, 0.0),
        chromatin="clock",
        cytoplasm_her=(0.62, 0.46, 0.0),
        cytoplasm_texture=0.08,
    ),
    "Neutrophils": CellLook(
        nucleus_um=(8.6, 6.6),
        nucleus_sd_um=0.4,
        lobes=(3, 5),
        cell_um=(11.0, 10.4),
        nucleus_offset_um=0.0,
        nucleus_her=(2.05, 0.30, 0.0),
        chromatin="dense",
        cytoplasm_her=(0.20, 0.24, 0.0),
        cytoplasm_texture=0.10,
    ),
    "Eosinophils": CellLook(
        nucleus_um=(9.0, 4.4),
        nucleus_sd_um=0.4,
        lobes=(2, 2),
        cell_um=(12.0, 11.0),
        nucleus_offset_um=0.0,
        nucleus_her=(1.95, 0.30, 0.0),
        chromatin="dense",
        cytoplasm_her=(0.02, 0.58, 0.80),
        cytoplasm_texture=0.45,
        granular=True,
    ),
    "Epithelial": CellLook(
        nucleus_um=(10.0, 4.6),
        nucleus_sd_um=0.6,
        lobes=(1, 1),
        cell_um=None,
        nucleus_offset_um=0.0,
        nucleus_her=(1.35, 0.32, 0.0),
        chromatin="vesicular",
    ),
    "Fibroblasts": CellLook(
        nucleus_um=(14.0, 2.8),
        nucleus_sd_um=1.5,
        lobes=(1, 1),
        cell_um=None,
        nucleus_offset_um=0.0,
        nucleus_her=(1.75, 0.32, 0.0),
        chromatin="dense",
    ),
    "Macrophages": CellLook(
        nucleus_um=(8.8, 6.4),
        nucleus_sd_um=0.5,
        lobes=(1, 1),
        cell_um=(17.0, 14.0),
        nucleus_offset_um=0.0,
        nucleus_her=(1.05, 0.30, 0.0),
        chromatin="vesicular",
        cytoplasm_her=(0.22, 0.40, 0.0),
        cytoplasm_texture=0.22,
    ),
    "Red blood cell": CellLook(
        nucleus_um=(7.4, 7.0),
        nucleus_sd_um=0.25,
        lobes=(1, 1),
        cell_um=None,
        nucleus_offset_um=0.0,
        nucleus_her=(0.0, 0.36, 1.05),
        chromatin="none",
    ),
}

#: Lamina propria cell mix (fractions) of normal colonic mucosa.
NORMAL_COMPOSITION: dict[str, float] = {
    "Lymphocytes": 0.34,
    "Plasmocytes": 0.30,
    "Fibroblasts": 0.17,
    "Eosinophils": 0.06,
    "Macrophages": 0.06,
    "Red blood cell": 0.07,
}
#: Lamina propria cell mix of active inflammation (IBD): lymphoplasmacytosis plus granulocytes.
INFLAMED_COMPOSITION: dict[str, float] = {
    "Lymphocytes": 0.36,
    "Plasmocytes": 0.29,
    "Neutrophils": 0.14,
    "Eosinophils": 0.09,
    "Fibroblasts": 0.05,
    "Macrophages": 0.03,
    "Red blood cell": 0.04,
}
#: Lamina propria cells per mm² of stroma before overlap rejection; inflamed areas multiply it.
DEFAULT_DENSITY_PER_MM2: float = 3500.0
INFLAMED_DENSITY_FACTOR: float = 3.5
#: Inflamed crypts: mean intraepithelial neutrophils, chance of a crypt abscess, goblet keep rate.
INTRAEPITHELIAL_NEUTROPHILS_MEAN: float = 1.2
CRYPT_ABSCESS_PROBABILITY: float = 0.3
GOBLET_PROBABILITY: tuple[float, float] = (0.55, 0.2)  # (normal, inflamed)
#: Fraction of crypts lost (dropout) inside inflamed areas.
CRYPT_DROPOUT_INFLAMED: float = 0.2

#: Class names this generator can draw, in a fixed order (index = look id).
LOOK_NAMES: tuple[str, ...] = tuple(CELL_LOOKS)


@dataclass(frozen=True)
class Stain:
    """One slide's stain: (3, 3) OD matrix with rows H, E, R and a background OD (3,)."""

    od_matrix: np.ndarray
    background_od: np.ndarray


def stain_for_seed(seed: int) -> Stain:
    """Reference stain vectors, perturbed per seed (a few % hue, about ±10 % intensity)."""
    rng = np.random.default_rng([seed, 7001])
    base = np.array([HAEMATOXYLIN_OD, EOSIN_OD, RED_OD], dtype=np.float64)
    hue = 1.0 + rng.uniform(-0.06, 0.06, size=(3, 3))
    strength = rng.uniform(0.9, 1.1, size=(3, 1))
    background = np.array(BACKGROUND_OD) * rng.uniform(0.7, 1.3)
    return Stain((base * hue * strength).astype(np.float32), background.astype(np.float32))


def normalised_composition(composition: dict[str, float]) -> dict[str, float]:
    """Fractions summing to 1 over known classes; raises ``ValueError`` on unknown names."""
    unknown = sorted(set(composition) - set(CELL_LOOKS) - {"Epithelial"})
    if unknown:
        raise ValueError(
            f"synthetic cells cannot be of class {unknown}; choose from {sorted(CELL_LOOKS)}"
        )
    if any(value < 0 for value in composition.values()):
        raise ValueError(f"composition fractions must be >= 0, got {composition}")
    total = float(sum(composition.values()))
    if total <= 0:
        raise ValueError("composition needs at least one class with a positive fraction")
    return {name: value / total for name, value in composition.items() if value > 0}
