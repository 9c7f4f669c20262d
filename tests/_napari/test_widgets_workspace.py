"""The review workstation: the workspace fits the screen, every dock shows the session's state
when it opens, verdicts are outlined on the canvas, and the review keys work on the canvas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_widgets_review import results_root, scored  # noqa: F401 (fixtures)

from conftest import NEEDS_XVFB
from napari_imilia._napari.keys import REVIEW_ACTIONS
from napari_imilia._napari.layers.placement import tile_outline_px
from napari_imilia._napari.layers.verdicts import verdict_rgba
from napari_imilia._napari.roles import CELLS_ROLE, REGIONS_ROLE, VERDICTS_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.export.layers import level0_to_world
from napari_imilia.interpret import inspect_tile
from napari_imilia.review import ReviewStore
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

PLUGIN = "napari-imilia"
PROBE = Path(__file__).with_name("workspace_probe.py")
SCREENS = ("1366x768", "1920x1080")
#: The Top tiles list must show at least this many rows in the workspace.
MIN_TOP_ROWS = 6
#: The cohort table must show at least this many rows beside the slide and its grade form.
MIN_COHORT_ROWS = 8
#: The canvas must get at least this share of the screen's width.
MIN_CANVAS_SHARE = 0.55


def _inside(rect: list[int], area: list[int]) -> bool:
    x, y, w, h = rect
    ax, ay, aw, ah = area
    return x >= ax and y >= ay and x + w <= ax + aw and y + h <= ay + ah


def _probe(mode: str, screen: str, slide: Path, root: Path, out: Path) -> dict[str, Any]:
    """Run ``workspace_probe.py`` on a private Xvfb of ``screen`` size; its measurements
    (mode ``torch``: only ``out`` is used)."""
    from napari_imilia._napari.display import private_xvfb

    src = Path(__file__).resolve().parents[2] / "src"
    with private_xvfb(f"{screen}x24") as display:
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
        env["IMILIA_RESULTS_DIR"] = str(root)
        env.pop("WAYLAND_DISPLAY", None)
        args = [mode, str(out)] if mode == "torch" else [mode, str(slide), str(root), str(out)]
        done = subprocess.run(
            [sys.executable, str(PROBE), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason=NEEDS_XVFB)
@pytest.mark.parametrize("screen", SCREENS)
@pytest.mark.usefixtures("results_root")
def test_workspace_and_docks_one_by_one_fit_the_screen(
    screen: str, small_svs: Path, tmp_path: Path
) -> None:
    results = Path(os.environ["IMILIA_RESULTS_DIR"])  # the results_root fixture
    # the README's viewer: every dock, tabbed in two groups, the window filling the screen;
    # no cohort: the top group shows Slide and model, the bottom one Review (Top tiles a
    # click away, its list then shows its rows)
    found = _probe("workspace", screen, small_svs, results, tmp_path / "workspace.json")
    area = found["available"]
    assert found["frame"] == area
    assert {name.split(" (")[0] for name in found["docks"]} == {"Slide and model", "Review"}
    assert not found["top_tiles_shown_first"]
    assert all(_inside(rect, area) for rect in found["docks"].values()), found["docks"]
    assert not any(found["overlaps"].values()), found["overlaps"]
    assert found["top_tiles_visible"] and found["listed_tiles"] == 10
    assert found["top_tiles_rows"] >= MIN_TOP_ROWS
    assert len(found["opened"]) == 9  # eight docks (Cohort too) and the Review workspace dock
    _check_laptop_claims(found)
    # the eight docks opened one by one from the Plugins menu: stacked, scrolling, on screen
    found = _probe("one_by_one", screen, small_svs, results, tmp_path / "one.json")
    assert _inside(found["frame"], found["available"]), found
    assert len(found["docks"]) == 8
    assert all(_inside(rect, found["available"]) for rect in found["docks"].values())
    assert not any(found["overlaps"].values()), found["overlaps"]


def _check_laptop_claims(found: dict[str, Any]) -> None:
    """The canvas gets most of the width (napari's layer docks folded away, one click brings
    them back), tab titles are drawn in full, no napari deprecation warning was caused."""
    width = found["available"][2]
    assert found["canvas_px"] >= MIN_CANVAS_SHARE * width, (found["canvas_px"], width)
    assert found["layer_docks_shown"] == []
    assert found["layer_docks_after_click"] == ["layer controls", "layer list"]
    for tab in found["tabs"]:
        assert not tab["elided"] and tab["text_px"] <= tab["tab_px"], tab
    assert {t["title"] for t in found["tabs"]} >= {"Cohort", "Review"}
    assert found["warnings"] == []


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason=NEEDS_XVFB)
@pytest.mark.parametrize("screen", SCREENS)
def test_a_cohort_table_the_slide_and_its_grade_form_show_together(
    screen: str,
    scored_results: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The workspace from the Plugins menu, a 13-slide cohort opened and a slide opened from
    its table: the table (8 rows at least), its buttons and the whole grade form show beside
    the slide, the slide has a scale bar, and nothing is over the screen's edge."""
    results = Path(shutil.copytree(scored_results, tmp_path / "results"))
    found = _probe("cohort", screen, Path(), results, tmp_path / "cohort.json")
    area = found["available"]
    assert found["frame"] == area
    assert all(_inside(rect, area) for rect in found["docks"].values()), found["docks"]
    assert not any(found["overlaps"].values()), found["overlaps"]
    assert {name.split(" (")[0] for name in found["docks"]} == {"Cohort", "Review"}
    assert found["table_shown"] and found["table_rows"] >= MIN_COHORT_ROWS, found["table_rows"]
    # the dock was a hidden tab when the cohort opened: it caught up once raised
    assert found["cohort_rows"] == 13 and found["summary"].startswith("Cohort: "), found
    assert found["grade_form_shown"] and found["buttons_shown"], found["grade_form_px"]
    assert found["scale_bar"]
    _check_laptop_claims(found)


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason=NEEDS_XVFB)
def test_slide_and_model_dock_opens_before_torch_is_imported(tmp_path: Path) -> None:
    """Building the dock imports no torch: the extractor list and the model's description
    are read once the event loop has shown the dock."""
    found = _probe("torch", SCREENS[0], Path(), Path(), tmp_path / "torch.json")
    assert not found["before"] and not found["at_open"]
    assert found["loaded"] and found["after"]
    assert {"", "imilia-stain-stats", "h0-mini"} <= set(found["extractors"])
    assert found["label"].startswith("DEMO MODEL")


