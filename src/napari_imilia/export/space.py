"""Is a set of geometries in level-0 pixels of this slide, or in another coordinate space?

Imported annotations sometimes come in µm, in normalised 0-1 coordinates, with a y-up origin
or from another slide; placed on the slide as level-0 pixels they would silently land in the
wrong place. ``check_coordinate_space`` recognises these cases and says which space the
coordinates look like. (µm coordinates of a slide finer than 1 µm/px fall inside the slide
and cannot be told apart from a small annotation near its top-left corner.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely

from napari_imilia.errors import DataError

#: Objects may reach this fraction of the slide's larger side (at least 64 px) past its edges.
EDGE_MARGIN_FRACTION = 0.02


def check_coordinate_space(
    geometries: Sequence[shapely.Geometry],
    slide_dimensions_px: tuple[int, int],
    *,
    mpp: float | None = None,
    source: str = "GeoJSON",
) -> None:
    """Raise ``DataError`` unless ``geometries`` plausibly lie in level-0 pixels of the slide.

    ``slide_dimensions_px`` is the slide's level-0 (width, height); ``mpp`` its µm/px, used
    to recognise µm coordinates. Objects may reach ``EDGE_MARGIN_FRACTION`` of the slide's
    larger side (at least 64 px) beyond its edges.
    """
    if not geometries:
        return
    width, height = (float(v) for v in slide_dimensions_px)
    if not (width > 0 and height > 0):
        raise DataError(f"slide dimensions must be positive level-0 px, got {slide_dimensions_px}")
    bounds = shapely.bounds(np.asarray(geometries, dtype=object))
    min_x, min_y = bounds[:, 0].min(), bounds[:, 1].min()
    max_x, max_y = bounds[:, 2].max(), bounds[:, 3].max()
    extent = f"x {min_x:.6g}..{max_x:.6g}, y {min_y:.6g}..{max_y:.6g}"
    slide = f"the slide is {width:.0f} x {height:.0f} level-0 px"
    if max(width, height) >= 100 and min(min_x, min_y) >= 0 and max(max_x, max_y) <= 1.0:
        raise DataError(
            f"{source}: all coordinates lie in 0..1 ({extent}) but {slide}; they look like "
            "normalised 0-1 coordinates: multiply x by the slide width and y by its height, or "
            "export level-0 pixel coordinates"
        )
    margin = max(64.0, EDGE_MARGIN_FRACTION * max(width, height))
    outside = (
        (bounds[:, 0] < -margin)
        | (bounds[:, 1] < -margin)
        | (bounds[:, 2] > width + margin)
        | (bounds[:, 3] > height + margin)
    )
    if not outside.any():
        return
    if min_y < -margin and max_y <= margin:
        looks_like = "a bottom-left origin with y pointing up (negate y)"
    elif (
        mpp is not None
        and mpp > 1
        and max_x <= width * mpp + margin
        and max_y <= height * mpp + margin
    ):
        looks_like = f"µm (the slide is {width * mpp:.0f} x {height * mpp:.0f} µm); divide by mpp"
    else:
        looks_like = "pixels of a different, larger image: check the file belongs to this slide"
    raise DataError(
        f"{source}: {int(outside.sum())} of {len(geometries)} objects lie outside the slide "
        f"({extent}; {slide}); the coordinates look like {looks_like}"
    )
