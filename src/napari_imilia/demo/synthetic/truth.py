"""Ground-truth epithelium of any window of a synthetic scene, without drawing its pixels.

The epithelium of a scene is the union of its ring bands (``inner <= ρ <= outer``) inside
the tissue (a surface ring also cuts the tissue off beyond its luminal edge). This is the
same geometry, evaluated the same way, as ``raster.rasterise(...).epithelium_mask``, so at
the scene's own pixel size the masks are identical; only the stain planes are not drawn,
which makes it about ten times cheaper than rendering.
"""

from __future__ import annotations

import math

import numpy as np

from napari_imilia.demo.synthetic.scene import Scene

Level0Box = tuple[int, int, int, int]
"""(x, y, width, height) in pixels of the scene (level 0 of a synthetic slide)."""


def epithelium_mask_level0(scene: Scene, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """(height, width) bool epithelium of the scene window whose top-left pixel is (x0, y0).

    Equal to ``rasterise(scene, x0, y0, width, height).epithelium_mask``.
    """
    x0, y0, width, height = int(x0), int(y0), int(width), int(height)
    tissue = scene.tissue.mask(x0, y0, width, height)
    epithelium = np.zeros((height, width), dtype=bool)
    rings = scene.rings
    if len(rings) == 0 or width <= 0 or height <= 0:
        return epithelium
    for index, window, rho, inner, outer in rings.windows(x0, y0, width, height):
        if rings.inverted[index]:
            tissue[window] &= rho <= outer
        epithelium[window] |= (rho >= inner) & (rho <= outer)
    return epithelium & tissue


def epithelium_truth(scene: Scene, level0_box: Level0Box, mpp: float | None = None) -> np.ndarray:
    """True epithelium of a level-0 box, as an (H, W) bool mask at ``mpp`` µm/px.

    ``level0_box`` = (x, y, width, height) in scene pixels (level 0, ``scene.mpp`` µm/px);
    ``mpp`` defaults to ``scene.mpp``. The output has ``round(width * scene.mpp / mpp)``
    columns (rows likewise), the grid ``read_tile_at_mpp`` reads; an output pixel is
    epithelium when at least half of its level-0 area is (area-weighted box resampling).
    """
    x0, y0, width, height = (int(v) for v in level0_box)
    if width <= 0 or height <= 0:
        raise ValueError(f"level-0 box must have a positive size, got {level0_box}")
    level0 = epithelium_mask_level0(scene, x0, y0, width, height)
    target = scene.mpp if mpp is None else float(mpp)
    if not target > 0:
        raise ValueError(f"mpp must be positive, got {mpp}")
    out_w = max(1, math.floor(width * scene.mpp / target + 0.5))
    out_h = max(1, math.floor(height * scene.mpp / target + 0.5))
    if (out_h, out_w) == level0.shape:
        return level0
    from PIL import Image

    image = Image.fromarray(level0.astype(np.uint8) * 255)
    resized = np.asarray(image.resize((out_w, out_h), Image.Resampling.BOX))
    return resized >= 128
