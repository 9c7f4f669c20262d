"""Whole-slide images of every format behind one lazy interface (:class:`Slide`).

:func:`open_slide` picks a backend by what the file is (magic bytes, extension, folder
contents; see :mod:`.formats`): tiffslide for TIFF-based slides (SVS, OME-TIFF, NDPI...),
wsidicom for DICOM WSI, OpenSlide for MIRAX and the other formats tiffslide cannot read.
"""

from napari_imilia.slide.core import (
    HASH_MAX_FILES,
    OVERVIEW_MAX_PX,
    PLAUSIBLE_MPP_RANGE,
    TARGET_CHUNK_PX,
    LevelInfo,
    Slide,
    slide_id_for,
)
from napari_imilia.slide.formats import (
    BACKEND_CHOICES,
    SlideFormat,
    detect_format,
    open_slide,
)

__all__ = [
    "BACKEND_CHOICES",
    "HASH_MAX_FILES",
    "OVERVIEW_MAX_PX",
    "PLAUSIBLE_MPP_RANGE",
    "TARGET_CHUNK_PX",
    "LevelInfo",
    "Slide",
    "SlideFormat",
    "detect_format",
    "open_slide",
    "slide_id_for",
]
