"""OME-XML of an OME-TIFF: physical pixel size in any OME length unit, objective magnification.

tiffslide reads an OME-TIFF's pyramid but not the ``PhysicalSizeX/Y`` of its OME-XML; this
module reads them (the first image's ``Pixels``), converts any unit OME's ``UnitsLength``
allows to µm, and finds the objective's ``NominalMagnification``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

#: µm per unit for every physical unit of OME's ``UnitsLength`` (plus common spellings).
UM_PER_UNIT: dict[str, float] = {
    "Ym": 1e30,
    "Zm": 1e27,
    "Em": 1e24,
    "Pm": 1e21,
    "Tm": 1e18,
    "Gm": 1e15,
    "Mm": 1e12,
    "km": 1e9,
    "hm": 1e8,
    "dam": 1e7,
    "m": 1e6,
    "dm": 1e5,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "μm": 1.0,  # Greek mu (U+03BC), as some writers spell it
    "um": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "fm": 1e-9,
    "am": 1e-12,
    "zm": 1e-15,
    "ym": 1e-18,
    "\u00c5": 1e-4,  # Å, Latin capital A with ring (what OME writes)
    "\u212b": 1e-4,  # Å, the Angstrom sign
    "thou": 25.4,
    "li": 25400.0 / 12.0,  # line: 1/12 inch (OME's schema)
    "in": 25400.0,
    "ft": 304800.0,
    "yd": 914400.0,
    "mi": 1609344000.0,
    "ua": 1.495978707e17,
    "ly": 9.4607304725808e21,
    "pc": 3.0856775814913673e22,
    "pt": 25400.0 / 72.0,
}
#: OME units that are not physical lengths: no MPP can come from them.
NON_PHYSICAL_UNITS = ("pixel", "reference frame")
#: The unit OME uses when ``PhysicalSizeXUnit`` is absent.
OME_DEFAULT_UNIT = "µm"


@dataclass(frozen=True)
class OmePixelSize:
    """Level-0 pixel size from OME-XML, in µm, and the text it was read from."""

    mpp_x: float
    mpp_y: float
    origin: str


class OmeUnitError(ValueError):
    """A PhysicalSize unit that is not a length napari-imilia can convert to µm."""


def to_micrometres(value: float, unit: str) -> float:
    """``value`` in OME length ``unit`` (e.g. "nm", "Å", "in") converted to µm."""
    unit = unit.strip()
    if unit in NON_PHYSICAL_UNITS:
        raise OmeUnitError(f"the OME unit {unit!r} is not a physical length")
    try:
        return value * UM_PER_UNIT[unit]
    except KeyError:
        raise OmeUnitError(f"unknown OME length unit {unit!r}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _first(root: ET.Element, name: str) -> ET.Element | None:
    return next((el for el in root.iter() if _local(el.tag) == name), None)


def parse_ome(xml: str) -> tuple[OmePixelSize | None, float | None, str | None]:
    """(pixel size, objective magnification, problem) from an OME-XML document.

    ``problem`` explains a physical size that is present but unusable (unknown unit,
    not a number); the pixel size is then ``None``.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        return None, None, f"its OME-XML cannot be parsed ({error})"
    image = _first(root, "Image")
    pixels = _first(image, "Pixels") if image is not None else _first(root, "Pixels")
    size, problem = (None, None) if pixels is None else _pixel_size(pixels)
    return size, _magnification(root, image), problem


def _pixel_size(pixels: ET.Element) -> tuple[OmePixelSize | None, str | None]:
    raw_x = pixels.get("PhysicalSizeX")
    if raw_x is None:
        return None, None
    unit_x = pixels.get("PhysicalSizeXUnit", OME_DEFAULT_UNIT)
    raw_y, unit_y = raw_x, unit_x
    if pixels.get("PhysicalSizeY") is not None:
        raw_y = pixels.get("PhysicalSizeY", raw_x)
        unit_y = pixels.get("PhysicalSizeYUnit", OME_DEFAULT_UNIT)
    try:
        mpp_x = to_micrometres(float(raw_x), unit_x)
        mpp_y = to_micrometres(float(raw_y), unit_y)
    except (OmeUnitError, ValueError) as error:
        return None, f"its OME-XML PhysicalSizeX = {raw_x} {unit_x} is unusable: {error}"
    origin = f"OME-XML PhysicalSizeX = {raw_x} {unit_x}"
    return OmePixelSize(mpp_x, mpp_y, origin), None


def _magnification(root: ET.Element, image: ET.Element | None) -> float | None:
    objectives = [el for el in root.iter() if _local(el.tag) == "Objective"]
    if not objectives:
        return None
    chosen = objectives[0]
    settings = _first(image, "ObjectiveSettings") if image is not None else None
    if settings is not None:
        wanted = settings.get("ID")
        chosen = next((o for o in objectives if o.get("ID") == wanted), chosen)
    value = chosen.get("NominalMagnification")
    try:
        return float(value) if value else None
    except ValueError:
        return None
