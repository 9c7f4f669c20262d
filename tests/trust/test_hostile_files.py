"""Untrusted files end in a clear DataError within bounded memory and time (issue 14).

The hostile corpus is built here at test time in ``tmp_path`` (``hostile``): bombs are kept
cheap by a small ``max_bytes`` limit, never by inflating gigabytes.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pytest

from napari_imilia.errors import DataError
from napari_imilia.export import read_geojson
from napari_imilia.interpret.cells.histoplus_json import read_histoplus_json
from napari_imilia.trust.json_limits import ImportLimits, json_depth, parse_json

SLIDE_WH = (2220, 2967)
MIB = 1 << 20
SMALL = ImportLimits(max_bytes=MIB)


def _feature(coordinates=None, **properties):
    coordinates = coordinates or [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": coordinates},
        "properties": {"objectType": "annotation", **properties},
    }


def _collection(features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """The corpus: one file per hostile case."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    bomb = b'{"type": "FeatureCollection", "features": [' + b" " * (4 * MIB) + b"]}"
    (folder / "bomb.geojson.gz").write_bytes(gzip.compress(bomb, compresslevel=9))
    with zipfile.ZipFile(folder / "bomb.geojson.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.geojson", bomb)
    (folder / "deep.geojson").write_text("[" * 100_000 + "]" * 100_000)
    nested: dict = {"type": "Point", "coordinates": [1, 1]}
    for _ in range(40):
        nested = {"type": "GeometryCollection", "geometries": [nested]}
    (folder / "nested_collections.geojson").write_text(
        _collection([{"type": "Feature", "geometry": nested, "properties": {}}])
    )
    digits = "9" * 5000
    (folder / "huge_int.geojson").write_text(
        _collection([_feature()]).replace("[10, 0]", f"[{digits}, 0]")
    )
    (folder / "huge_measurement.geojson").write_text(
        _collection([_feature(measurements={"x": 1})]).replace('"x": 1', '"x": ' + "7" * 3000)
    )
    (folder / "colour_inf.geojson").write_text(
        _collection([_feature(classification={"name": "Tumor", "color": [math_inf(), 0, 0]})])
    )
    (folder / "colour_range.geojson").write_text(_collection([_feature(color=[300, 0, 0])]))
    far = [[[0, 0], [1e300, 0], [1e300, 1e300], [0, 0]]]
    (folder / "far.geojson").write_text(_collection([_feature(far)]))
    (folder / "many.geojson").write_text(_collection([_feature() for _ in range(30)]))
    return folder


def math_inf() -> float:
    return float("inf")


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth(b'["[[[[", {"a": "\\\\"}, "\\"[["]') == 2
    assert json_depth(b"[" * 500 + b"]" * 500) == 500
    assert json_depth(b"{}") == 1 and json_depth(b"12") == 0


@pytest.mark.parametrize("name", ["bomb.geojson.gz", "bomb.geojson.zip"])
def test_decompression_bomb_is_refused_at_the_limit(hostile: Path, name: str) -> None:
    path = hostile / name
    assert path.stat().st_size < 64 * 1024  # a few KiB inflating to 4 MiB
    with pytest.raises(DataError, match=rf"{name}.*more than 1 MiB .*IMILIA_IMPORT_MAX_MB"):
        read_geojson(path, limits=SMALL)
    assert len(read_geojson(path, limits=ImportLimits(max_bytes=8 * MIB))) == 0


def test_zip_members_are_bounded_together(tmp_path: Path) -> None:
    path = tmp_path / "two.geojson.zip"
    half = _collection([]).encode() + b" " * (600 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.geojson", half)
        archive.writestr("b.geojson", half)
    with pytest.raises(DataError, match="more than 1 MiB"):
        read_geojson(path, limits=SMALL)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("deep.geojson", r"nested 100000 levels deep, over the import limit of 64"),
        ("nested_collections.geojson", r"nested \d+ levels deep"),
        ("huge_int.geojson", r"integer of 5000 digits .*limit of 20 digits"),
        ("huge_measurement.geojson", r"integer of 3000 digits"),
        ("colour_inf.geojson", r"colour \[inf, 0, 0\] is not three numbers 0-255"),
        ("colour_range.geojson", r"colour \[300, 0, 0\] is not three numbers 0-255"),
        ("far.geojson", r"coordinates reach 1e\+300 level-0 px, beyond the import limit"),
    ],
)
def test_hostile_geojson_gives_a_data_error_naming_file_and_limit(
    hostile: Path, name: str, message: str
) -> None:
    with pytest.raises(DataError, match=message) as caught:
        read_geojson(hostile / name, slide_dimensions_px=SLIDE_WH)
    assert name in str(caught.value)


