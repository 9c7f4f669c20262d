"""Which format a slide is and which backend reads it, decided from the file, then opening.

The decision reads a few header bytes, never pixels: DICOM's "DICM" magic (a file, or a folder
holding such files), the TIFF magic (tiffslide: SVS, OME-TIFF, NDPI, SCN, Philips, BIF), the
extensions of OpenSlide's non-TIFF formats (MIRAX ``.mrxs``, Hamamatsu ``.vms``/``.vmu``,
Sakura ``.svslide``, Zeiss ``.czi``), and, for anything else, OpenSlide's own format check when
it is installed. ``backend=`` overrides the choice (e.g. OpenSlide as a fallback for a TIFF).
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_imilia.errors import SlideError, SlideMPPError
from napari_imilia.slide.backends.base import SlideSource, build_or_close
from napari_imilia.slide.core import PLAUSIBLE_MPP_RANGE, Slide, check_mpp, dask_levels
from napari_imilia.trust.paths import absolute_path

#: Slide file endings (``.ome.tif(f)`` ends in ``.tif(f)``), lower case: tiffslide's, DICOM's,
#: and OpenSlide's non-TIFF formats. Folders are candidates when they hold DICOM files.
SLIDE_SUFFIXES: tuple[str, ...] = (
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".scn",
    ".bif",
    ".dcm",
    ".mrxs",
    ".vms",
    ".vmu",
    ".svslide",
    ".czi",
)
#: Values of ``backend=`` / ``--slide-backend``; "auto" decides from the file.
BACKEND_CHOICES: tuple[str, ...] = ("auto", "tiffslide", "wsidicom", "openslide")
#: backend -> (module to import, pip extra of napari-imilia, PyPI packages).
BACKEND_PACKAGES: dict[str, tuple[str, str | None, str]] = {
    "tiffslide": ("tiffslide", None, "tiffslide"),
    "wsidicom": ("wsidicom", "dicom", "wsidicom"),
    "openslide": ("openslide", "openslide", "openslide-python openslide-bin"),
}
TIFF_MAGICS: tuple[bytes, ...] = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
CZI_MAGIC = b"ZISRAWFILE"
#: Non-TIFF formats OpenSlide reads, by file ending (lower case).
OPENSLIDE_SUFFIXES: dict[str, str] = {
    ".mrxs": "MIRAX",
    ".vms": "Hamamatsu VMS",
    ".vmu": "Hamamatsu VMU",
    ".svslide": "Sakura SVSLIDE",
    ".czi": "Zeiss CZI",
}
SUPPORTED_TEXT = (
    "SVS, OME-TIFF, generic pyramidal TIFF, NDPI, SCN, Philips TIFF, BIF (tiffslide); "
    "DICOM WSI (wsidicom); MIRAX, VMS/VMU, SVSLIDE, CZI (OpenSlide)"
)


class SlideBackendMissingError(SlideError):
    """The library that reads this slide's format is not installed."""


@dataclass(frozen=True)
class SlideFormat:
    """What a slide is (``name``, refined once opened) and the backend that reads it."""

    name: str
    backend: str


def detect_format(path: str | os.PathLike[str]) -> SlideFormat:
    """The format and backend of the slide at ``path`` (a file, or a DICOM folder).

    Reads at most the first 132 bytes of a file (or of each file of a folder). Raises
    ``SlideError`` for a folder without DICOM files or a file no backend reads.
    """
    from napari_imilia.slide.backends.dicom import DICOM_MAGIC, DICOM_MAGIC_OFFSET, dicom_files

    path = Path(path)
    if path.is_dir():
        if dicom_files(path):
            return SlideFormat("DICOM WSI", "wsidicom")
        hint = ""
        if (path / "Slidedat.ini").is_file() or path.with_suffix(".mrxs").is_file():
            hint = f"; for a MIRAX slide open its index file {path.with_suffix('.mrxs').name}"
        raise SlideError(
            f"{path} is a folder, not a slide file (nor a folder of DICOM WSI files){hint}"
        )
    with open(path, "rb") as handle:
        head = handle.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    suffix = path.suffix.lower()
    if head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC:
        return SlideFormat("DICOM WSI", "wsidicom")
    if head[:4] in TIFF_MAGICS:
        return SlideFormat("TIFF", "tiffslide")
    if suffix in OPENSLIDE_SUFFIXES:
        return SlideFormat(OPENSLIDE_SUFFIXES[suffix], "openslide")
    if head.startswith(CZI_MAGIC):
        return SlideFormat("Zeiss CZI", "openslide")
    vendor = _openslide_vendor(path)
    if vendor:
        from napari_imilia.slide.backends.openslide import OPENSLIDE_FORMATS

        return SlideFormat(OPENSLIDE_FORMATS.get(vendor, vendor), "openslide")
    raise SlideError(
        f"{path.name} is not a whole-slide image napari-imilia reads ({SUPPORTED_TEXT})"
    )


