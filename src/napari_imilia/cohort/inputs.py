"""What a cohort run is given, checked and made absolute on the client before any task is sent.

Workers of a shared dask cluster run in other folders (often on other machines), so every path
a task receives must be absolute: the slides, the output and cache folders, the model and the
extractor weights. Slides may be given as files, folders (searched recursively for the
extensions the slide reader takes) or glob patterns (``"slides/**/*.svs"``, quoted so the shell
leaves them alone).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_imilia.errors import ImiliaError
from napari_imilia.slide.formats import SLIDE_SUFFIXES

#: predict_slide options that hold paths (made absolute before they are sent to workers).
PATH_OPTIONS: tuple[str, ...] = (
    "model_path",
    "extractor_weights",
    "cache_dir",
    "tiles_from",
)
_GLOB_CHARS = frozenset("*?[")


def absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded, made absolute against this process's folder (symbolic
    links kept: workers may mount the same storage under the same link)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def collect_slides(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Absolute slide paths from files, folders and glob patterns, in the order given
    (each folder's and pattern's matches sorted), each slide once.

    A file is taken as given (a wrong one fails as that slide's error row); a folder (all
    below it) and a pattern give the files whose names end in one of :data:`SLIDE_SUFFIXES`. Raises
    ``ImiliaError`` for a path that does not exist, a pattern or folder that matches no slide,
    or no input at all.
    """
    slides: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir() and _is_dicom_series(path):
            found = [path]  # one DICOM WSI: the folder is the slide
        elif path.is_dir():
            found = _slides_in_folder(path)
            if not found:
                raise ImiliaError(
                    f"folder {text} holds no slide file ({', '.join(SLIDE_SUFFIXES)}), "
                    "searched recursively"
                )
        elif path.exists() or not _GLOB_CHARS & set(text):
            found = [path]  # a missing plain file is reported per slide ("slide not found")
        else:
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            found = [p for p in found if _is_slide_file(p)]
            if not found:
                raise ImiliaError(f"no slide file matches the pattern {text}")
        slides.extend(absolute(p) for p in found)
    if not slides:
        raise ImiliaError("no slides to score")
    unique = list(dict.fromkeys(slides))
    return unique


def _slides_in_folder(folder: Path) -> list[Path]:
    """Slide files below ``folder``; a folder holding a DICOM WSI series counts as one slide
    (not one per ``.dcm`` file)."""
    found: set[Path] = set()
    series: dict[Path, bool] = {}  # each folder's DICOM files are listed once
    for path in folder.rglob("*"):
        if not _is_slide_file(path):
            continue
        if path.suffix.lower() != ".dcm":
            found.add(path)
        else:
            if path.parent not in series:
                series[path.parent] = _is_dicom_series(path.parent)
            if series[path.parent]:
                found.add(path.parent)
    return sorted(found)


def _is_dicom_series(folder: Path) -> bool:
    from napari_imilia.slide.backends.dicom import dicom_files

    return bool(dicom_files(folder))


def _is_slide_file(path: Path) -> bool:
    """A file (not hidden) whose name ends in one of :data:`SLIDE_SUFFIXES`."""
    name = path.name
    return name.lower().endswith(SLIDE_SUFFIXES) and not name.startswith(".") and path.is_file()


def absolute_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every path in :data:`PATH_OPTIONS` absolute (a list of model paths
    element-wise)."""
    options = dict(options)
    for name in PATH_OPTIONS:
        value = options.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, list | tuple):
            options[name] = [str(absolute(v)) for v in value]
        else:
            options[name] = str(absolute(value))
    return options


def check_scheduler_address(address: str) -> str:
    """The scheduler ``address`` with its protocol (``tcp://`` when none is given), or
    ``ImiliaError`` naming what is wrong with it: no port, a port out of range, no host, or a
    protocol dask does not know."""
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    text = address.strip()
    example = "give it as tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
    if not text:
        raise ImiliaError(f"--scheduler is empty; {example}")
    if "://" not in text:
        text = f"tcp://{text}"
    try:
        scheme, location = parse_address(text, strict=True)
    except ValueError as error:
        raise ImiliaError(
            f"scheduler address {address!r} is malformed ({error}); {example}"
        ) from error
    if scheme not in registry.backends:
        known = ", ".join(f"{name}://" for name in registry.backends)
        raise ImiliaError(
            f"scheduler address {address!r} has the unknown protocol {scheme}://; use one of "
            f"{known}"
        )
    if scheme == "inproc":
        return text
    try:
        host, port = parse_host_port(location)
    except ValueError as error:
        raise ImiliaError(
            f"scheduler address {address!r} has no port; {example} (8786 is dask's default)"
        ) from error
    if not host:
        raise ImiliaError(f"scheduler address {address!r} has no host; {example}")
    if not 0 < int(port) < 65536:
        raise ImiliaError(f"scheduler address {address!r}: port {port} is not in 1-65535")
    return text
