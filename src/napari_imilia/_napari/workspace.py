"""The review workspace: every napari-imilia dock open at once, arranged to fit the screen.

:func:`open_workspace` (npe2 command ``napari-imilia.open_workspace``, in the command
palette) opens the nine docks in two tab groups down the right-hand side and fits the main
window inside the screen. npe2 cannot add a command to napari's Plugins menu, so the menu
entry is the *Review workspace* dock (:class:`WorkspaceWidget`): opening it arranges the
workspace and it lists the review keys.

Made for a laptop (1366 x 768) as much as a workstation:

- the canvas gets most of the width: napari's layer controls and layer list are folded away
  (the *Layers* button in the status bar, or napari's Window menu, brings them back in one
  click), and the dock column takes :data:`DOCK_WIDTH_SHARE` of the screen;
- the top group starts on the Cohort dock when a cohort is under review (else on *Slide and
  model*) and takes most of the height then (:data:`GROUP_HEIGHT_SHARES`), so the cohort
  table (at least 8 rows), its buttons and the slide's grade form show together beside the
  slide; the bottom group starts on the Review dock;
- tab titles are short (:data:`TAB_TITLES`) and never elided;
- every dock scrolls its own content (``docks.scroll``), so the column never outgrows the
  screen, whatever docks are open.

The main window is reached through public API only (``compat.main_window``).
"""

from __future__ import annotations

import weakref
from typing import Any

from napari.viewer import Viewer
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QPushButton,
    QTabBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.compat import main_window
from napari_imilia._napari.docks.scroll import scroll_content
from napari_imilia._napari.keys import keys_help_html
from napari_imilia._napari.state import viewer_state

PLUGIN = "napari-imilia"
WORKSPACE_DOCK = "Review workspace"
#: Tab groups down the right-hand side, by manifest display name, top to bottom.
WORKSPACE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Cohort", "Slide and model", "Heatmap", "Export / import", WORKSPACE_DOCK),
    ("Review", "Top tiles", "Tile inspector", "Plots"),
)
#: Short tab titles (the manifest names with "(napari-imilia)" are elided at 1366 px).
TAB_TITLES: dict[str, str] = {
    "Cohort": "Cohort",
    "Slide and model": "Slide",
    "Heatmap": "Heatmap",
    "Export / import": "Export",
    WORKSPACE_DOCK: "Keys",
    "Review": "Review",
    "Top tiles": "Top tiles",
    "Tile inspector": "Inspector",
    "Plots": "Plots",
}
#: Share of the dock column's height of each group: with a cohort under review (the table
#: and grade form on top; on a laptop screen they need most of it), and without one (the
#: Review / Top tiles group gets more).
GROUP_HEIGHT_SHARES: dict[bool, tuple[float, float]] = {True: (0.7, 0.3), False: (0.36, 0.64)}
#: On screens at least this high (px) the cohort group needs a smaller share.
TALL_SCREEN_PX = 900
TALL_COHORT_SHARES = (0.6, 0.4)
#: Below this available screen height (px) the Top tiles gallery starts hidden, so its
#: list shows more rows (the "thumbnails" box brings it back).
GALLERY_MIN_SCREEN_PX = 900
#: Dock column width as a share of the screen width, within these bounds (screen px).
DOCK_WIDTH_SHARE = 0.34
DOCK_WIDTH_PX = (420, 600)
#: napari's own docks folded away in the workspace (their Qt object names).
NAPARI_LAYER_DOCKS: tuple[str, ...] = ("layer controls", "layer list")
LAYERS_BUTTON = "imilia_layers_button"
_ARRANGING: list[bool] = []
_FOLLOWED: weakref.WeakSet[Any] = weakref.WeakSet()


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
    groups sized to the screen, fold napari's layer docks away and fit the window in the
    screen. Returns the dock widgets (the ``QtViewerDockWidget`` wrappers) by display name.
    Docks already open are reused."""
    _ARRANGING.append(True)
    try:
        return _arrange(viewer)
    finally:
        _ARRANGING.pop()


def _all_docks() -> list[str]:
    return [name for group in WORKSPACE_GROUPS for name in group]


def _arrange(viewer: Viewer) -> dict[str, Any]:
    window = viewer.window
    main = main_window(viewer)
    area = available_geometry(main)
    if main.isVisible():  # a workstation: the window takes the whole available screen
        main.setGeometry(area)
    docks: dict[str, Any] = {}
    already_open = {f"{name} ({PLUGIN})" for name in _all_docks()} & set(window.dock_widgets)
    for group in WORKSPACE_GROUPS:
        for position, name in enumerate(group):
            # a new dock joins the tab group of the dock opened just before it (napari's tabify)
            dock, _widget = window.add_plugin_dock_widget(PLUGIN, name, tabify=position > 0)
            dock.setFloating(False)
            dock.setWindowTitle(TAB_TITLES[name])
            dock.show()
            docks[name] = dock
    firsts = [docks[group[0]] for group in WORKSPACE_GROUPS]
    if already_open:  # docks opened earlier sit where the user left them: regroup them
        for group, first in zip(WORKSPACE_GROUPS, firsts, strict=True):
            main.addDockWidget(
                Qt.DockWidgetArea.RightDockWidgetArea, first, Qt.Orientation.Vertical
            )
            for name in group[1:]:
                main.tabifyDockWidget(first, docks[name])
    fold_layer_docks(main)
    width = int(min(max(area.width() * DOCK_WIDTH_SHARE, DOCK_WIDTH_PX[0]), DOCK_WIDTH_PX[1]))
    main.resizeDocks(firsts[:1], [width], Qt.Orientation.Horizontal)
    cohort = viewer_state(viewer).cohort is not None
    docks["Cohort" if cohort else "Slide and model"].raise_()
    docks["Review"].raise_()
    _fit_groups(main, docks, cohort)
    _follow_cohort(viewer, main, docks)
    if area.height() < GALLERY_MIN_SCREEN_PX:
        docks["Top tiles"].inner_widget().gallery_check.setChecked(False)
    readable_tabs(main)
    if main.isVisible():
        QApplication.processEvents()
        fit_window_to_screen(main)
    return docks


def _fit_groups(main: Any, docks: dict[str, Any], cohort: bool) -> None:
    """Share the column's height between the groups (:data:`GROUP_HEIGHT_SHARES`)."""
    firsts = [docks[group[0]] for group in WORKSPACE_GROUPS]
    screen_px = available_geometry(main).height()
    column_px = screen_px - 80  # the menu and status bars
    shares = GROUP_HEIGHT_SHARES[cohort]
    if cohort and screen_px >= TALL_SCREEN_PX:
        shares = TALL_COHORT_SHARES
    heights = [max(int(column_px * share), 1) for share in shares]
    main.resizeDocks(firsts, heights, Qt.Orientation.Vertical)


