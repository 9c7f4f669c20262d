"""Property-based fuzzing (hypothesis) of the untrusted-input parsers and the coordinate math
(issue 14). Budgets are small and fixed (``max_examples``, no deadline, derandomised) so the
whole module runs in seconds and CI results are reproducible."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_imilia.errors import CheckpointError, DataError
from napari_imilia.export import read_geojson
from napari_imilia.export.geojson_read import ImportedObject
from napari_imilia.export.layers import level0_to_world, world_um_to_level0_xy
from napari_imilia.features.vit import H0_MINI
from napari_imilia.features.vit.config import scaled_down
from napari_imilia.features.vit.keys import to_timm_keys
from napari_imilia.interpret.cells.histoplus_json import (
    deepzoom_downsample,
    deepzoom_level_count,
    read_histoplus_json,
)
from napari_imilia.tiling.grid import box_tissue_fraction, round_half_up
from napari_imilia.tiling.tissue import TissueMask
from napari_imilia.trust.checkpoints import unwrap_nested
from napari_imilia.trust.json_limits import ImportLimits
from napari_imilia.trust.paths import path_inside, safe_name

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLIDE_WH = (2000, 1500)
LIMITS = ImportLimits(max_bytes=1 << 20, max_objects=200)

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.sampled_from(
                [
                    "type",
                    "coordinates",
                    "geometry",
                    "properties",
                    "color",
                    "classification",
                    "name",
                    "measurements",
                    "geometries",
                    "features",
                    "id",
                    "nucleusGeometry",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=40,
)
positions = st.lists(st.tuples(numbers, numbers).map(list), min_size=0, max_size=8)
geometries = st.one_of(
    st.builds(lambda p: {"type": "Point", "coordinates": p[0] if p else []}, positions),
    st.builds(lambda p: {"type": "LineString", "coordinates": p}, positions),
    st.builds(lambda p: {"type": "Polygon", "coordinates": [p + p[:1]]}, positions),
    st.builds(lambda p: {"type": "MultiPoint", "coordinates": p}, positions),
    json_values,
)
features = st.builds(
    lambda g, props: {"type": "Feature", "geometry": g, "properties": props},
    geometries,
    st.one_of(
        st.dictionaries(
            st.sampled_from(["name", "color", "classification", "measurements"]),
            json_values,
            max_size=4,
        ),
        json_values,
    ),
)
documents = st.one_of(
    st.builds(
        lambda fs: {"type": "FeatureCollection", "features": fs}, st.lists(features, max_size=6)
    ),
    json_values,
)


def _write(text: str, suffix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="imilia-fuzz-"))
    path = folder / f"fuzz{suffix}"
    path.write_text(text, encoding="utf-8")
    return path


@FUZZ
@given(documents)
def test_geojson_import_returns_objects_or_a_data_error(document) -> None:
    path = _write(json.dumps(document), ".geojson")
    try:
        objects = read_geojson(path, slide_dimensions_px=SLIDE_WH, limits=LIMITS)
    except DataError as error:
        assert str(path) in str(error) or path.name in str(error)
        return
    bound = LIMITS.coordinate_bound_px(SLIDE_WH)
    for obj in objects:
        assert isinstance(obj, ImportedObject)
        if not obj.geometry.is_empty:
            assert all(math.isfinite(v) and abs(v) <= bound for v in obj.geometry.bounds)
        if obj.color is not None:
            assert all(0 <= c <= 255 for c in obj.color)


cells = st.fixed_dictionaries(
    {
        "cell_id": numbers,
        "cell_type": st.sampled_from(["Lymphocytes", "Plasmocytes", "nonsense", ""]),
        "confidence": st.one_of(st.none(), numbers),
        "coordinates": st.one_of(positions, json_values),
        "centroid": st.one_of(st.tuples(numbers, numbers).map(list), json_values),
    }
)
tiles = st.fixed_dictionaries(
    {
        "x": numbers,
        "y": numbers,
        "level": st.one_of(st.integers(-2, 14), numbers),
        "width": st.sampled_from([224, 224.0, 0, -1, 1e300]),
        "height": st.sampled_from([224, 224.0, 0]),
        "masks": st.lists(st.one_of(cells, json_values), max_size=4),
    }
)
histoplus_documents = st.one_of(
    st.fixed_dictionaries(
        {
            "model_name": st.text(max_size=5),
            "inference_mpp": numbers,
            "cell_masks": st.lists(st.one_of(tiles, json_values), max_size=3),
        }
    ),
    json_values,
)


@FUZZ
@given(histoplus_documents)
def test_histoplus_import_returns_cells_or_a_data_error(document) -> None:
    path = _write(json.dumps(document), ".json")
    try:
        result = read_histoplus_json(path, level0_dimensions=SLIDE_WH, limits=LIMITS)
    except DataError as error:
        assert path.name in str(error)
        return
    assert np.isfinite(result.centroids_xy).all()
    confidences = result.confidences[~np.isnan(result.confidences)]
    assert ((confidences >= 0) & (confidences <= 1)).all()
    bound = LIMITS.coordinate_bound_px(SLIDE_WH)
    assert all(np.abs(p).max() <= bound for p in result.polygons)


TINY_VIT = scaled_down(H0_MINI)
key_parts = st.sampled_from(
    [
        "module.",
        "model.",
        "backbone.",
        "encoder.layer.0.",
        "blocks.0.",
        "blocks.0.1.",
        "attention.attention.query.",
        "attention.attention.key.",
        "attention.attention.value.",
        "attn.qkv.",
        "mlp.w12.",
        "mlp.fc1.",
        "head.",
        "embeddings.",
        "layernorm.",
        "pos_embed",
        "cls_token",
        "register_tokens",
        "weight",
        "bias",
        "mask_token",
    ]
)
keys = st.lists(key_parts, min_size=1, max_size=4).map("".join)


@FUZZ
@given(st.dictionaries(keys, st.integers(1, 4), min_size=0, max_size=10), st.integers(0, 3))
def test_checkpoint_key_mapping_never_crashes_and_ignores_wrappers(names, wraps) -> None:
    state = {name: torch.zeros(size, 4) for name, size in names.items()}
    try:
        plain, fmt = to_timm_keys(dict(state), TINY_VIT)
    except (RuntimeError, CheckpointError):  # q/k/v of mismatched sizes cannot be concatenated
        return
    assert fmt in ("timm", "hf_vit", "hf_dinov2", "dinov2")
    assert all(isinstance(v, torch.Tensor) for v in plain.values())
    wrapped: object = {f"module.{k}": v for k, v in state.items()}
    for _ in range(wraps):
        wrapped = {"state_dict": wrapped}
    again, _ = to_timm_keys(wrapped, TINY_VIT)
    if state:
        assert sorted(again) == sorted(plain)


@FUZZ
@given(st.integers(0, 6), st.integers(0, 6), st.sampled_from(["state_dict", "model", "other"]))
def test_unwrapping_terminates_on_any_nesting_or_cycle(depth, loop_at, key) -> None:
    root: dict = {}
    node = root
    chain = [root]
    for _ in range(depth):
        child: dict = {}
        node[key] = child
        node = child
        chain.append(child)
    node["w"] = torch.zeros(1)
    if loop_at <= depth and key != "other":
        node.pop("w")
        node[key] = chain[loop_at]
    try:
        unwrap_nested(root, ("state_dict", "model"), "fuzz")
    except CheckpointError as error:
        assert "contains itself" in str(error) or "levels deep" in str(error)


@FUZZ
@given(
    st.floats(0.05, 20.0),
    st.lists(st.tuples(st.floats(-1e7, 1e7), st.floats(-1e7, 1e7)), min_size=1, max_size=20),
)
def test_level0_and_world_coordinates_round_trip(mpp, points) -> None:
    xy = np.array(points, dtype=np.float64)
    back = world_um_to_level0_xy(level0_to_world(xy, mpp), mpp)
    np.testing.assert_allclose(back, xy, rtol=1e-9, atol=1e-6)


@FUZZ
@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.floats(0.5, 8.0),
    st.integers(1, 40),
    st.lists(st.tuples(st.integers(-20, 80), st.integers(-20, 80)), min_size=1, max_size=10),
    st.integers(0, 2**16 - 1),
)
def test_box_tissue_fraction_is_a_fraction_and_matches_pixel_centres(
    rows, cols, per_px, size_px, corners, seed
) -> None:
    mask = np.random.default_rng(seed).random((rows, cols)) > 0.5
    tissue = TissueMask(mask, 1.0, per_px, 0.1, 0.1, 0.0)
    x = np.array([c[0] for c in corners], dtype=np.float64)
    y = np.array([c[1] for c in corners], dtype=np.float64)
    fraction = box_tissue_fraction(tissue, x, y, size_px)
    assert ((fraction >= 0) & (fraction <= 1)).all()
    centres_x = (np.arange(cols) + 0.5) * per_px
    centres_y = (np.arange(rows) + 0.5) * per_px
    for i in range(len(x)):
        in_x = (centres_x >= x[i]) & (centres_x < x[i] + size_px)
        in_y = (centres_y >= y[i]) & (centres_y < y[i] + size_px)
        n_x = int(
            np.sum((np.arange(-100, 200) + 0.5) * per_px >= x[i])
            - np.sum((np.arange(-100, 200) + 0.5) * per_px >= x[i] + size_px)
        )
        n_y = int(
            np.sum((np.arange(-100, 200) + 0.5) * per_px >= y[i])
            - np.sum((np.arange(-100, 200) + 0.5) * per_px >= y[i] + size_px)
        )
        if n_x > 0 and n_y > 0:  # the square holds pixel centres: count them (outside = 0)
            expected = mask[np.ix_(in_y, in_x)].sum() / (n_x * n_y)
            assert math.isclose(fraction[i], expected, abs_tol=1e-12)


@FUZZ
@given(st.floats(-1e6, 1e6))
def test_round_half_up_rounds_halves_up(value) -> None:
    result = round_half_up(value)
    assert result - 0.5 <= value < result + 0.5


@FUZZ
@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_deepzoom_levels_halve_down_to_one_pixel(width, height) -> None:
    count = deepzoom_level_count((width, height))
    assert 2 ** (count - 2) < max(width, height) <= 2 ** (count - 1) or count == 1
    assert deepzoom_downsample(count - 1, (width, height)) == 1.0
    assert deepzoom_downsample(0, (width, height)) == 2.0 ** (count - 1)


@FUZZ
@given(st.text(max_size=300))
def test_any_name_becomes_one_safe_component(name) -> None:
    safe = safe_name(name)
    assert path_inside("/results", safe).parent == Path("/results").resolve()
    assert safe == safe_name(safe)
    assert len(safe.encode("utf-8", "surrogatepass")) <= 100