def open_slide(
    path: str | os.PathLike[str], mpp: float | None = None, backend: str = "auto"
) -> Slide:
    """Open a slide lazily. ``mpp`` (µm/px at level 0) overrides the slide's metadata.

    ``path`` is a slide file or a DICOM WSI folder; ``backend`` is one of
    :data:`BACKEND_CHOICES` ("auto": chosen from the file, see :func:`detect_format`).
    Raises ``SlideError`` with an actionable message for a missing, unreadable, truncated or
    non-slide file, and ``SlideBackendMissingError`` naming the extra to install when the
    format's library is absent. A slide without usable MPP still opens (``slide.mpp is
    None``); use :meth:`Slide.require_mpp` where physical units are needed.
    """
    path = Path(path).expanduser()
    if backend not in BACKEND_CHOICES:
        raise SlideError(f"unknown slide backend {backend!r}; choose one of {BACKEND_CHOICES}")
    if not path.exists():
        raise SlideError(f"slide not found: {path}")
    check_file_kind(path)
    if path.is_file() and path.stat().st_size == 0:
        raise SlideError(f"{path} is empty (0 bytes); copy the slide again")
    if mpp is not None and not PLAUSIBLE_MPP_RANGE[0] <= mpp <= PLAUSIBLE_MPP_RANGE[1]:
        low, high = PLAUSIBLE_MPP_RANGE
        raise SlideMPPError(f"--mpp {mpp} is outside the plausible range {low}-{high} µm/px")
    try:
        detected = detect_format(path)
    except SlideError:
        if backend == "auto":
            raise
        detected = SlideFormat("unknown", backend)
    chosen = detected.backend if backend == "auto" else backend
    opener = _opener(chosen, detected, path)
    source = opener(path)
    return _slide(path, source, mpp)


def check_file_kind(path: Path) -> None:
    """Refuse what is neither a regular file nor a folder (a FIFO, socket or device, also
    behind a link): reading one may block forever or never end."""
    mode = path.stat().st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise SlideError(f"{path} is {kind}, not a slide file; give the slide file itself")


def _slide(path: Path, source: SlideSource, mpp: float | None) -> Slide:
    if source.format_name == "DICOM WSI" and path.is_file():
        path = path.parent  # the slide is the series: the folder its files are in
    levels, infos = build_or_close(source, path, lambda: dask_levels(source), str)
    what = "MPP (µm/px) metadata"
    problem = source.properties.get("imilia.ome-physical-size-problem")
    metadata_mpp, mpp_warning = check_mpp(source.mpp_xy, path.name, what)
    if metadata_mpp is None and problem:
        mpp_warning = f"slide {path.name}: {problem}"
    if mpp is not None:
        slide_mpp, mpp_source, mpp_warning = float(mpp), "override", None
        origin: str | None = "given by the user (--mpp)"
    else:
        slide_mpp = metadata_mpp
        mpp_source = "metadata" if metadata_mpp is not None else "missing"
        origin = source.mpp_origin if metadata_mpp is not None else None
    return Slide(
        path=absolute_path(path),  # not resolved: a link's own name is the slide id
        levels=levels,
        level_info=infos,
        mpp=slide_mpp,
        mpp_source=mpp_source,
        mpp_warning=mpp_warning,
        objective_power=source.objective_power,
        vendor=source.vendor,
        properties=source.properties,
        associated_image_names=source.associated_image_names,
        _source=source,
        format_name=source.format_name,
        backend=source.backend,
        mpp_origin=origin,
    )


def _opener(backend: str, detected: SlideFormat, path: Path) -> Callable[[Path], SlideSource]:
    """The opening function of ``backend``, or a ``SlideBackendMissingError`` saying what to
    install."""
    module, extra, packages = BACKEND_PACKAGES[backend]
    try:
        importlib.import_module(module)
    except (ImportError, OSError) as error:  # openslide-python raises OSError without its C lib
        install = f"pip install 'napari-imilia[{extra}]'" if extra else f"pip install {packages}"
        what = f"a {detected.name} slide" if detected.name != "unknown" else "this slide"
        raise SlideBackendMissingError(
            f"{path.name} is {what}, read through {module}, which is not installed or does not "
            f"load ({type(error).__name__}: {error}); install it with {install}"
        ) from error
    if backend == "tiffslide":
        from napari_imilia.slide.backends.tiff import open_tiffslide

        return open_tiffslide
    if backend == "wsidicom":
        from napari_imilia.slide.backends.dicom import open_wsidicom

        return open_wsidicom
    from napari_imilia.slide.backends.openslide import open_openslide

    return open_openslide


def _openslide_vendor(path: Path) -> str | None:
    """OpenSlide's format check, when OpenSlide is installed (header reads only)."""
    try:
        importlib.import_module("openslide")
    except (ImportError, OSError):
        return None
    from napari_imilia.slide.backends.openslide import openslide_vendor

    return openslide_vendor(path)
