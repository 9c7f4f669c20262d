"""User text in Qt widgets: shown as written, never interpreted as HTML.

A ``QLabel`` guesses whether its text is HTML (``Qt.AutoText``), and so does a tooltip: a
slide file named ``<h1 style=color:red>VERIFIED OK<h1>.svs``, a reviewer's name or a note
would be rendered as markup. Labels that show file names, slide ids, reviewer names, notes,
model names or error messages are :func:`plain_label` (``Qt.PlainText``); tooltips holding
such text go through :func:`plain_tooltip`; rich labels escape what they embed with
:func:`escaped`. napari's own status bar shows a layer's source file name the same way, so
:func:`plain_status_bar` makes its labels plain too (every dock calls it).
"""

from __future__ import annotations

import html
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QLabel, QStatusBar


def plain_label(text: str = "") -> QLabel:
    """A ``QLabel`` whose text is always shown literally (``Qt.PlainText``)."""
    label = QLabel()
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(text)
    return label


def escaped(text: object) -> str:
    """``text`` escaped for a rich-text label (``<``, ``>``, ``&`` and quotes)."""
    return html.escape(str(text))


def plain_tooltip(text: str) -> str:
    """A tooltip that shows ``text`` literally: escaped inside a rich-text block (a plain
    string holding a tag would be rendered as HTML); line breaks kept."""
    return "<qt>" + escaped(text).replace("\n", "<br>") + "</qt>"


def plain_status_bar(viewer: Any = None) -> None:
    """Make the labels of the main windows' status bars plain text: napari shows the source
    file name of the layer under the cursor there, which would otherwise be rendered as
    HTML. Found through Qt (napari's window attribute is private); ``viewer`` is unused."""
    for window in QApplication.topLevelWidgets():
        for bar in window.findChildren(QStatusBar):
            for label in bar.findChildren(QLabel):
                label.setTextFormat(Qt.TextFormat.PlainText)


class StatusLabel(QLabel):
    """A wrapped line of status that takes no room while it has nothing to say."""

    def __init__(self) -> None:
        super().__init__("")
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)  # file names and errors are not markup
        self.setVisible(False)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setVisible(bool(text))
