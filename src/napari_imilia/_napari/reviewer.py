"""The reviewer's identity in the napari wing: asked once, at the first review action.

The name itself is the core's (``review.reviewer``: one checked name per user, kept in the
user's settings). Every review action (a verdict key or button, a region's verdict, a note,
a slide grade) is signed through :func:`reviewer_for_action`: the saved name, else, in a
window the user sees, a small dialog asks for it once (:func:`ask_reviewer_name`) and saves
it. A hidden viewer (scripts, tests) never blocks on a dialog: its actions carry the saved
name, or none. The Review dock shows the name in its header, the one place to change it;
:data:`REVIEWER` announces every change so each view follows.
"""

from __future__ import annotations

from typing import Any

from psygnal import Signal

from napari_imilia._napari.compat import main_window
from napari_imilia._napari.notify import notify
from napari_imilia.errors import ImiliaError
from napari_imilia.review.reviewer import load_reviewer, save_reviewer

DIALOG_TITLE = "Who is reviewing?"
DIALOG_TEXT = (
    "Your name or initials. They are written with every verdict, region, note and slide "
    "grade, and in the reports. Asked once; change it in the Review dock."
)


class _ReviewerEvents:
    """``changed(name)`` after the reviewer's name was saved."""

    changed = Signal(str)


REVIEWER = _ReviewerEvents()


def ask_reviewer_name(parent: Any, current: str = "", problem: str = "") -> str | None:
    """The name typed in a modal dialog over ``parent`` (None when cancelled)."""
    from qtpy.QtWidgets import QInputDialog, QLineEdit

    dialog = QInputDialog(parent)
    dialog.setWindowTitle(DIALOG_TITLE)
    dialog.setLabelText(DIALOG_TEXT + (f"\n\n{problem}" if problem else ""))
    dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
    dialog.setTextValue(current)
    if not dialog.exec():
        return None
    return dialog.textValue()


def set_reviewer(name: str) -> str:
    """Check and save ``name`` (``ImiliaError`` when it cannot be a name, ``OSError`` when
    it cannot be written) and announce it; returns it as saved."""
    saved = save_reviewer(name)
    REVIEWER.changed.emit(saved)
    return saved


def change_reviewer(parent: Any) -> str:
    """Ask for the reviewer's name (the saved one filled in) until it is a valid name or the
    dialog is cancelled; returns the name in force afterwards."""
    current, problem = load_reviewer(), ""
    while True:
        typed = ask_reviewer_name(parent, current, problem)
        if typed is None:
            return load_reviewer()
        try:
            return set_reviewer(typed)
        except ImiliaError as error:
            current, problem = typed, str(error)
        except OSError as error:
            notify("warning", f"reviewer name not remembered: {error}")
            return typed.strip()


def reviewer_for_action(viewer: Any) -> str:
    """The name a review action in ``viewer`` is signed with: the saved one; without one, the
    name asked once in a dialog when ``viewer``'s window is shown ('' when it is hidden or
    the dialog was cancelled)."""
    name = load_reviewer()
    if name:
        return name
    window = main_window(viewer)
    if window is None or not window.isVisible():
        return ""
    return change_reviewer(window)
