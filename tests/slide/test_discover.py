"""The one slide finder (``slide.discover``): files, folders, globs, CSVs, results folders and
DICOM series, for a prediction run (``strict=False``) and a cohort under review."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_imilia.cohort.review import Cohort
from napari_imilia.errors import DataError
from napari_imilia.slide.discover import FoundSlide, discover_slides


def fake_dicom(path: Path) -> Path:
    """A file with the DICOM Part 10 marker: all the finder looks at."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    return path


def paths(found: list[FoundSlide]) -> list[Path]:
    return [Path(slide.path) for slide in found]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """cohort/: a.svs, b.tiff, sub/c.ndpi, a DICOM series of three files, a .dcm that is not
    DICOM, a hidden file and a text file."""
    root = tmp_path / "cohort"
    for name in ("a.svs", "b.tiff", "sub/c.ndpi", ".hidden.svs", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    for name in ("level0.dcm", "level1.dcm", "label.dcm"):
        fake_dicom(root / "case_dicom" / name)
    (root / "stray.dcm").write_bytes(b"not dicom")  # no marker: not a series
    return root


def test_folder_is_searched_recursively_with_a_dicom_series_once(folder: Path) -> None:
    expected = [folder / "a.svs", folder / "b.tiff", folder / "case_dicom", folder / "sub/c.ndpi"]
    assert paths(discover_slides(folder)) == expected
    assert paths(discover_slides([folder], strict=False)) == expected
    assert paths(discover_slides(folder / "case_dicom")) == [folder / "case_dicom"]
    # a pattern over the series' files names the series once
    assert paths(discover_slides(str(folder / "**" / "*.dcm"))) == [folder / "case_dicom"]
    assert paths(discover_slides(str(folder / "*"))) == [
        folder / "a.svs",
        folder / "b.tiff",
        folder / "case_dicom",
    ]


def test_paths_are_absolute_in_the_order_given_each_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder.parent)
    found = discover_slides(["cohort/*.tiff", "cohort/a.svs", "cohort", "cohort/a.svs"])
    assert paths(found) == [
        folder / "b.tiff",
        folder / "a.svs",
        folder / "case_dicom",
        folder / "sub/c.ndpi",
    ]
    assert all(Path(slide.path).is_absolute() for slide in found)


def test_missing_and_odd_files_fail_as_their_own_slide_only_when_not_strict(folder: Path) -> None:
    missing, text = folder / "missing.svs", folder / "notes.txt"
    assert paths(discover_slides([missing, text], strict=False)) == [missing, text]
    with pytest.raises(DataError, match="slide source not found"):
        discover_slides(missing)
    with pytest.raises(DataError, match="neither a folder, a CSV nor a slide"):
        discover_slides(text)
    (folder / "empty").mkdir()
    for bad, message in (
        (folder / "empty", r"no slide found in .*empty"),
        (str(folder / "*.mrxs"), "no slide file matches the pattern"),
        ([], "no slide given"),
    ):
        for strict in (True, False):
            with pytest.raises(DataError, match=message):
                discover_slides(bad, strict=strict)


def test_csv_and_results_folder(folder: Path, tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    table.write_text("path,active,nancy\ncohort/a.svs,1,3\ncohort/case_dicom,0,\n\n")
    found = discover_slides(table)
    assert paths(found) == [folder / "a.svs", folder / "case_dicom"]
    assert [slide.labels for slide in found] == [{"active": "1", "nancy": "3"}, {"active": "0"}]

    results = tmp_path / "results"
    results.mkdir()
    (results / "cohort.csv").write_text(
        f"slide,slide_id,status,score,n_tiles,error\n{folder / 'b.tiff'},b,ok,0.5,3,\n"
    )
    (found,) = discover_slides(results)  # its cohort.csv, scoring columns are no labels
    assert (Path(found.path), found.labels) == (folder / "b.tiff", {})


def write_dicom_series(folder: Path) -> Path:
    """A real three-level DICOM WSI series (wsidicomizer from a tifffile pyramid, 0.5 µm/px)."""
    pytest.importorskip("wsidicom")
    wsidicomizer = pytest.importorskip("wsidicomizer")
    from wsidicomizer.sources import TiffSlideSource

    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    source = folder / "source.tiff"
    with tifffile.TiffWriter(source) as tif:
        for index in range(3):
            mpp = 0.5 * 2**index
            tif.write(
                image[:: 2**index, :: 2**index],
                tile=(256, 256),
                photometric="rgb",
                compression="zlib",
                resolution=(1e4 / mpp, 1e4 / mpp),
                resolutionunit="CENTIMETER",
                subfiletype=1 if index else 0,
                metadata=None,
            )
    series = folder / "slides" / "case_dicom"
    series.parent.mkdir(parents=True)
    wsidicomizer.WsiDicomizer.convert(source, series, preferred_source=TiffSlideSource)
    return series


def test_cohort_built_from_a_folder_lists_a_dicom_series_once(tmp_path: Path) -> None:
    series = write_dicom_series(tmp_path)
    assert len(list(series.glob("*.dcm"))) == 3
    (series.parent / "other.svs").write_bytes(b"not a slide")
    cohort = Cohort.build(series.parent, tmp_path / "results")
    assert [item.path for item in cohort] == [str(series), str(series.parent / "other.svs")]
    assert [item.slide_id for item in cohort] == ["case_dicom", "other"]
    dicom = cohort[0]
    assert dicom.status == "not scored" and not dicom.error  # the folder opens as one slide
    assert cohort.unscored() == [0]
