"""Every slide format behind one Slide: files written by the tools that make them in practice.

- OME-TIFF pyramids written by tifffile, physical sizes in several OME units;
- a DICOM WSI folder written by wsidicomizer (wsidicom's converter) from a tifffile pyramid;
- OpenSlide against tiffslide on the real SVS and on tifffile pyramids;
- ``imilia predict`` on the DICOM gives the same tiles and score as on its source.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import npe2
import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_imilia._napari.reader import napari_get_reader, read_slides
from napari_imilia.cli import main as imilia
from napari_imilia.errors import SlideError
from napari_imilia.slide import SlideFormat, detect_format, open_slide, slide_id_for
from napari_imilia.slide.backends.ome import parse_ome, to_micrometres
from napari_imilia.slide.formats import SlideBackendMissingError

SIZE_HW = (896, 1344)
MPP = 0.5
#: PSNR (dB) a JPEG re-encoding keeps against its source, and by how much the aligned
#: comparison beats the source shifted by one pixel (so the pixels are where they should be).
JPEG_MIN_PSNR_DB = 30.0
ALIGNMENT_MARGIN_DB = 3.0
#: Slide-score difference allowed between a slide and its JPEG re-encoding (probability).
SCORE_TOLERANCE = 0.02


def he_like_image(shape_hw: tuple[int, int] = SIZE_HW, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: a pink textured tissue ellipse with purple nuclei on white."""
    height, width = shape_hw
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((xs / width - 0.5) / 0.42) ** 2 + ((ys / height - 0.5) / 0.4) ** 2 < 1
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 3, (height, width)).astype(np.float32)
    texture += np.sin(xs * 0.21) * np.cos(ys * 0.17) * 15
    nuclei = (np.sin(xs * 0.09 + ys * 0.05) * np.sin(ys * 0.07 - xs * 0.03)) > 0.75
    image = np.full((height, width, 3), 246, np.float32)
    pink = np.stack([222 + texture / 2, 150 + texture, 190 + texture / 2], axis=-1)
    pink[nuclei] = (115, 70, 150)
    image[inside] = pink[inside]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-12)))


def assert_jpeg_close(region: np.ndarray, level_image: np.ndarray, x: int, y: int) -> None:
    """``region`` (read at level px (x, y)) is ``level_image`` there up to JPEG error."""
    height, width = region.shape[:2]
    aligned = psnr_db(region, level_image[y : y + height, x : x + width])
    shifted = max(
        psnr_db(region, level_image[y + 1 : y + height + 1, x : x + width]),
        psnr_db(region, level_image[y : y + height, x + 1 : x + width + 1]),
    )
    assert aligned > JPEG_MIN_PSNR_DB and aligned > shifted + ALIGNMENT_MARGIN_DB