def test_far_coordinates_are_refused_without_a_slide_too(hostile: Path) -> None:
    with pytest.raises(DataError, match=r"beyond the import limit of 2.14748e\+09"):
        read_geojson(hostile / "far.geojson")


def test_feature_count_limit_from_parameter_and_environment(
    hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hostile / "many.geojson"
    assert len(read_geojson(path)) == 30
    with pytest.raises(DataError, match="30 features exceed the import limit of 10"):
        read_geojson(path, limits=ImportLimits(max_objects=10))
    monkeypatch.setenv("IMILIA_IMPORT_MAX_OBJECTS", "29")
    with pytest.raises(DataError, match=r"limit of 29 .*IMILIA_IMPORT_MAX_OBJECTS"):
        read_geojson(path)
    monkeypatch.setenv("IMILIA_IMPORT_MAX_OBJECTS", "lots")
    with pytest.raises(DataError, match="IMILIA_IMPORT_MAX_OBJECTS='lots' is not a number"):
        read_geojson(path)


def test_progress_is_reported_and_the_file_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_imilia.export.geojson_read as geojson_read
    from napari_imilia._napari.geojson_reader import geojson_layer_data

    path = tmp_path / "big.geojson.gz"
    path.write_bytes(gzip.compress(_collection([_feature() for _ in range(2500)]).encode()))
    reads: list[Path] = []
    real = geojson_read.read_json_entries
    monkeypatch.setattr(
        geojson_read, "read_json_entries", lambda p, lim: reads.append(p) or real(p, lim)
    )
    seen: list[tuple[int, int]] = []
    data, _kwargs, kind = geojson_layer_data(path, None, progress=lambda d, t: seen.append((d, t)))
    assert kind == "shapes" and len(data) == 2500
    assert reads == [path]  # decompressed once per import
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_napari_reader_notifies_one_error_and_makes_no_layer(
    hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari.utils.notifications as notifications

    from napari_imilia._napari.geojson_reader import read_geojson_layers

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    monkeypatch.setenv("IMILIA_IMPORT_MAX_MB", "1")
    assert read_geojson_layers(str(hostile / "bomb.geojson.gz")) == [(None,)]
    assert len(shown) == 1 and "bomb.geojson.gz" in shown[0] and "1 MiB" in shown[0]


def test_napari_reader_shows_progress_and_makes_the_layer(tmp_path: Path) -> None:
    from napari_imilia._napari.geojson_reader import read_geojson_layers

    path = tmp_path / "ok.geojson"
    path.write_text(_collection([_feature() for _ in range(1500)]))
    ((data, kwargs, kind),) = read_geojson_layers(str(path))
    assert kind == "shapes" and len(data) == 1500 and kwargs["name"] == "ok"


def test_parse_json_accepts_qupath_nan_but_bounds_everything_else() -> None:
    assert parse_json(b'{"m": NaN}', "x")["m"] != parse_json(b'{"m": NaN}', "x")["m"]
    with pytest.raises(DataError, match="not valid JSON"):
        parse_json(b'{"a": ', "x")
    with pytest.raises(DataError, match="not UTF-8"):
        parse_json(b'"\xff\xfe\xfa"', "x")


# ------------------------------------------------------------------ HistoPLUS JSON
def _histoplus(masks, **tile) -> dict:
    return {
        "model_name": "histoplus",
        "inference_mpp": 0.5,
        "cell_masks": [
            {"x": 1, "y": 2, "level": 11, "width": 224, "height": 224, "masks": masks, **tile}
        ],
    }


def _cell(**changes) -> dict:
    cell = {
        "cell_id": 1,
        "cell_type": "Lymphocytes",
        "confidence": 0.9,
        "coordinates": [[10, 10], [20, 10], [20, 20], [10, 20]],
        "centroid": [15, 15],
    }
    return {**cell, **changes}


HOSTILE_HISTOPLUS = {
    "confidence_inf.json": (json.dumps(_histoplus([_cell(confidence=float("inf"))])), "not 0-1"),
    "confidence_big.json": (json.dumps(_histoplus([_cell(confidence=3.5)])), "is 3.5, not 0-1"),
    "far_polygon.json": (
        json.dumps(_histoplus([_cell(coordinates=[[0, 0], [1e300, 0], [0, 1e300]])])),
        "beyond the limit of",
    ),
    "far_tile.json": (json.dumps(_histoplus([_cell()], x=10**15)), "beyond the import limit"),
    "negative_tile.json": (json.dumps(_histoplus([_cell()], width=-224)), "empty size"),
    "huge_id.json": (
        json.dumps(_histoplus([_cell()])).replace('"cell_id": 1', '"cell_id": ' + "9" * 4000),
        "integer of 4000 digits",
    ),
    "deep.json": ("[" * 50_000 + "]" * 50_000, "nested 50000 levels deep"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HISTOPLUS))
def test_hostile_histoplus_json_gives_a_data_error(tmp_path: Path, name: str) -> None:
    text, message = HOSTILE_HISTOPLUS[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_histoplus_json(path, level0_dimensions=SLIDE_WH)
    assert name in str(caught.value)


def test_histoplus_cell_count_limit_and_progress(tmp_path: Path) -> None:
    path = tmp_path / "cells.json"
    path.write_text(json.dumps(_histoplus([_cell(cell_id=i) for i in range(5)])))
    seen: list[tuple[int, int]] = []
    cells = read_histoplus_json(
        path, level0_dimensions=SLIDE_WH, progress=lambda d, t: seen.append((d, t))
    )
    assert len(cells) == 5 and seen[-1] == (1, 1)
    with pytest.raises(DataError, match="5 cells exceed the import limit of 4"):
        read_histoplus_json(path, level0_dimensions=SLIDE_WH, limits=ImportLimits(max_objects=4))
    bomb = tmp_path / "cells.json.gz"
    bomb.write_bytes(gzip.compress(b"{" + b" " * (2 * MIB) + b"}"))
    with pytest.raises(DataError, match="more than 1 MiB"):
        read_histoplus_json(bomb, level0_dimensions=SLIDE_WH, limits=SMALL)


@pytest.fixture(scope="module")
def predicted(small_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_HE.svs scored by a tiny model: the results folder `imilia inspect` reads."""
    import torch

    from napari_imilia.mil import create_model, save_model
    from napari_imilia.predict.slide import predict_slide

    root = tmp_path_factory.mktemp("predicted")
    torch.manual_seed(0)
    model = create_model("max-mil", 64, hidden=[8])
    path = save_model(
        model, root / "m.safetensors", extractor="imilia-stain-stats", mpp=2.0, tile_px=224
    )
    predict_slide(small_svs, root / "results", model_path=path, progress=False)
    return root / "results"


@pytest.mark.parametrize("name", ["confidence_inf.json", "huge_id.json", "deep.json"])
def test_cli_inspect_with_a_hostile_histoplus_json_is_one_line_and_exit_2(
    small_svs: Path,
    predicted: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    from napari_imilia.cli import main

    path = tmp_path / name
    path.write_text(HOSTILE_HISTOPLUS[name][0])
    args = ["inspect", str(small_svs), "--out", str(tmp_path / "out"), "--results", str(predicted)]
    args += ["--cell-backend", "histoplus-json", "--histoplus-json", str(path)]
    code = main([*args, "--tiles", "top:1", "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error" in line]  # beside the tqdm bar
    assert len(errors) == 1 and name in errors[0] and errors[0].startswith("imilia inspect: error:")
    assert "Traceback" not in err
