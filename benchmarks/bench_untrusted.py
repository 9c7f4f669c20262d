"""Untrusted imports within limits: a gzip bomb and a large GeoJSON (issue 14).

Run: ``PYTHONPATH=src python benchmarks/bench_untrusted.py [--bomb-gib 1] [--features 100000]``

1. A ``.geojson.gz`` of ``--bomb-gib`` GiB of JSON (about 1 MB per GiB on disk), read with
   the default limits: refused at 512 MiB; prints the seconds and the peak resident memory.
2. A FeatureCollection of ``--features`` 5-vertex polygons: seconds of ``read_geojson`` and of
   its nesting pre-scan (``json_depth``) and ``json.loads`` alone, to show what the limits cost.
Each part runs in a fresh process so the peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path


def write_bomb(path: Path, gib: int) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (64 << 20)
    with open(path, "wb") as handle:
        handle.write(comp.compress(b'{"type": "FeatureCollection", "features": ['))
        for _ in range(16 * gib):
            handle.write(comp.compress(block))
        handle.write(comp.compress(b"]}") + comp.flush())


def bomb(path: Path) -> None:
    from napari_imilia.errors import DataError
    from napari_imilia.export import read_geojson

    started = time.perf_counter()
    try:
        read_geojson(path)
        outcome = "read (no limit hit)"
    except DataError as error:
        outcome = f"DataError: ...{str(error)[-90:]}"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bomb {path.stat().st_size / 1e6:.1f} MB file: {outcome}")
    print(f"bomb: {seconds:.2f} s, peak RSS {peak:.0f} MB")


def large(path: Path) -> None:
    from napari_imilia.export import read_geojson
    from napari_imilia.trust.json_limits import json_depth

    raw = path.read_bytes()
    started = time.perf_counter()
    json_depth(raw)
    depth_s = time.perf_counter() - started
    started = time.perf_counter()
    json.loads(raw)
    loads_s = time.perf_counter() - started
    started = time.perf_counter()
    objects = read_geojson(path)
    read_s = time.perf_counter() - started
    print(
        f"{len(objects)} features, {len(raw) / 1e6:.1f} MB: json_depth {depth_s:.2f} s, "
        f"json.loads {loads_s:.2f} s, read_geojson (all checks, shapely objects) {read_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bomb-gib", type=int, default=1)
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--part", choices=["bomb", "large"], default=None)
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    if args.part == "bomb":
        return bomb(Path(args.path))
    if args.part == "large":
        return large(Path(args.path))
    folder = Path(tempfile.mkdtemp(prefix="bench-untrusted-"))
    bomb_path = folder / "bomb.geojson.gz"
    write_bomb(bomb_path, args.bomb_gib)
    square = [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]
    feature = {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": square},
        "properties": {"objectType": "detection", "classification": {"name": "Tumor"}},
    }
    large_path = folder / "large.geojson"
    features = ",\n".join(json.dumps(feature) for _ in range(args.features))
    large_path.write_text('{"type": "FeatureCollection", "features": [\n' + features + "]}")
    for part, path in (("bomb", bomb_path), ("large", large_path)):
        subprocess.run([sys.executable, __file__, "--part", part, "--path", str(path)], check=True)


if __name__ == "__main__":
    main()