def pyramid_levels(image: np.ndarray, n_levels: int = 3) -> list[np.ndarray]:
    """``image`` and its 2x2-mean reductions (what scanners and vips store as levels)."""
    levels = [image]
    for _ in range(n_levels - 1):
        last = levels[-1].astype(np.float32)
        height, width = last.shape[0] // 2 * 2, last.shape[1] // 2 * 2
        blocks = last[:height, :width].reshape(height // 2, 2, width // 2, 2, 3)
        levels.append((blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8))
    return levels


def write_pyramid(
    path: Path,
    image: np.ndarray,
    *,
    ome: bool,
    physical: tuple[float, str] | None = (MPP, "µm"),
    compression: str = "zlib",
    n_levels: int = 3,
) -> Path:
    """A tiled pyramid (2x means: downsample 1, 2, 4...) written by tifffile: OME-TIFF with
    sub-IFDs and the physical size in OME-XML, or a generic TIFF with resolution tags."""
    opts = {"tile": (256, 256), "photometric": "rgb", "compression": compression}
    levels = pyramid_levels(image, n_levels)
    with tifffile.TiffWriter(path, ome=ome) as tif:
        if ome:
            metadata: dict = {"axes": "YXS"}
            if physical is not None:
                value, unit = physical
                metadata.update(
                    PhysicalSizeX=value,
                    PhysicalSizeXUnit=unit,
                    PhysicalSizeY=value,
                    PhysicalSizeYUnit=unit,
                )
            tif.write(levels[0], subifds=n_levels - 1, metadata=metadata, **opts)
            for level in levels[1:]:
                tif.write(level, subfiletype=1, **opts)
        else:
            for index, level in enumerate(levels):
                mpp = MPP * 2**index
                tif.write(
                    level,
                    resolution=(1e4 / mpp, 1e4 / mpp),
                    resolutionunit="CENTIMETER",
                    subfiletype=1 if index else 0,
                    metadata=None,
                    **opts,
                )
    return path


@pytest.fixture(scope="module")
def source_image() -> np.ndarray:
    return he_like_image()


@pytest.fixture(scope="module")
def generic_tiff(tmp_path_factory, source_image) -> Path:
    folder = tmp_path_factory.mktemp("generic")
    return write_pyramid(folder / "generic.tiff", source_image, ome=False)


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory, generic_tiff) -> Path:
    """The generic pyramid converted to DICOM WSI by wsidicomizer (JPEG frames, 512 px)."""
    pytest.importorskip("wsidicom")
    wsidicomizer = pytest.importorskip("wsidicomizer")
    from wsidicomizer.sources import TiffSlideSource

    folder = tmp_path_factory.mktemp("dicom") / "case_dicom"
    wsidicomizer.WsiDicomizer.convert(generic_tiff, folder, preferred_source=TiffSlideSource)
    return folder


# -- OME-TIFF ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit"),
    [(0.5, "µm"), (0.5, "um"), (500.0, "nm"), (0.0005, "mm"), (5e-5, "cm"), (5000.0, "Å")],
)
def test_ome_tiff_physical_size_in_any_unit_becomes_mpp(tmp_path, source_image, value, unit):
    path = write_pyramid(tmp_path / "slide.ome.tif", source_image, ome=True, physical=(value, unit))
    with open_slide(path) as slide:
        assert (slide.format_name, slide.backend) == ("OME-TIFF", "tiffslide")
        assert slide.mpp == pytest.approx(MPP, rel=1e-9)
        assert slide.mpp_source == "metadata" and slide.mpp_warning is None
        assert unit in slide.mpp_origin and "PhysicalSizeX" in slide.mpp_origin
        assert slide.level_dimensions[:3] == [(1344, 896), (672, 448), (336, 224)]
        assert slide.level_downsamples[:3] == [1.0, 2.0, 4.0]
        assert np.array_equal(
            slide.read_region((300, 200), 0, (160, 120)), source_image[200:320, 300:460]
        )
        level1 = pyramid_levels(source_image)[1]
        assert np.array_equal(slide.read_region((300, 200), 1, (64, 48)), level1[100:148, 150:214])
        assert slide.slide_id == "slide"


def test_ome_tiff_without_physical_unit_is_in_pixels_with_a_warning(tmp_path, source_image):
    path = write_pyramid(tmp_path / "px.ome.tif", source_image, ome=True, physical=(1.0, "pixel"))
    with open_slide(path) as slide:
        assert slide.mpp is None and slide.mpp_source == "missing"
        assert "pixel" in slide.mpp_warning and "px.ome.tif" in slide.mpp_warning
    with open_slide(path, mpp=0.25) as slide:
        assert slide.mpp == 0.25 and slide.mpp_source == "override"


