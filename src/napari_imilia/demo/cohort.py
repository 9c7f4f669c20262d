"""The synthetic training cohort of the bundled demo model: which slides, with which labels.

:func:`demo_cohort_recipe` draws, from one seed, a balanced list of small synthetic slides
(:class:`CohortSlide`): label 1 slides have 1-3 planted inflamed areas (dense lymphocytes,
plasmocytes and neutrophils in the lamina propria, injured crypts; see
``napari_imilia.demo.synthetic``), label 0 slides have none. Slides differ in generator seed (so in
tissue outline, crypt and cell layout and stain colour), size and number of tissue pieces
(matched between the classes). Slide seeds start at :data:`SLIDE_SEED_BASE`, so the sample
slide (seed 0) is never part of the cohort. :func:`write_cohort` writes the slides
(``write_synthetic_slide``, with their ``.truth.json``) and a ``slide_id,label`` CSV. Same
arguments, same files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import DataError
from napari_imilia.files import write_text_atomic

#: Bump when the recipe's draws change (recorded in the demo model's provenance).
RECIPE_VERSION = 2
#: Generator seeds of the cohort's slides start here (the sample slide uses seed 0).
SLIDE_SEED_BASE = 1000
#: Level-0 (width, height) choices in px at :data:`COHORT_MPP`.
SIZE_CHOICES_PX: tuple[tuple[int, int], ...] = (
    (2048, 2048),
    (2560, 2048),
    (3072, 2048),
    (2560, 2560),
    (4096, 2560),
)
#: Slides at least this wide (px) may hold two tissue pieces side by side.
TWO_PIECES_MIN_WIDTH_PX = 3072
INFLAMED_REGIONS_RANGE: tuple[int, int] = (1, 3)
COHORT_MPP = 0.5
LEVEL_DOWNSAMPLES: tuple[int, ...] = (1, 4, 16)


@dataclass(frozen=True)
class CohortSlide:
    """One slide of the cohort: its id, label (1 = inflamed) and generator arguments."""

    slide_id: str
    label: int
    seed: int
    width_px: int
    height_px: int
    n_pieces: int
    n_inflamed_regions: int


def demo_cohort_recipe(n_slides: int = 48, seed: int = 0) -> list[CohortSlide]:
    """``n_slides`` slides (even, >= 4), half label 1, half label 0, drawn from ``seed``.

    Slides come in pairs (2k: label 1, 2k + 1: label 0) of the same size and number of
    tissue pieces, so neither tells the classes apart; the generator seed of slide ``i`` is
    ``SLIDE_SEED_BASE + 1000 * seed + i``. Slide ``i`` depends only on (``seed``, ``i``): a
    larger cohort extends a smaller one.
    """
    n_slides, seed = int(n_slides), int(seed)
    if n_slides < 4 or n_slides % 2:
        raise DataError(f"the demo cohort needs an even number of slides >= 4, got {n_slides}")
    if seed < 0:
        raise DataError(f"the cohort seed must be >= 0, got {seed}")
    slides = []
    for index in range(n_slides):
        pair = np.random.default_rng([seed, index // 2, 4242])  # shared by slides 2k, 2k + 1
        width_px, height_px = SIZE_CHOICES_PX[int(pair.integers(len(SIZE_CHOICES_PX)))]
        n_pieces = 1
        if width_px >= TWO_PIECES_MIN_WIDTH_PX:
            n_pieces = int(pair.integers(1, 3))
        label = 1 - index % 2
        low, high = INFLAMED_REGIONS_RANGE
        n_regions = int(np.random.default_rng([seed, index, 4243]).integers(low, high + 1))
        n_regions = n_regions if label else 0
        kind = "inflamed" if label else "normal"
        slides.append(
            CohortSlide(
                slide_id=f"demo_s{seed}_{index:03d}_{kind}",
                label=label,
                seed=SLIDE_SEED_BASE + 1000 * seed + index,
                width_px=width_px,
                height_px=height_px,
                n_pieces=n_pieces,
                n_inflamed_regions=n_regions,
            )
        )
    return slides


def recipe_summary(recipe: Sequence[CohortSlide], seed: int) -> dict[str, Any]:
    """A JSON-able description of the recipe (for the model's provenance record)."""
    labels = np.array([s.label for s in recipe])
    return {
        "recipe": "napari_imilia.demo.cohort.demo_cohort_recipe",
        "recipe_version": RECIPE_VERSION,
        "cohort_seed": int(seed),
        "n_slides": len(recipe),
        "n_label_1": int(labels.sum()),
        "n_label_0": int((labels == 0).sum()),
        "slide_seed_rule": f"{SLIDE_SEED_BASE} + 1000 * cohort_seed + slide index",
        "slide_seed_range": [min(s.seed for s in recipe), max(s.seed for s in recipe)],
        "mpp": COHORT_MPP,
        "sizes_px": [f"{w}x{h}" for w, h in sorted({(s.width_px, s.height_px) for s in recipe})],
        "pieces_per_slide": sorted({s.n_pieces for s in recipe}),
        "inflamed_regions_per_label_1_slide": list(INFLAMED_REGIONS_RANGE),
        "inflamed_region_side_um": [300, 650],
        "label_1": "1-3 planted inflamed areas (dense lymphocytes, plasmocytes, neutrophils "
        "in the lamina propria; intraepithelial neutrophils, crypt abscesses, crypt loss)",
        "label_0": "normal mucosa only",
    }


def _complete(path: Path, slide: CohortSlide) -> bool:
    """Whether ``path`` is this recipe slide, fully written (SHA-256 as in its truth file)."""
    from napari_imilia.demo.sample import is_complete_slide

    return is_complete_slide(
        path, seed=slide.seed, width_px=slide.width_px, height_px=slide.height_px
    )


def write_cohort(
    recipe: Sequence[CohortSlide], out_dir: str | os.PathLike[str]
) -> tuple[list[Path], Path]:
    """Write ``out_dir/slides/<slide_id>.svs`` (+ truth) and ``out_dir/labels.csv``.

    Slides already there that match the recipe and are complete (SHA-256 as in their truth
    file) are kept. Returns the slide paths (recipe order) and the labels file.
    """
    from napari_imilia.demo.sample import read_truth, write_synthetic_slide

    out_dir = Path(out_dir)
    paths = []
    for slide in recipe:
        path = out_dir / "slides" / f"{slide.slide_id}.svs"
        if not _complete(path, slide):
            write_synthetic_slide(
                path,
                width_px=slide.width_px,
                height_px=slide.height_px,
                mpp=COHORT_MPP,
                seed=slide.seed,
                inflamed_regions="random" if slide.label else (),
                n_inflamed_regions=max(slide.n_inflamed_regions, 1),
                levels=LEVEL_DOWNSAMPLES,
                n_pieces=slide.n_pieces,
            )
        if bool(read_truth(path)["inflamed"]) != bool(slide.label):
            raise DataError(f"{path.name}: its truth file disagrees with label {slide.label}")
        paths.append(path)
    rows = "".join(f"{s.slide_id},{s.label}\n" for s in recipe)
    labels_path = write_text_atomic(out_dir / "labels.csv", "slide_id,label\n" + rows)
    return paths, labels_path