def _open_scored(make_napari_viewer: Any, slide: Path) -> tuple[Any, Any]:
    viewer = make_napari_viewer(show=False)
    viewer.open(slide, plugin=PLUGIN)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Slide and model")
    session = viewer_state(viewer).session
    assert session is not None and session.prediction is not None
    return viewer, session


@pytest.mark.gui
@pytest.mark.usefixtures("results_root")
def test_docks_opened_late_show_the_sessions_state(make_napari_viewer, qtbot, small_svs):
    viewer, session = _open_scored(make_napari_viewer, small_svs)
    first, second = (str(t) for t in session.ranked_tiles(2)["tile_id"])
    for tile_id in (first, second):
        session.store_inspection(tile_id, inspect_tile(session.slide, session.tile_row(tile_id)))
    session.select_tile(second)
    session.add_review(verdict="agree", tile_id=first)

    _, plots = viewer.window.add_plugin_dock_widget(PLUGIN, "Plots")
    ids, scores, _values = plots.scatter_data()
    assert ids == [first, second]
    assert plots.info_label.text().startswith("2 inspected tile(s)")
    np.testing.assert_allclose(scores, session.ranked_tiles(2)["score"].to_numpy())
    _, inspector = viewer.window.add_plugin_dock_widget(PLUGIN, "Tile inspector")
    # the selected tile's inspection (made here without the dock's settings: made again)
    qtbot.waitUntil(lambda: inspector.current is not None, timeout=120_000)
    assert inspector.current.tile_id == second
    _, top = viewer.window.add_plugin_dock_widget(PLUGIN, "Top tiles")
    assert top.list.currentRow() == 1
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    assert review.target_label.text().startswith(f"Tile {second}")
    assert review.listed_entry_ids() == [e.entry_id for e in session.review.entries()]
    assert "1 of 10 top tiles reviewed" in review.progress_label.text()


@pytest.mark.gui
@pytest.mark.usefixtures("results_root")
def test_verdicts_are_outlined_in_their_colour_and_counted(make_napari_viewer, small_svs):
    viewer, session = _open_scored(make_napari_viewer, small_svs)
    assert layers_with_role(viewer, VERDICTS_ROLE) == []
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    first, second = (str(t) for t in session.ranked_tiles(2)["tile_id"])
    session.select_tile(first)
    review.record("agree")
    (layer,) = layers_with_role(viewer, VERDICTS_ROLE)
    np.testing.assert_allclose(layer.data[0], tile_outline_px(session.tile_row(first)))
    np.testing.assert_allclose(layer.edge_color[0], verdict_rgba("agree"))
    assert "1 of 10 top tiles reviewed" in review.progress_label.text()

    session.select_tile(second)
    review.record("uncertain")
    session.select_tile(first)
    review.record("disagree")  # the same entry, changed
    (layer,) = layers_with_role(viewer, VERDICTS_ROLE)
    assert list(layer.features["tile_id"]) == sorted([first, second])
    colours = dict(zip(layer.features["tile_id"], layer.edge_color, strict=True))
    np.testing.assert_allclose(colours[first], verdict_rgba("disagree"))
    np.testing.assert_allclose(colours[second], verdict_rgba("uncertain"))
    assert "2 of 10 top tiles reviewed" in review.progress_label.text()
    np.testing.assert_allclose(layer.scale, session.slide.mpp)
    # a heatmap shown afterwards stays under the outlines
    _, heat = viewer.window.add_plugin_dock_widget(PLUGIN, "Heatmap")
    index = list(viewer.layers).index
    assert index(layer) > index(heat.heatmap_layer())

    for entry in session.review.entries():
        session.remove_review(entry.entry_id)
    assert layers_with_role(viewer, VERDICTS_ROLE) == []
    assert "0 of 10 top tiles reviewed" in review.progress_label.text()


