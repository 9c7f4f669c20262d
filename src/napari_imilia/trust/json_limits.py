"""Reading JSON files nobody vouched for (GeoJSON, HistoPLUS cell JSON) within set limits.

A file is read once: plain, gzip or zip (JSON entries), decompressed as a stream that stops
at :attr:`ImportLimits.max_bytes`, so a small archive that inflates to gigabytes is refused
after reading ``max_bytes`` and no more. Before parsing, the nesting depth is measured on the
bytes (strings skipped) and refused past :attr:`ImportLimits.max_depth`, so no parser or walk
recurses without bound. Integers longer than :attr:`ImportLimits.max_int_digits` digits are
refused while parsing. Readers then check the object count, coordinates and numbers they use
(:meth:`ImportLimits.check_count`, :meth:`ImportLimits.coordinate_bound_px`). Every refusal
is a :class:`~napari_imilia.errors.DataError` naming the file, the limit and how to raise it.

Limits come from :class:`ImportLimits` (defaults below), overridable per call or through the
environment variables in :data:`LIMIT_ENV`; see docs/security.md.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from napari_imilia.errors import DataError

#: Callback of long imports: ``progress(done, total)`` (objects read so far, all objects).
ImportProgress = Callable[[int, int], None]
#: Environment variables overriding each limit (an integer; bytes in MiB).
LIMIT_ENV: dict[str, str] = {
    "max_bytes": "IMILIA_IMPORT_MAX_MB",
    "max_objects": "IMILIA_IMPORT_MAX_OBJECTS",
    "max_depth": "IMILIA_IMPORT_MAX_DEPTH",
    "max_int_digits": "IMILIA_IMPORT_MAX_INT_DIGITS",
    "coordinate_factor": "IMILIA_IMPORT_COORDINATE_FACTOR",
}
_CHUNK = 1 << 20
_MIB = 1 << 20


@dataclass(frozen=True)
class ImportLimits:
    """Limits on one imported file. ``max_bytes``: JSON text after decompression (bytes);
    ``max_objects``: features or cells; ``max_depth``: nesting of JSON arrays and objects;
    ``max_int_digits``: digits of one integer; ``coordinate_factor``: coordinates may reach
    this many times the slide's larger side (level-0 px), or ``max_coordinate_px`` when no
    slide is known."""

    max_bytes: int = 512 * _MIB
    max_objects: int = 1_000_000
    max_depth: int = 64
    max_int_digits: int = 20
    coordinate_factor: float = 16.0
    max_coordinate_px: float = 2.0**31

    @classmethod
    def from_env(cls, **overrides: Any) -> ImportLimits:
        """Defaults, then :data:`LIMIT_ENV` variables, then ``overrides`` (not None)."""
        values: dict[str, Any] = {}
        for name, variable in LIMIT_ENV.items():
            text = os.environ.get(variable)
            if text is None or not text.strip():
                continue
            try:
                number = float(text) if name == "coordinate_factor" else int(text)
            except ValueError as error:
                raise DataError(f"{variable}={text!r} is not a number") from error
            values[name] = number * _MIB if name == "max_bytes" else number
        values.update({k: v for k, v in overrides.items() if v is not None})
        limits = cls(**values)
        for field in dataclasses.fields(limits):
            if not getattr(limits, field.name) > 0:
                raise DataError(f"import limit {field.name} must be positive")
        return limits

    def check_count(self, count: int, what: str, source: str) -> None:
        """``DataError`` when ``count`` objects exceed :attr:`max_objects`."""
        if count > self.max_objects:
            raise DataError(
                f"{source}: {count} {what} exceed the import limit of {self.max_objects} "
                f"({LIMIT_ENV['max_objects']} raises it; see docs/security.md)"
            )

    def coordinate_bound_px(self, slide_dimensions_px: tuple[int, int] | None) -> float:
        """Largest |coordinate| (level-0 px) accepted for a slide of (width, height)."""
        if slide_dimensions_px is None:
            return float(self.max_coordinate_px)
        return float(self.coordinate_factor) * max(float(v) for v in slide_dimensions_px)

    def check_coordinates(self, xy: np.ndarray, bound: float, what: str) -> None:
        """``DataError`` when a coordinate's magnitude exceeds ``bound`` (level-0 px)."""
        if xy.size and float(np.abs(xy).max()) > bound:
            worst = xy[np.unravel_index(int(np.argmax(np.abs(xy))), xy.shape)[0]]
            raise DataError(
                f"{what}: coordinate {np.asarray(worst).tolist()} is beyond the limit of "
                f"{bound:.6g} level-0 px ({self.coordinate_factor:g} x the slide's larger "
                f"side; {LIMIT_ENV['coordinate_factor']} raises it)"
            )


def _too_big(source: str, limits: ImportLimits) -> DataError:
    return DataError(
        f"{source}: more than {limits.max_bytes / _MIB:.0f} MiB of JSON once decompressed, "
        f"the import limit ({LIMIT_ENV['max_bytes']} raises it; see docs/security.md)"
    )