def test_ome_xml_objective_magnification_and_pixel_size(tmp_path, source_image):
    """A full OME-XML (instrument, objective settings) as written by a converter."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Instrument ID="Instrument:0"><Objective ID="Objective:0:0" NominalMagnification="20"/>'
        '<Objective ID="Objective:0:1" NominalMagnification="40"/></Instrument>'
        '<Image ID="Image:0"><ObjectiveSettings ID="Objective:0:1"/>'
        '<Pixels DimensionOrder="XYCZT" ID="Pixels:0" SizeC="3" SizeT="1" SizeX="1344" '
        'SizeY="896" SizeZ="1" Type="uint8" PhysicalSizeX="0.00025" PhysicalSizeXUnit="mm" '
        'PhysicalSizeY="0.00025" PhysicalSizeYUnit="mm" Interleaved="true">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="3"/><TiffData/></Pixels></Image></OME>'
    )
    path = tmp_path / "objective.ome.tiff"
    tifffile.imwrite(
        path, source_image, description=xml, metadata=None, tile=(256, 256), photometric="rgb"
    )
    with open_slide(path) as slide:
        assert slide.format_name == "OME-TIFF"
        assert slide.mpp == pytest.approx(0.25) and slide.objective_power == 40.0
    size, magnification, problem = parse_ome(xml)
    assert size.mpp_x == pytest.approx(0.25) and magnification == 40.0 and problem is None


def test_ome_unit_conversions_and_refusals():
    assert to_micrometres(1.0, "in") == pytest.approx(25400.0)
    assert to_micrometres(12.0, "li") == pytest.approx(25400.0)
    assert to_micrometres(1.0, "\u212b") == pytest.approx(1e-4)  # Angstrom sign
    assert to_micrometres(2.0, "μm") == 2.0  # Greek mu
    size, _, problem = parse_ome('<OME><Image><Pixels PhysicalSizeX="0.5" /></Image></OME>')
    assert size.mpp_x == 0.5 and size.mpp_y == 0.5  # OME's default unit is µm
    size, _, problem = parse_ome(
        '<OME><Pixels PhysicalSizeX="1" PhysicalSizeXUnit="furlong"/></OME>'
    )
    assert size is None and "furlong" in problem


# -- DICOM WSI -----------------------------------------------------------------------------


def test_dicom_folder_and_single_file_open_as_one_slide(dicom_folder, source_image):
    one_file = sorted(dicom_folder.glob("*.dcm"))[0]
    with open_slide(dicom_folder) as slide, open_slide(one_file) as same:
        assert (slide.format_name, slide.backend) == ("DICOM WSI", "wsidicom")
        assert slide.mpp == pytest.approx(MPP) and slide.mpp_origin == "DICOM Pixel Spacing"
        assert slide.level_dimensions[:3] == [(1344, 896), (672, 448), (336, 224)]
        assert slide.level_downsamples[:3] == [1.0, 2.0, 4.0]
        assert slide.slide_id == same.slide_id == slide_id_for(one_file) == "case_dicom"
        assert slide.path == same.path == dicom_folder.resolve()
        assert slide.quick_hash() == same.quick_hash()
        for level, source_level in enumerate(pyramid_levels(source_image)):
            x, y = 600 // 2**level, 400 // 2**level
            region = slide.read_region((600, 400), level, (64, 48))
            assert_jpeg_close(region, source_level, x, y)
        # a region across the edge: white outside, like every backend
        edge = slide.read_region((1300, 850), 0, (100, 100))
        assert (edge[50:, :] == 255).all() and (edge[:, 50:] == 255).all()


def test_openslide_reads_the_dicom_folder_like_wsidicom(dicom_folder):
    pytest.importorskip("openslide")
    with open_slide(dicom_folder, backend="openslide") as other, open_slide(dicom_folder) as ours:
        assert (other.format_name, other.backend) == ("DICOM WSI", "openslide")
        assert other.level_dimensions[:3] == ours.level_dimensions[:3]
        assert other.mpp == pytest.approx(ours.mpp)
        for level in range(3):
            a = other.read_region((500, 300), level, (96, 64)).astype(int)
            assert np.abs(a - ours.read_region((500, 300), level, (96, 64))).max() <= 2


def test_dicom_folder_through_the_napari_reader_and_imilia_info(dicom_folder, capsys):
    assert napari_get_reader(str(dicom_folder)) is read_slides
    data, kwargs, kind = read_slides(str(dicom_folder))[0]
    assert kind == "image" and kwargs["scale"] == pytest.approx((MPP, MPP))
    assert data[0].shape == (896, 1344, 3)
    npe2.PluginManager.instance().discover()  # as napari does: the manifest takes the folder
    layers = npe2.read([str(dicom_folder)], stack=False, plugin_name="napari-imilia")
    assert layers[0][1]["name"] == "case_dicom" and layers[0][1]["units"] == ("µm", "µm")
    assert imilia(["info", str(dicom_folder)]) == 0
    out = capsys.readouterr().out
    assert "format:      DICOM WSI" in out and "backend:     wsidicom" in out
    assert "0.5 µm/px (metadata: DICOM Pixel Spacing)" in out
    assert imilia(["info", str(dicom_folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["level_dimensions_px"][1] == [672, 448]


def test_format_is_decided_by_content_not_name(tmp_path, dicom_folder, generic_tiff):
    dicom_named_tif = tmp_path / "misnamed.tif"
    shutil.copy(sorted(dicom_folder.glob("*.dcm"))[0], dicom_named_tif)
    assert detect_format(dicom_named_tif).backend == "wsidicom"
    tiff_named_svs = tmp_path / "misnamed.svs"
    shutil.copy(generic_tiff, tiff_named_svs)
    assert detect_format(tiff_named_svs).backend == "tiffslide"
    mirax = tmp_path / "x.mrxs"
    mirax.write_text("[GENERAL]\n")  # MIRAX's index file is INI text: known by its ending
    assert detect_format(mirax) == SlideFormat("MIRAX", "openslide")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not DICOM")
    with pytest.raises(SlideError, match="is a folder, not a slide file"):
        open_slide(tmp_path / "plain")
    assert detect_format(tmp_path).backend == "wsidicom"  # holds the misnamed DICOM file
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "Slidedat.ini").write_text("[GENERAL]\n")
    with pytest.raises(SlideError, match=r"for a MIRAX slide open its index file scan\.mrxs"):
        open_slide(tmp_path / "scan")


def test_imilia_info_refuses_a_non_slide_in_one_line(tmp_path, capsys):
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert imilia(["info", str(picture)]) == 2
    error = capsys.readouterr().err
    assert "picture.png is not a whole-slide image" in error and "MIRAX" in error


def _predict(slide: Path, out: Path, model: Path, *extra: str) -> tuple[dict, pd.DataFrame]:
    # two decoding threads: the backends' reads must be thread-safe (wsidicom, OpenSlide are)
    args = ["predict", str(slide), "--out", str(out), "--model", str(model)]
    args += ["--decode-workers", "2"]
    assert imilia([*args, *extra]) == 0
    folder = out / slide_id_for(slide)
    info = json.loads((folder / "slide.json").read_text())
    return info, pd.read_csv(folder / "tiles.csv").set_index("tile_id").sort_index()


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    from support.models import save_small_model

    return save_small_model(tmp_path_factory.mktemp("model"), "imilia-chowder")


def test_imilia_predict_on_dicom_matches_its_source(
    tmp_path, dicom_folder, generic_tiff, small_model
):
    source_info, source_tiles = _predict(generic_tiff, tmp_path / "tiff", small_model)
    dicom_info, dicom_tiles = _predict(dicom_folder, tmp_path / "dicom", small_model)
    assert (source_info["slide_format"], source_info["slide_backend"]) == (
        "pyramidal TIFF",
        "tiffslide",
    )
    assert (dicom_info["slide_format"], dicom_info["slide_backend"]) == ("DICOM WSI", "wsidicom")
    assert dicom_info["mpp_origin"] == "DICOM Pixel Spacing"
    assert len(source_tiles) >= 8
    assert list(dicom_tiles.index) == list(source_tiles.index)  # the same tiles
    for column in ("x", "y", "width", "height"):
        assert (dicom_tiles[column] == source_tiles[column]).all()
    assert dicom_info["score"] == pytest.approx(source_info["score"], abs=SCORE_TOLERANCE)


# -- OpenSlide -----------------------------------------------------------------------------


def test_openslide_reads_the_real_svs_like_tiffslide(small_svs):
    pytest.importorskip("openslide")
    with open_slide(small_svs, backend="openslide") as other, open_slide(small_svs) as ours:
        assert (other.backend, ours.backend) == ("openslide", "tiffslide")
        assert other.format_name == ours.format_name == "Aperio SVS"
        assert other.level_dimensions == ours.level_dimensions
        assert other.mpp == pytest.approx(ours.mpp) and other.objective_power == 20.0
        assert set(other.associated_image_names) == set(ours.associated_image_names)
        for xy, size in (((100, 150), (300, 200)), ((2000, 2800), (400, 400))):
            difference = np.abs(
                other.read_region(xy, 0, size).astype(int) - ours.read_region(xy, 0, size)
            )
            assert difference.max() <= 2  # both decode the same JPEG tiles
        label = other.associated_image("label").astype(int)
        assert np.abs(label - ours.associated_image("label")).mean() < 2.0
        assert other.quick_hash() == ours.quick_hash()


@pytest.mark.parametrize("ome", [False, True], ids=["generic", "ome"])
def test_openslide_reads_tifffile_pyramids_like_tiffslide(tmp_path, source_image, ome):
    pytest.importorskip("openslide")
    path = write_pyramid(
        tmp_path / ("p.ome.tif" if ome else "p.tif"), source_image, ome=ome, compression="jpeg"
    )
    with open_slide(path, backend="openslide") as other, open_slide(path) as ours:
        assert ours.native_level_count == 3
        # OpenSlide reads top-level IFDs only: an OME pyramid's sub-IFD levels are not seen
        # (napari-imilia then adds lazy levels); the generic TIFF's levels are
        native = 1 if ome else 3
        assert other.native_level_count == native
        assert other.level_dimensions[:native] == ours.level_dimensions[:native]
        for level in range(native):
            a = other.read_region((200, 120), level, (128, 96)).astype(int)
            b = ours.read_region((200, 120), level, (128, 96)).astype(int)
            assert np.abs(a - b).max() <= 2, level


def test_predict_with_the_openslide_fallback_matches_tiffslide(tmp_path, generic_tiff, small_model):
    pytest.importorskip("openslide")
    ours, our_tiles = _predict(generic_tiff, tmp_path / "a", small_model)
    other, other_tiles = _predict(
        generic_tiff, tmp_path / "b", small_model, "--slide-backend", "openslide"
    )
    assert other["slide_backend"] == "openslide"
    assert list(other_tiles.index) == list(our_tiles.index)
    assert other["score"] == pytest.approx(ours["score"], abs=1e-4)


# -- missing backends ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name", "extra", "what"),
    [("openslide", "slide.mrxs", "openslide", "MIRAX"), ("wsidicom", None, "dicom", "DICOM WSI")],
)
def test_missing_backend_names_the_format_and_the_extra(
    tmp_path, monkeypatch, dicom_folder, module, name, extra, what
):
    import importlib

    real_import = importlib.import_module

    def refuse(requested, *args, **kwargs):
        if requested == module:
            raise ImportError(f"No module named {module!r}")
        return real_import(requested, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", refuse)  # what the backend check uses
    path = dicom_folder
    if name:
        path = tmp_path / name
        path.write_text("[GENERAL]\nSLIDE_VERSION = 1.9\n")
    with pytest.raises(SlideBackendMissingError) as raised:
        open_slide(path)
    message = str(raised.value)
    assert what in message and f"pip install 'napari-imilia[{extra}]'" in message