def _press(qtbot: Any, viewer: Any, key: str) -> None:
    """A key press on the canvas (the widget napari's keymap listens to)."""
    from qtpy.QtCore import Qt

    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{key}"))


@pytest.mark.gui
@pytest.mark.usefixtures("results_root")
def test_keyboard_review_on_the_canvas_is_saved(make_napari_viewer, qtbot, small_svs):
    viewer, session = _open_scored(make_napari_viewer, small_svs)
    ranked = [str(t) for t in session.ranked_tiles(3)["tile_id"]]
    # no Top tiles nor Review dock: the keys work on the session
    _press(qtbot, viewer, "N")
    assert session.selected_tile_id == ranked[0]
    _press(qtbot, viewer, "A")
    _press(qtbot, viewer, "N")
    _press(qtbot, viewer, "N")
    _press(qtbot, viewer, "U")
    _press(qtbot, viewer, "P")
    assert session.selected_tile_id == ranked[1]
    _press(qtbot, viewer, "D")
    # with the docks open, the keys act on the same state and the docks follow
    _, top = viewer.window.add_plugin_dock_widget(PLUGIN, "Top tiles")
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    _press(qtbot, viewer, "P")
    assert session.selected_tile_id == ranked[0] and top.list.currentRow() == 0
    _press(qtbot, viewer, "D")  # changes the verdict recorded with A
    saved = ReviewStore.open(session.results_dir, session.slide_id)
    verdicts = {e.tile_id: e.verdict for e in saved.entries()}
    assert verdicts == {ranked[0]: "disagree", ranked[1]: "disagree", ranked[2]: "uncertain"}
    assert len(saved.entries()) == 3
    assert "3 of 10 top tiles reviewed" in review.progress_label.text()
    (layer,) = layers_with_role(viewer, VERDICTS_ROLE)
    assert len(layer.data) == 3

    _press(qtbot, viewer, "I")  # inspects the selected tile; no Tile inspector dock opens
    inspections = viewer_state(viewer).inspections
    qtbot.waitUntil(lambda: inspections.current is not None, timeout=120_000)
    assert "Tile inspector (napari-imilia)" not in viewer.window.dock_widgets
    assert session.cached_inspection(ranked[0]) is inspections.current
    (cells,) = layers_with_role(viewer, CELLS_ROLE)
    assert cells.metadata["tile_id"] == ranked[0]


@pytest.mark.gui
@pytest.mark.usefixtures("results_root")
def test_regions_are_drawn_and_reviewed_by_key_without_the_review_dock(
    make_napari_viewer, small_svs
):
    viewer, session = _open_scored(make_napari_viewer, small_svs)  # Slide and model only
    state = viewer_state(viewer)
    (regions,) = layers_with_role(viewer, REGIONS_ROLE)  # the link's, no Review dock
    corners = level0_to_world(np.array([[200.0, 300.0], [600.0, 700.0]]), session.slide.mpp)
    regions.add_rectangles([corners])
    assert state.review_target == "region"
    viewer.window._qt_viewer._key_map_handler.press_key("Alt-U")
    (entry,) = session.review.entries()
    assert (entry.verdict, entry.target_kind) == ("uncertain", "region")
    assert regions.features["entry_id"].tolist() == [entry.entry_id]
    assert ReviewStore.open(session.results_dir, session.slide_id).get(entry.entry_id)

    # the top tiles are the state's: the Top tiles dock edits them, the Review dock counts them
    _, top = viewer.window.add_plugin_dock_widget(PLUGIN, "Top tiles")
    top.k_spin.setValue(4)
    assert state.top_tile_ids() == top.tile_ids() and len(top.tile_ids()) == 4
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    assert "0 of 4 top tiles reviewed" in review.progress_label.text()
    top.k_spin.setValue(6)
    assert "0 of 6 top tiles reviewed" in review.progress_label.text()


@pytest.mark.gui
def test_review_keys_are_listed_in_napari_preferences_and_the_docks(make_napari_viewer):
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.utils.action_manager import action_manager

    viewer = make_napari_viewer(show=False)
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    editor = ShortcutEditor()
    listed = editor.key_bindings_strs[editor.VIEWER_KEYBINDINGS]
    for name, keys, description, _command in REVIEW_ACTIONS:
        assert name in listed and listed[name].description == description
        assert [str(k) for k in action_manager._shortcuts[name]] == list(keys)
        assert description.removeprefix("Review: ") in review.keys_label.text()


@pytest.mark.parametrize(("given", "expected"), [(None, "pyqt6"), ("pyqt5", "pyqt5")])
def test_the_viewer_prefers_qt6_unless_a_binding_was_chosen(given, expected):
    import importlib.util

    if importlib.util.find_spec("PyQt6") is None:
        pytest.skip("PyQt6 is not installed")
    env = {k: v for k, v in os.environ.items() if k != "QT_API"}
    if given:
        env["QT_API"] = given
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src")
    code = (
        "import os; from napari_imilia._napari.display import prefer_qt6; prefer_qt6(); "
        "print(os.environ['QT_API'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == expected
