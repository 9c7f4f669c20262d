"""A foldable section of a dock: settings a reviewer rarely changes stay one click away
without pushing the results below the fold.

:class:`FoldSection` is a flat toggle button ("▸ Settings") over its content; folded, the
content is hidden (not only squeezed), so the dock's layout gives its height to the rest.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QScrollArea, QSizePolicy, QToolButton, QVBoxLayout, QWidget

FOLDED_ARROW, UNFOLDED_ARROW = Qt.ArrowType.RightArrow, Qt.ArrowType.DownArrow


class FoldSection(QWidget):
    """``title`` over ``content``; ``toggled(unfolded)`` when the user folds or unfolds it."""

    toggled = Signal(bool)

    def __init__(self, title: str, content: QWidget, *, unfolded: bool = False) -> None:
        super().__init__()
        self.content = content
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setAutoRaise(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.button)
        layout.addWidget(content)
        self.button.toggled.connect(self._show)
        self.set_unfolded(unfolded)

    @property
    def unfolded(self) -> bool:
        return self.button.isChecked()

    def set_unfolded(self, unfolded: bool) -> None:
        """Unfold (True) or fold the section (no ``toggled``: that is for the user's clicks)."""
        self.button.blockSignals(True)
        self.button.setChecked(unfolded)
        self.button.blockSignals(False)
        self._apply(unfolded)

    def _show(self, unfolded: bool) -> None:
        self._apply(unfolded)
        self.toggled.emit(unfolded)

    def _apply(self, unfolded: bool) -> None:
        self.button.setArrowType(UNFOLDED_ARROW if unfolded else FOLDED_ARROW)
        self.content.setVisible(unfolded)
        # the enclosing layouts, up to the dock's scroll area, take the new height now: a
        # layout whose last request came while its dock was a hidden tab would otherwise keep
        # the old height (a blank under the folded title) until the dock is resized
        self.updateGeometry()
        widget: QWidget | None = self
        while widget is not None and not isinstance(widget, QScrollArea):
            if widget.layout() is not None:
                widget.layout().activate()
            widget = widget.parentWidget()
