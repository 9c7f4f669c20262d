"""napari reader: a whole-slide image as one lazy, multiscale RGB layer scaled in µm.

napari calls :func:`napari_get_reader` (declared in ``napari.yaml``) with a path; it returns
:func:`read_slides` when the path is a slide we can open (a slide file, or a folder of DICOM
WSI files), or ``None`` so napari can try other readers. No pixels are read on open: every
level is a dask array over the backend's tile reads (tiffslide, wsidicom or OpenSlide), and
levels missing from the file are lazy 2x means (see :mod:`napari_imilia.slide`).
napari is imported only inside functions, and Qt never, so this module imports headless.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_imilia._napari.notify import notify
from napari_imilia.errors import SlideError
from napari_imilia.slide import Slide, open_slide
from napari_imilia.slide.formats import SLIDE_SUFFIXES

#: Endings that napari's builtin reader (and others) also open: a non-slide there is normal
#: (a plain TIFF, a CT DICOM file, a fluorescence CZI).
SHARED_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".dcm", ".czi")
#: Metadata key holding the open :class:`Slide`, so its file stays open as long as the layer.
SLIDE_OBJECT_KEY = "imilia_slide_object"

PathOrPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
LayerDataTuple = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[PathOrPaths], list[LayerDataTuple]]


def napari_get_reader(path: PathOrPaths) -> ReaderFunction | None:
    """Return :func:`read_slides` if every path is a slide we can open, else ``None``.

    Each candidate is opened and closed once (metadata only, no pixels). A file with one of
    our extensions that fails to open is declined with a notification saying why.
    """
    paths = _as_paths(path)
    if not paths or not all(_is_slide_candidate(p) for p in paths):
        return None
    for candidate in paths:
        try:
            open_slide(candidate).close()
        except SlideError as error:
            _notify_unreadable(candidate, error)
            return None
    return read_slides


def read_slides(path: PathOrPaths) -> list[LayerDataTuple]:
    """One multiscale image layer per slide path (see :func:`slide_layer_data`)."""
    return [slide_layer_data(open_slide(candidate)) for candidate in _as_paths(path)]


def slide_layer_data(slide: Slide) -> LayerDataTuple:
    """Layer data tuple for an open slide: levels (finest first), µm scale, slide metadata.

    ``scale`` is the level-0 pixel size in µm; without a usable MPP it is 1 (pixels) and a
    warning notification says so. The layer keeps ``slide`` (and its open file) alive.
    """
    if slide.mpp is None:
        notify("warning", f"{slide.mpp_warning or 'no pixel size'}: distances are in pixels")
        scale: tuple[float, float] = (1.0, 1.0)
        units: tuple[str, str] = ("pixel", "pixel")
    else:
        scale = (slide.mpp, slide.mpp)
        units = ("µm", "µm")
    metadata = {
        "imilia_slide": slide.summary(),
        "slide_path": str(slide.path),
        "slide_properties": dict(slide.properties),
        SLIDE_OBJECT_KEY: slide,
    }
    kwargs = {
        "name": slide.slide_id,
        "multiscale": True,
        "rgb": True,
        "contrast_limits": (0, 255),
        "scale": scale,
        "units": units,
        "metadata": metadata,
    }
    return list(slide.levels), kwargs, "image"


def slide_from_metadata(metadata: dict[str, Any]) -> Slide | None:
    """The open :class:`Slide` behind a layer made by this reader (``layer.metadata``)."""
    slide = metadata.get(SLIDE_OBJECT_KEY)
    return slide if isinstance(slide, Slide) else None


def _as_paths(path: PathOrPaths) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        return [Path(path)]
    return [Path(p) for p in path]


def _is_slide_candidate(path: Path) -> bool:
    """A file whose name ends in one of :data:`SLIDE_SUFFIXES`, or a folder of DICOM files."""
    if path.is_dir():
        from napari_imilia.slide.backends.dicom import dicom_files

        return bool(dicom_files(path))
    return path.name.lower().endswith(SLIDE_SUFFIXES) and path.is_file()


def _notify_unreadable(path: Path, error: SlideError) -> None:
    """Explain a declined file: an error for slide-only formats, a warning for plain TIFF."""
    if path.name.lower().endswith(SHARED_SUFFIXES):
        notify("warning", f"napari-imilia: {error}; trying napari's other readers")
    else:
        notify("error", f"napari-imilia cannot open this slide: {error}")
