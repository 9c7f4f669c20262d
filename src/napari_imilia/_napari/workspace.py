"""The review workspace: every napari-imilia dock open at once, arranged to fit the screen.

:func:`open_workspace` (npe2 command ``napari-imilia.open_workspace``, in the command
palette) opens the eight docks in three tab groups down the right-hand side, sized to the
screen's available height, and fits the main window inside the screen. npe2 cannot add a
command to napari's Plugins menu, so the menu entry is the *Review workspace* dock
(:class:`WorkspaceWidget`): opening it arranges the workspace and it lists the review keys.
Every dock scrolls its own content (``_dock_scroll``), so the column never outgrows the
screen, whatever docks are open.
"""

from __future__ import annotations

from typing import Any

from napari.viewer import Viewer
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.keys import keys_help_html

PLUGIN = "napari-imilia"
WORKSPACE_DOCK = "Review workspace"
#: Tab groups down the right-hand side, by manifest display name; the first of each is shown.
WORKSPACE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Slide and model", "Heatmap", "Export / import", WORKSPACE_DOCK),
    ("Top tiles", "Plots", "Tile inspector"),
    ("Review", "Cohort"),
)
#: Share of the dock column's height given to each group.
GROUP_HEIGHT_SHARES = (0.27, 0.43, 0.30)
#: Below this available screen height (px) the Top tiles gallery starts hidden, so its
#: list shows more rows (the "thumbnails" box brings it back).
GALLERY_MIN_SCREEN_PX = 900
#: Dock column width as a share of the screen width, within these bounds (screen px).
DOCK_WIDTH_SHARE = 0.3
DOCK_WIDTH_PX = (380, 560)
_ARRANGING: list[bool] = []


def available_geometry(widget: QWidget | None = None) -> Any:
    """The available geometry (``QRect``, screen px) of the screen showing ``widget``, else
    of the primary screen."""
    screen = widget.screen() if widget is not None else None
    if screen is None:
        screen = QApplication.primaryScreen()
    return screen.availableGeometry()


def fit_window_to_screen(window: QWidget) -> None:
    """Resize and move ``window`` so its frame lies inside the available screen area."""
    area = available_geometry(window)
    frame, inner = window.frameGeometry(), window.geometry()
    extra_w = max(frame.width() - inner.width(), 0)
    extra_h = max(frame.height() - inner.height(), 0)
    width = min(inner.width(), area.width() - extra_w)
    height = min(inner.height(), area.height() - extra_h)
    window.resize(max(width, 1), max(height, 1))
    x = min(max(frame.x(), area.x()), area.x() + area.width() - (width + extra_w))
    y = min(max(frame.y(), area.y()), area.y() + area.height() - (height + extra_h))
    window.move(x, y)


def open_workspace(viewer: Viewer) -> dict[str, Any]:
    """Open every napari-imilia dock in ``viewer``'s window, in ``WORKSPACE_GROUPS`` tab
    groups sized to the screen, and fit the window in the screen. Returns the dock widgets
    (the ``QtViewerDockWidget`` wrappers) by display name. Docks already open are reused."""
    _ARRANGING.append(True)
    try:
        return _arrange(viewer)
    finally:
        _ARRANGING.pop()


def _all_docks() -> list[str]:
    return [name for group in WORKSPACE_GROUPS for name in group]


def _arrange(viewer: Viewer) -> dict[str, Any]:
    window = viewer.window
    main = window._qt_window
    area = available_geometry(main)
    if main.isVisible():  # a workstation: the window takes the whole available screen
        main.setGeometry(area)
    docks: dict[str, Any] = {}
    firsts = []
    already_open = {f"{name} ({PLUGIN})" for name in _all_docks()} & set(window.dock_widgets)
    for group in WORKSPACE_GROUPS:
        for position, name in enumerate(group):
            # a new dock joins the tab group of the dock opened just before it (napari's tabify)
            dock, _widget = window.add_plugin_dock_widget(PLUGIN, name, tabify=position > 0)
            dock.setFloating(False)
            dock.show()
            docks[name] = dock
        firsts.append(docks[group[0]])
    if already_open:  # docks opened earlier sit where the user left them: regroup them
        for group, first in zip(WORKSPACE_GROUPS, firsts, strict=True):
            main.addDockWidget(
                Qt.DockWidgetArea.RightDockWidgetArea, first, Qt.Orientation.Vertical
            )
            for name in group[1:]:
                main.tabifyDockWidget(first, docks[name])
    column_px = area.height() - 80  # the menu and status bars
    heights = [max(int(column_px * share), 1) for share in GROUP_HEIGHT_SHARES]
    main.resizeDocks(firsts, heights, Qt.Orientation.Vertical)
    width = int(min(max(area.width() * DOCK_WIDTH_SHARE, DOCK_WIDTH_PX[0]), DOCK_WIDTH_PX[1]))
    main.resizeDocks(firsts[:1], [width], Qt.Orientation.Horizontal)
    for first in firsts:
        first.raise_()
    if area.height() < GALLERY_MIN_SCREEN_PX:
        docks["Top tiles"].inner_widget().gallery_check.setChecked(False)
    if main.isVisible():
        QApplication.processEvents()
        fit_window_to_screen(main)
    return docks


class WorkspaceWidget(QWidget):
    """The *Review workspace* dock (npe2 ``napari-imilia.workspace``, in the Plugins menu):
    opening it arranges every dock (:func:`open_workspace`); it lists the review keys."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.arrange_button = QPushButton("Arrange all docks to fit the screen")
        self.arrange_button.clicked.connect(self.arrange)
        keys = QLabel(keys_help_html())
        keys.setWordWrap(True)
        keys.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(scroll_content(self))
        layout.addWidget(self.arrange_button)
        layout.addWidget(keys)
        layout.addStretch(1)
        if not _ARRANGING:  # opened from the Plugins menu: arrange once it is docked
            QTimer.singleShot(0, self.arrange)

    def arrange(self) -> None:
        """Open and arrange every dock (this one tabbed with Review)."""
        open_workspace(self.viewer)
