"""The slide half of the Slide and model dock: metadata lines, thumbnail, and the MPP field
for a slide whose pixel size is missing or wrong (it reopens the slide in µm)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

from napari_imilia._napari.docks.text import escaped
from napari_imilia._napari.layers.placement import slide_layer
from napari_imilia._napari.notify import notify
from napari_imilia._napari.reader import slide_layer_data
from napari_imilia.errors import SlideError
from napari_imilia.slide import BACKEND_CHOICES, PLAUSIBLE_MPP_RANGE, open_slide

THUMBNAIL_PX = 180
#: What the slide MPP field proposes for a slide without one (µm/px, a 20x scan).
DEFAULT_SLIDE_MPP = 0.5


def rgb_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of an (H, W, 3) uint8 RGB array (copied)."""
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    height, width = image.shape[:2]
    qimage = QImage(image.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return QPixmap.fromImage(qimage.copy())


def slide_thumbnail(slide: Any, max_px: int = THUMBNAIL_PX) -> np.ndarray:
    """The slide's own thumbnail image when it has one, else one made from its levels."""
    from PIL import Image

    image = None
    if "thumbnail" in getattr(slide, "associated_image_names", ()):
        image = slide.associated_image("thumbnail")
    if image is None:
        image = slide.thumbnail(max_px)
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil.thumbnail((max_px, max_px))
    return np.asarray(pil.convert("RGB"))


def describe_slide(summary: dict[str, Any]) -> str:
    """Metadata lines (rich text; what the file says is escaped): file, level-0 size, MPP (and
    source), objective, vendor, levels."""
    width, height = summary["dimensions_px"]
    mpp = summary.get("mpp")
    mpp_text = (
        f"{mpp:.4g} µm/px ({summary.get('mpp_source')})"
        if mpp
        else f"unknown ({summary.get('mpp_warning') or 'no MPP'}): cannot be scored"
    )
    objective = summary.get("objective_power")
    slide_id = escaped(summary["slide_id"])
    lines = [
        # a zero-width space after each '_' lets a long slide id wrap in a narrow dock
        f"<b>{slide_id.replace('_', '_' + chr(0x200B))}</b>",
        f"{width} × {height} px at level 0, {len(summary['level_dimensions_px'])} levels"
        f" ({summary['native_levels']} native)",
        f"MPP: {escaped(mpp_text)}",
        f"objective: {f'{objective:g}x' if objective else 'unknown'}",
        f"vendor: {escaped(summary.get('vendor') or 'unknown')}",
    ]
    if mpp:
        lines.insert(2, f"size: {width * mpp / 1000:.2f} × {height * mpp / 1000:.2f} mm")
    return "<br>".join(lines)


def missing_mpp_text(slide: Any) -> str:
    """Why ``slide`` cannot be scored and what to do in the dock (its MPP is None)."""
    problem = slide.mpp_warning or "the slide has no MPP metadata"
    return (
        f"{problem}; enter its level-0 pixel size under 'slide MPP' and press Set slide MPP "
        "(e.g. 0.25 µm/px for 40x, 0.5 for 20x)"
    )


class SlideMppRow(QWidget):
    """``slide MPP [µm/px] [Set slide MPP]``, shown for a slide without a usable MPP (or
    with one set here); ``requested(µm/px)`` when the button is pressed."""

    requested = Signal(float)

    def __init__(self) -> None:
        super().__init__()
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setRange(*PLAUSIBLE_MPP_RANGE)
        self.spin.setSingleStep(0.05)
        self.spin.setValue(DEFAULT_SLIDE_MPP)
        self.spin.setSuffix(" µm/px")
        self.button = QPushButton("Set slide MPP")
        self.button.setToolTip("Reopen the slide with this level-0 pixel size")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("slide MPP"))
        layout.addWidget(self.spin, 1)
        layout.addWidget(self.button)
        self.button.clicked.connect(lambda _=False: self.requested.emit(self.spin.value()))
        self.setVisible(False)

    def show_for(self, slide: Any) -> None:
        """Show the row for a slide without MPP or with one set here (its value filled in)."""
        self.setVisible(slide.mpp is None or slide.mpp_source == "override")
        if slide.mpp is not None:
            self.spin.setValue(float(slide.mpp))


def reopen_with_mpp(viewer: Any, session: Any, um_per_px: float) -> Any | None:
    """Replace ``session``'s slide layer by the same file opened with ``um_per_px`` µm per
    level-0 px (so in µm); returns the new layer, or None after an error notification."""
    from napari.layers import Image

    if session is None:
        notify("error", "napari-imilia: open a slide before setting its MPP")
        return None
    try:
        backend = getattr(session.slide, "backend", "auto")  # the library it was read with
        backend = backend if backend in BACKEND_CHOICES else "auto"
        slide = open_slide(session.slide.path, mpp=um_per_px, backend=backend)
    except SlideError as error:
        notify("error", f"napari-imilia: {error}")
        return None
    old = slide_layer(viewer, session)
    data, kwargs, _ = slide_layer_data(slide)
    layer = viewer.add_layer(Image(data, **kwargs))  # the viewer link starts its session
    if old is not None:
        viewer.layers.remove(old)
        layer.name = kwargs["name"]
    viewer.reset_view()
    return layer
