"""User text shown as plain text in every dock (issue 20): a slide file, model, reviewer and
note named ``<h1 style=color:red>VERIFIED OK<h1>`` must show literally, never as HTML.

Every QLabel of the docks whose text holds the hostile name must be ``Qt.PlainText`` (or
hold it escaped), and every tooltip must hold it escaped; a screenshot of the window at
1366x768 is written for a reviewer to look at (``IMILIA_SCREENSHOTS`` names the folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QListWidget, QWidget

from napari_imilia._napari.state import viewer_state

pytestmark = pytest.mark.gui
PLUGIN = "napari-imilia"
HOSTILE = "<h1 style=color:red>VERIFIED OK<h1>"
DOCKS = ("Slide and model", "Heatmap", "Review", "Cohort")


@pytest.fixture
def hostile_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A generated slide and a small real model, both named ``HOSTILE``."""
    import torch

    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.mil import create_model, save_model

    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    slide = write_synthetic_slide(
        tmp_path / f"{HOSTILE}.svs", width_px=1344, height_px=896, seed=5, levels=(1, 4)
    )
    torch.manual_seed(0)
    model = save_model(
        create_model("abmil", in_dim=64).eval(),
        tmp_path / "model.safetensors",
        extractor="imilia-stain-stats",
        mpp=0.5,
        tile_px=224,
        name=HOSTILE,
    )
    return {"slide": slide, "model": model}


def _names(widgets: dict[str, QWidget]) -> dict[int, str]:
    """'Dock.attribute' (or 'Dock.part.attribute') of the widgets the docks keep."""
    names: dict[int, str] = {}
    for dock, root in widgets.items():
        for attr, value in vars(root).items():
            if isinstance(value, QWidget):
                names.setdefault(id(value), f"{dock}.{attr}")
                for sub, inner in vars(value).items():
                    if isinstance(inner, QWidget):
                        names.setdefault(id(inner), f"{dock}.{attr}.{sub}")
    return names


def hostile_texts(widgets: dict[str, QWidget]) -> dict[str, tuple[str, bool]]:
    """{where: (text, shown literally?)} of every label and tooltip holding the hostile name."""
    names, found = _names(widgets), {}
    for dock, root in widgets.items():
        for widget in [root, *root.findChildren(QWidget)]:
            where = names.get(id(widget), f"{dock}.{type(widget).__name__}")
            if isinstance(widget, QLabel) and "VERIFIED OK" in widget.text():
                text = widget.text()
                literal = widget.textFormat() == Qt.TextFormat.PlainText or "<h1" not in text
                found[where] = (text, literal)
            if "VERIFIED OK" in widget.toolTip():
                found[f"{where} tooltip"] = (widget.toolTip(), "<h1" not in widget.toolTip())
            if isinstance(widget, QListWidget):
                for row in range(widget.count()):
                    tip = widget.item(row).toolTip()
                    if "VERIFIED OK" in tip:
                        found[f"{where} item tooltip"] = (tip, "<h1" not in tip)
    return found


def test_helpers_keep_text_literal(qtbot: Any) -> None:
    from napari_imilia._napari.docks.text import plain_label, plain_tooltip

    label = plain_label(HOSTILE)
    qtbot.addWidget(label)
    assert label.text() == HOSTILE and label.textFormat() == Qt.TextFormat.PlainText
    tip = plain_tooltip(f"by {HOSTILE}\nline 2")
    assert "<h1" not in tip and "&lt;h1 style=color:red&gt;VERIFIED OK&lt;h1&gt;" in tip
    assert tip.startswith("<qt>") and "<br>" in tip


def test_hostile_names_show_literally_in_every_dock(
    make_napari_viewer: Any, qtbot: Any, hostile_inputs: dict[str, Path]
) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    widgets = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in DOCKS}
    panel, review = widgets["Slide and model"], widgets["Review"]
    panel.form.set_model_path(str(hostile_inputs["model"]))  # the model's name is hostile
    viewer.open(str(hostile_inputs["slide"]), plugin=PLUGIN)
    session = viewer_state(viewer).session
    panel.run()
    assert HOSTILE in panel.status_label.text()  # "scoring <h1 ...>.svs…"
    seen_while_running = hostile_texts(widgets)
    qtbot.waitUntil(lambda: not panel.running, timeout=120_000)
    assert session.prediction is not None
    # a verdict by a reviewer whose name and note are hostile too
    session.select_tile(session.ranked_tiles(1)["tile_id"].iloc[0])
    review.reviewer_edit.setText(HOSTILE)
    review.note_edit.setText(HOSTILE)
    review.record("agree")
    (entry,) = session.review.entries()
    assert entry.reviewer == HOSTILE and entry.note == HOSTILE  # kept as typed
    qtbot.wait(200)
    found = {**seen_while_running, **hostile_texts(widgets)}
    shots = os.environ.get("IMILIA_SCREENSHOTS")
    if shots:
        viewer.screenshot(str(Path(shots) / "plain_text_1366x768.png"), canvas_only=False)
    assert {
        "Slide and model.status_label",  # scoring <h1 ...>.svs…
        "Slide and model.form.model_label",  # the model's name
        "Heatmap.model_label",  # the model's name under the score
        "Review.entry_list item tooltip",  # by <reviewer>
    } <= set(found), sorted(found)
    assert not [where for where, (_, literal) in found.items() if not literal], found
    status_bar = viewer.window._qt_window.statusBar()  # napari shows the source file name
    assert all(
        label.textFormat() == Qt.TextFormat.PlainText for label in status_bar.findChildren(QLabel)
    )
