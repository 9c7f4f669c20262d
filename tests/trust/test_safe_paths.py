"""Slide ids that are safe folder names, writes that stay inside their root, and output
folders checked for writing before any work (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from napari_imilia.cli import main
from napari_imilia.errors import ImiliaError
from napari_imilia.mil import create_model, save_model
from napari_imilia.slide import slide_id_for
from napari_imilia.trust.paths import (
    MAX_NAME_BYTES,
    check_writable_folder,
    path_inside,
    safe_name,
)

#: Slide file names that used to escape --out, write loose files, or crash.
HOSTILE_NAMES = ["...svs", "..svs", "x" * 250 + ".svs", "a\nb\x07c.svs", ".hidden.svs"]


@pytest.mark.parametrize(
    "name",
    ["..", ".", "...", "", "a/b", "a\\b", "../../etc", "a\x00b", "\n", "x" * 300, "é" * 200],
)
def test_safe_name_is_one_bounded_component(name: str) -> None:
    safe = safe_name(name)
    assert safe not in ("", ".", "..") and not safe.startswith(".")
    assert "/" not in safe and "\\" not in safe
    assert all(ord(c) >= 32 for c in safe)
    assert len(safe.encode("utf-8")) <= MAX_NAME_BYTES
    assert safe_name(safe) == safe  # already safe names are kept as they are
    assert path_inside("/tmp/root", safe) == Path("/tmp/root").resolve() / safe


def test_clean_names_are_kept_and_cleaned_ones_stay_unique() -> None:
    assert slide_id_for("/data/CMU-1.svs") == "CMU-1"
    assert slide_id_for("/data/case 12 HE.ome.tiff") == "case 12 HE"
    ids = [slide_id_for(f"/d/{n}") for n in [*HOSTILE_NAMES, "x" * 251 + ".svs"]]
    assert len(set(ids)) == len(ids)
    assert slide_id_for("/d/...svs").startswith("slide-")


@pytest.mark.parametrize("parts", [("..",), (".",), ("/etc",), ("a", "..", ".."), ("a/../..",)])
def test_path_inside_refuses_to_leave_the_root(parts: tuple[str, ...], tmp_path: Path) -> None:
    with pytest.raises(ImiliaError, match="outside the output folder"):
        path_inside(tmp_path, *parts)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("max-mil", 64, hidden=[8])
    folder = tmp_path_factory.mktemp("model")
    return save_model(
        model, folder / "m.safetensors", extractor="imilia-stain-stats", mpp=2.0, tile_px=224
    )


@pytest.fixture(scope="module")
def hostile_slides(small_svs: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("hostile_slides")
    slides = []
    for name in HOSTILE_NAMES:
        (folder / name).symlink_to(small_svs)
        slides.append(folder / name)
    return slides


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_cohort_of_hostile_names_stays_inside_out(
    hostile_slides: list[Path], model_path: Path, tmp_path: Path
) -> None:
    from napari_imilia.cohort.run import predict_cohort
    from napari_imilia.review.session import ReviewSession

    parent = tmp_path / "parent"
    out = parent / "out"
    table = predict_cohort(hostile_slides, out, model_path=model_path, progress=False)
    assert list(table["status"]) == ["ok"] * len(hostile_slides), table["error"].tolist()
    assert sorted(p.name for p in parent.iterdir()) == ["out"]  # nothing beside --out
    expected = {slide_id_for(s) for s in hostile_slides}
    assert set(table["slide_id"]) == expected
    folders = {p.name for p in out.iterdir() if p.is_dir()} - {"features", ".imilia"}  # locks
    assert folders == expected
    assert {p.name for p in out.iterdir() if p.is_file()} == {"cohort.csv"}
    for slide_id in expected:
        assert {"tiles.csv", "slide.json", "heatmap.png", "tiles.geojson"} <= {
            p.name for p in (out / slide_id).iterdir()
        }
        assert (out / "features" / f"{slide_id}.h5").is_file()
    summary = pd.read_csv(out / "cohort.csv", dtype={"slide_id": str})
    assert set(summary["slide_id"]) == expected

    # the review store of the `...svs` slide lands in its own folder, not above the root
    session = ReviewSession.open(hostile_slides[0], out)
    assert session.results_dir == out.resolve() / slide_id_for(hostile_slides[0])
    assert session.prediction is not None  # the cached prediction is found again
    session.add_review(verdict="agree", tile_id=str(session.tiles["tile_id"].iloc[0]))
    assert (session.results_dir / "review.json").is_file()
    assert sorted(p.name for p in parent.iterdir()) == ["out"]


def test_unwritable_out_fails_before_any_feature_is_extracted(
    small_svs: Path, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import napari_imilia.features.extract as features
    from napari_imilia.predict.slide import predict_slide

    def never(*args, **kwargs):
        raise AssertionError("features were extracted before the output folder was checked")

    monkeypatch.setattr(features, "extract_slide_features", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ImiliaError, match="is a file, not a folder"):
        predict_slide(small_svs, blocker / "out", model_path=model_path, progress=False)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("napari_imilia.trust.paths.tempfile.TemporaryFile", refuse)
    with pytest.raises(ImiliaError, match=r"cannot write into the output folder .*Permission"):
        predict_slide(small_svs, tmp_path / "out", model_path=model_path, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImiliaError, match="cannot write"):
            check_writable_folder(folder / "sub")
    finally:
        folder.chmod(0o700)


def test_cli_unwritable_out_is_one_line_and_exit_2(
    small_svs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code = main(["predict", str(small_svs), "--out", str(blocker / "results")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is a file, not a folder" in err


def test_review_on_a_refusing_disk_is_an_imilia_error(small_svs: Path, tmp_path: Path) -> None:
    from napari_imilia.review.session import ReviewSession

    root = tmp_path / "results"
    root.mkdir()
    (root / slide_id_for(small_svs)).write_text("a file where the slide folder should be")
    session = ReviewSession.open(small_svs, root)
    with pytest.raises(ImiliaError, match=r"cannot be saved in .*ask for write access"):
        session.add_review(verdict="agree", region=[[0, 0], [50, 0], [50, 50]])