def _read_capped(stream: IO[bytes], source: str, limits: ImportLimits) -> bytes | bytearray:
    """All of ``stream`` (a decompressing one is inflated chunk by chunk), refused past
    ``limits.max_bytes``."""
    data = bytearray()
    while chunk := stream.read(_CHUNK):
        if len(data) + len(chunk) > limits.max_bytes:
            raise _too_big(source, limits)
        data += chunk
    return bytes(data) if len(data) < _CHUNK else data  # no second copy of a large text


def read_json_entries(
    path: str | os.PathLike[str], limits: ImportLimits | None = None
) -> list[tuple[str, Any]]:
    """Parsed JSON of a plain, gzip or zip file as ``[(source, data)]``: one entry, or one
    per ``.json``/``.geojson`` member of a zip (``source`` is ``path`` or ``path:member``).
    The file is read once; see the module docstring for the limits applied."""
    limits = limits or ImportLimits.from_env()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        if magic[:2] == b"\x1f\x8b":
            try:
                with gzip.GzipFile(fileobj=handle) as stream:
                    raw = _read_capped(stream, str(path), limits)
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise DataError(f"{path}: damaged gzip file ({error}); export it again") from error
            return [(str(path), parse_json(raw, str(path), limits))]
        if magic == b"PK\x03\x04":
            return [
                (source, parse_json(raw, source, limits))
                for source, raw in _zip_entries(handle, path, limits)
            ]
        return [(str(path), parse_json(_read_capped(handle, str(path), limits), str(path), limits))]


def _zip_entries(
    handle: IO[bytes], path: Path, limits: ImportLimits
) -> Iterator[tuple[str, bytes | bytearray]]:
    try:
        with zipfile.ZipFile(handle) as archive:
            members = sorted(
                (
                    i
                    for i in archive.infolist()
                    if i.filename.lower().endswith((".geojson", ".json"))
                ),
                key=lambda i: i.filename,
            )
            if not members:
                raise DataError(f"{path}: the zip archive holds no .geojson or .json file")
            if sum(i.file_size for i in members) > limits.max_bytes:  # declared sizes
                raise _too_big(str(path), limits)
            budget = limits
            for info in members:
                source = f"{path}:{info.filename}"
                with archive.open(info) as stream:
                    raw = _read_capped(stream, source, budget)
                budget = dataclasses.replace(budget, max_bytes=budget.max_bytes - len(raw))
                yield source, raw
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{path}: damaged zip file ({error}); export it again") from error


#: A JSON string (with its escapes), skipped when measuring nesting.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def json_depth(raw: bytes | bytearray) -> int:
    """Deepest nesting of arrays and objects in JSON text (brackets inside strings ignored);
    linear time, one copy of the text without its strings plus chunked counters."""
    outside = _JSON_STRING.sub(b"", raw)
    depth, deepest = 0, 0
    for start in range(0, len(outside), 8 * _CHUNK):
        chunk = np.frombuffer(
            outside, dtype=np.uint8, count=min(8 * _CHUNK, len(outside) - start), offset=start
        )
        levels = depth + np.cumsum(_DEPTH_STEP[chunk], dtype=np.int64)
        if levels.size:
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
    return deepest


def parse_json(raw: bytes | bytearray, source: str, limits: ImportLimits | None = None) -> Any:
    """``json.loads`` of UTF-8 bytes (a BOM allowed) within ``limits`` (depth, integer
    digits); ``DataError`` naming ``source`` for anything malformed or over a limit.
    NaN and ±Infinity are accepted as JSON extensions (QuPath writes NaN measurements); the
    readers check the numbers they use."""
    limits = limits or ImportLimits.from_env()
    if len(raw) > limits.max_bytes:
        raise _too_big(source, limits)
    brackets = raw.count(b"[") + raw.count(b"{")  # fewer than the limit: no need to measure
    depth = json_depth(raw) if brackets > limits.max_depth else 0
    if depth > limits.max_depth:
        raise DataError(
            f"{source}: JSON nested {depth} levels deep, over the import limit of "
            f"{limits.max_depth} ({LIMIT_ENV['max_depth']} raises it)"
        )

    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > limits.max_int_digits:
            raise DataError(
                f"{source}: an integer of {len(text.lstrip('-'))} digits ({text[:12]}...) "
                f"exceeds the import limit of {limits.max_int_digits} digits "
                f"({LIMIT_ENV['max_int_digits']} raises it)"
            )
        return int(text)

    try:
        return json.loads(raw.decode("utf-8-sig"), parse_int=bounded_int)
    except UnicodeDecodeError as error:
        raise DataError(f"{source}: not UTF-8 text, so not JSON") from error
    except json.JSONDecodeError as error:
        raise DataError(
            f"{source}: not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg}); the file is damaged or not of the expected kind - export it again"
        ) from error
    except (RecursionError, ValueError, OverflowError) as error:  # belt and braces
        raise DataError(f"{source}: JSON outside the import limits ({error})") from error