def _follow_cohort(viewer: Viewer, main: Any, docks: dict[str, Any]) -> None:
    """When a cohort is opened (closed) later, the top group shows the Cohort dock and grows
    (gives the height back)."""
    state = viewer_state(viewer)
    if state in _FOLLOWED:
        return
    _FOLLOWED.add(state)
    main_ref = weakref.ref(main)
    dock_refs = {name: weakref.ref(dock) for name, dock in docks.items()}

    def on_cohort(cohort: Any) -> None:
        main_now = main_ref()
        now = {name: ref() for name, ref in dock_refs.items()}
        if main_now is None or any(dock is None for dock in now.values()):
            return
        try:
            if cohort is not None:
                now["Cohort"].raise_()
            _fit_groups(main_now, now, cohort is not None)
        except RuntimeError:  # the window was closed
            state.cohort_changed.disconnect(on_cohort)

    state.cohort_changed.connect(on_cohort)


def fold_layer_docks(main: Any) -> QToolButton | None:
    """Hide napari's layer controls and layer list; a checkable *Layers* button in the
    status bar brings them back (napari's Window menu does too). Returns the button."""
    docks = [main.findChild(QDockWidget, name) for name in NAPARI_LAYER_DOCKS]
    docks = [dock for dock in docks if dock is not None]
    if not docks:
        return None
    button = main.findChild(QToolButton, LAYERS_BUTTON)
    if button is None:
        button = QToolButton()
        button.setObjectName(LAYERS_BUTTON)
        button.setText("Layers")
        button.setCheckable(True)
        button.setToolTip("Show napari's layer list and layer controls (also: Window menu)")
        main.statusBar().addPermanentWidget(button)

        def show_layers(shown: bool) -> None:
            for dock in docks:
                dock.setVisible(shown)

        def follow(_visible: bool) -> None:  # the Window menu's toggles keep it in step
            button.blockSignals(True)
            button.setChecked(any(not d.isHidden() for d in docks))
            button.blockSignals(False)

        button.toggled.connect(show_layers)
        for dock in docks:
            dock.visibilityChanged.connect(follow)
    button.setChecked(False)
    for dock in docks:
        dock.setVisible(False)
    return button


def readable_tabs(main: Any) -> None:
    """Tab titles in full (never elided); scroll arrows when a group has too many tabs."""
    for bar in main.findChildren(QTabBar):
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)


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
        """Open and arrange every dock (this one tabbed with Cohort and Slide and model)."""
        open_workspace(self.viewer)
