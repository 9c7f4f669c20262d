"""Every dock's content sits in a scroll area, so a crowded dock column still fits the screen.

napari stacks dock widgets in one column and the main window grows to the sum of their
minimum heights (seven docks reached 2578 px). ``scroll_content(widget)`` gives the dock
widget a frameless :class:`DockScrollArea` whose minimum height is ``DOCK_MIN_HEIGHT_PX``:
when the column is short the content scrolls instead of being squeezed (labels are never
drawn over each other) or pushing the window off the screen. The width stays the content's
own, so nothing scrolls sideways.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

#: Smallest height of a dock's content area, screen pixels (about three lines of text).
DOCK_MIN_HEIGHT_PX = 60


class DockScrollArea(QScrollArea):
    """A resizable, frameless scroll area: content width, ``DOCK_MIN_HEIGHT_PX`` minimum height."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)

    def _bar_px(self) -> int:
        return self.verticalScrollBar().sizeHint().width()

    def sizeHint(self) -> QSize:
        hint = self.widget().sizeHint()
        return QSize(hint.width() + self._bar_px(), hint.height())

    def minimumSizeHint(self) -> QSize:
        width = self.widget().minimumSizeHint().width() + self._bar_px()
        return QSize(width, DOCK_MIN_HEIGHT_PX)


def scroll_content(widget: QWidget) -> QWidget:
    """Make ``widget`` hold only a :class:`DockScrollArea`; returns the content widget in it,
    on which the dock lays out its controls."""
    content = QWidget()
    area = DockScrollArea(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    # an expanding dock widget: napari adds no stretch under it, the scroll area gets the height
    policy = QSizePolicy.Policy.Expanding
    widget.setSizePolicy(QSizePolicy.Policy.Preferred, policy)
    widget.scroll_area = area  # type: ignore[attr-defined]
    return content
