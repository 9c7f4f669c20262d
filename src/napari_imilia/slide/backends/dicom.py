"""wsidicom backend: DICOM WSI (VL Whole Slide Microscopy), a folder or one file of the series.

Every pyramid level of the selected pyramid becomes a :class:`~.base.RegionArray` over
``WsiDicom.read_region`` (wsidicom decodes only the frames a region covers). MPP is the
base level's Pixel Spacing; the objective comes from the optical path when recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_imilia.errors import SlideError, one_line
from napari_imilia.slide.backends.base import RegionArray, SlideSource, build_or_close

#: DICOM Part 10 files carry "DICM" after a 128-byte preamble.
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
#: At most this many entries of a folder are looked at to find its DICOM files.
MAX_FOLDER_FILES = 10_000


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (by its magic bytes, not its name)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly inside ``folder``, in name order."""
    files = []
    for index, entry in enumerate(sorted(folder.iterdir())):
        if index >= MAX_FOLDER_FILES:
            break
        if entry.is_file() and is_dicom_file(entry):
            files.append(entry)
    return files


def open_wsidicom(path: Path) -> SlideSource:
    """Open the DICOM WSI series in folder ``path`` (or the folder of the file ``path``)."""
    import wsidicom

    folder = path if path.is_dir() else path.parent
    files = dicom_files(folder)
    if not files:
        raise SlideError(f"{folder.name} holds no DICOM files")
    try:
        wsi = wsidicom.WsiDicom.open(files)
    except Exception as error:
        raise SlideError(
            f"{path.name} is not a DICOM whole-slide image wsidicom can read: {one_line(error)}"
        ) from error
    return build_or_close(wsi, path, lambda: _source(wsi, files), one_line)


def _source(wsi: Any, files: list[Path]) -> SlideSource:
    levels = list(wsi.levels)
    if not levels:
        raise SlideError(f"{files[0].parent.name} has no pyramid levels (only labels/overviews?)")
    width0 = levels[0].size.width
    arrays = [RegionArray((lv.size.height, lv.size.width), _reader(wsi, lv.level)) for lv in levels]
    try:
        mpp = wsi.mpp
        mpp_xy: tuple[float, float] | None = (float(mpp.width), float(mpp.height))
    except Exception:  # no Pixel Spacing in the files
        mpp_xy = None
    names, readers = _associated(wsi)
    properties = _properties(wsi)
    return SlideSource(
        format_name="DICOM WSI",
        backend="wsidicom",
        arrays=arrays,
        downsamples=[width0 / lv.size.width for lv in levels],
        tile_shapes=[(lv.tile_size.height, lv.tile_size.width) for lv in levels],
        mpp_xy=mpp_xy,
        mpp_origin="DICOM Pixel Spacing" if mpp_xy else None,
        objective_power=_objective_power(wsi),
        vendor=properties.get("dicom.manufacturer"),
        properties=properties,
        associated_image_names=names,
        read_associated=lambda name: readers[name](),
        close=wsi.close,
        files=tuple(files),
    )


def _reader(wsi: Any, level: int) -> Any:
    def read(x: int, y: int, width: int, height: int) -> np.ndarray:
        region = wsi.read_region((x, y), level, (width, height))
        return np.asarray(region.convert("RGB") if hasattr(region, "convert") else region)

    return read


def _associated(wsi: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Names and readers of the label, overview ("macro") and thumbnail images."""
    readers: dict[str, Any] = {}

    def rgb(image: Any) -> np.ndarray:
        return np.asarray(image.convert("RGB"))

    if wsi.labels:
        readers["label"] = lambda: rgb(wsi.read_label())
    if wsi.overviews:
        readers["macro"] = lambda: rgb(wsi.read_overview())
    if getattr(wsi.pyramid, "thumbnails", None):
        readers["thumbnail"] = lambda: rgb(wsi.read_thumbnail((512, 512)))
    return tuple(readers), readers


def _properties(wsi: Any) -> dict[str, Any]:
    """A few identifying fields, as plain strings (``dicom.*``)."""
    out: dict[str, Any] = {}
    dataset = None
    try:
        dataset = wsi.levels[0].datasets[0]
    except Exception:
        return out
    for key, attribute in (
        ("dicom.manufacturer", "Manufacturer"),
        ("dicom.model", "ManufacturerModelName"),
        ("dicom.software", "SoftwareVersions"),
        ("dicom.study-instance-uid", "StudyInstanceUID"),
        ("dicom.series-instance-uid", "SeriesInstanceUID"),
        ("dicom.container-identifier", "ContainerIdentifier"),
    ):
        value = dataset.get(attribute)
        if value not in (None, ""):
            out[key] = str(value)
    return out


def _objective_power(wsi: Any) -> float | None:
    """The optical path's Objective Lens Power (0048,0112), when recorded."""
    try:
        dataset = wsi.levels[0].datasets[0]
        for path in dataset.get("OpticalPathSequence") or []:
            power = path.get("ObjectiveLensPower")
            if power:
                return float(power)
    except Exception:
        return None
    return None
