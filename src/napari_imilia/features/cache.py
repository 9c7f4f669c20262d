"""Per-slide feature caches in the TRIDENT/CLAM HDF5 layout.

One ``<slide_id>.h5`` per slide with datasets ``features`` (float32, N x D) and ``coords``
(int64, N x 2, level-0 top-left x, y in pixels), plus attributes describing how the features
were made (extractor name, weights hash, MPP, tile size...). ``cache_key`` attributes decide
whether a cache may be reused: any difference means the cache is stale.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from napari_imilia.errors import DataError, FeatureCacheError
from napari_imilia.files import atomic_path
from napari_imilia.trust.json_limits import parse_json

#: Attributes that must match exactly for a cache to be reused.
CACHE_KEY_ATTRS: tuple[str, ...] = (
    "extractor",
    "extractor_weights_sha256",
    "target_mpp",
    "tile_px",
    "tiling_sha256",
)


@dataclass
class FeatureBag:
    """Tile embeddings of one slide: ``features`` (N x D float32), ``coords`` (N x 2, level-0)."""

    features: np.ndarray
    coords: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tiles(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def _encode_attr(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value)
    if value is None:
        return "null"
    return value


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if (isinstance(value, str) and value[:1] in "[{") or value == "null":
        try:  # within the import limits: a cache file may come from a shared results folder
            return parse_json(value.encode("utf-8", "surrogatepass"), "a feature-file attribute")
        except DataError:
            return value
    return value


def write_features(
    path: str | Path, features: np.ndarray, coords: np.ndarray, attrs: Mapping[str, Any]
) -> Path:
    """Write a feature cache atomically. ``coords`` are level-0 top-left (x, y) pixels."""
    features = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords, dtype=np.int64)
    if features.ndim != 2 or coords.shape != (features.shape[0], 2):
        raise FeatureCacheError(
            f"features must be N x D and coords N x 2; got {features.shape} and {coords.shape}"
        )
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("features", data=features)
        h5.create_dataset("coords", data=coords)
        for key, value in attrs.items():
            h5.attrs[key] = _encode_attr(value)
        h5.attrs["n_tiles"] = features.shape[0]
        h5.attrs["feature_dim"] = features.shape[1]
    return path


def read_features(path: str | Path) -> FeatureBag:
    """Read a feature cache written by us, TRIDENT or CLAM; raises ``FeatureCacheError``."""
    path = Path(path)
    if not path.is_file():
        raise FeatureCacheError(f"feature file not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            if "features" not in h5:
                raise FeatureCacheError(f"{path} has no 'features' dataset; is it a feature file?")
            if "coords" not in h5:
                raise FeatureCacheError(
                    f"{path} has no 'coords' dataset; re-extract features with `imilia predict` "
                    "or a TRIDENT/CLAM version that stores tile coordinates"
                )
            features = np.asarray(h5["features"], dtype=np.float32)
            coords = np.asarray(h5["coords"])
            attrs = {key: _decode_attr(value) for key, value in h5.attrs.items()}
    except OSError as error:
        raise FeatureCacheError(f"{path} is not a readable HDF5 feature file ({error})") from error
    # CLAM/TRIDENT sometimes store a leading batch axis of 1.
    if features.ndim == 3 and features.shape[0] == 1:
        features = features[0]
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if features.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 2:
        raise FeatureCacheError(
            f"{path}: expected features N x D and coords N x 2, got {features.shape} and "
            f"{coords.shape}"
        )
    if coords.shape[0] != features.shape[0]:
        raise FeatureCacheError(
            f"{path}: {features.shape[0]} feature rows but {coords.shape[0]} coordinates"
        )
    return FeatureBag(features=features, coords=coords.astype(np.int64), attrs=attrs)


def cache_matches(path: str | Path, expected: Mapping[str, Any]) -> bool:
    """True when ``path`` exists and each ``CACHE_KEY_ATTRS`` entry equals ``expected``'s."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as h5:
            stored = {key: _decode_attr(value) for key, value in h5.attrs.items()}
    except OSError:
        return False
    for key in CACHE_KEY_ATTRS:
        if key not in expected:
            continue
        if key not in stored:
            return False
        a, b = stored[key], expected[key]
        if isinstance(a, float) or isinstance(b, float):
            if not np.isclose(float(a), float(b), rtol=0, atol=1e-9):
                return False
        elif a != b:
            return False
    return True
