"""The docks' manifest entries and the napari-version helpers (no display needed)."""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import npe2
import pytest

from napari_imilia._napari import compat
from napari_imilia._napari.launch import REVIEW_DOCKS
from support.docks import DOCKS

PLUGIN = "napari-imilia"


def _manifest() -> npe2.PluginManifest:
    return npe2.PluginManifest.from_distribution(PLUGIN)


def test_every_dock_is_in_the_manifest_with_a_plain_name():
    manifest = _manifest()
    widgets = manifest.contributions.widgets
    assert tuple(w.display_name for w in widgets) == ("Review workspace", *DOCKS)
    assert set(REVIEW_DOCKS) == {"Review workspace", *DOCKS}
    commands = {c.id: c for c in manifest.contributions.commands}
    for widget in widgets:
        # Qt reads '&' in dock tabs and menu items as a mnemonic ("Slide & model" shows
        # as "Slide _model"): names and titles must not contain one.
        command = commands[widget.command]
        assert "&" not in widget.display_name and "&" not in command.title
        module, attribute = command.python_name.split(":")
        widget_class = getattr(importlib.import_module(module), attribute)
        assert list(inspect.signature(widget_class).parameters) == ["napari_viewer"]


def test_open_workspace_is_a_command_taking_the_viewer():
    from napari.viewer import Viewer

    commands = {c.id: c for c in _manifest().contributions.commands}
    module, attribute = commands["napari-imilia.open_workspace"].python_name.split(":")
    function = getattr(importlib.import_module(module), attribute)
    (viewer,) = inspect.signature(function, eval_str=True).parameters.values()
    assert viewer.annotation is Viewer


def test_compat_helpers_use_the_napari_09_homes_without_warnings():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    if not hasattr(viewer, "scene"):
        pytest.skip("napari < 0.9: no viewer.scene / viewer.canvas")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert compat.viewer_camera(viewer) is viewer.scene.camera
        assert compat.scale_bar(viewer) is viewer.canvas.overlays["scale_bar"]
        viewer.canvas.size = (480, 640)
        assert compat.canvas_size_px(viewer) == (480, 640)


def test_compat_helpers_fall_back_to_the_pre_09_attributes():
    camera, bar = SimpleNamespace(zoom=1.0), SimpleNamespace(visible=False)
    old = SimpleNamespace(camera=camera, scale_bar=bar, _canvas_size=(300, 500))
    assert compat.viewer_camera(old) is camera
    assert compat.scale_bar(old) is bar
    assert compat.canvas_size_px(old) == (300, 500)
    assert compat.canvas_size_px(SimpleNamespace(_canvas_size=(0, 0))) == (800, 600)


def test_the_user_guide_has_a_section_and_a_screenshot_per_dock():
    """Its panels section: one heading per dock, small PNGs (scripts/docs_screenshots.py)."""
    docs = Path(__file__).parents[2] / "docs"
    guide = (docs / "user_guide.md").read_text(encoding="utf-8")
    guide = guide[guide.index("## Reviewing a slide in napari: the panels") :]
    for name in DOCKS:
        assert f"### {name}" in guide
    images = re.findall(r"!\[[^\]]*\]\((images/[^)]+\.png)\)", guide)
    assert len(images) >= len(DOCKS)
    for image in images:
        assert (docs / image).is_file() and (docs / image).stat().st_size < 300_000


def test_the_screenshot_script_covers_every_dock_and_the_guide_shows_its_pngs():
    import importlib.util

    root = Path(__file__).parents[2]
    spec = importlib.util.spec_from_file_location(
        "docs_screenshots", root / "scripts" / "docs_screenshots.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    shot_docks = {name for name, _ in script.DOCK_SHOTS.values()}
    assert shot_docks == set(DOCKS) and set(script.EXTRA_DOCKS) <= set(DOCKS)
    guide = (root / "docs" / "user_guide.md").read_text(encoding="utf-8")
    for png in (*script.WINDOW_SHOTS, *script.DOCK_SHOTS):
        assert f"(images/{png})" in guide
