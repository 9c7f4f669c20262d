"""The heatmap as soon as a result exists, colour scales on the canvas, IMILIA's channels
(``gui``).

With only the Slide and model dock open, a run must leave a heatmap layer with napari's
colorbar and a caption naming the value, its range and the slide score; reopening the scored
slide must show it again without a run. The Heatmap dock must offer each channel of a
5-channel Chowder and the tiles that drive the score; the Top tiles dock must rank by a
channel; a tile inspection's cell masks must get a legend of classes on the canvas.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_imilia._napari.layers.heatmap import driver_values
from napari_imilia._napari.link import link_viewer
from napari_imilia._napari.roles import (
    CELLS_ROLE,
    HEATMAP_ROLE,
    TILE_TABLE_ROLE,
    layers_with_role,
)
from napari_imilia._napari.state import viewer_state
from napari_imilia.mil import create_model, save_model
from napari_imilia.predict.colour_scale import reference_scale
from napari_imilia.predict.heatmap import score_grid

pytestmark = [
    pytest.mark.gui,
    pytest.mark.filterwarnings("error:viewer\\..* is a deprecated attribute:DeprecationWarning"),
]
PLUGIN = "napari-imilia"
WAIT_MS = 90_000
EXTRACTOR = "imilia-stain-stats"


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def chowder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 5-channel IMILIA Chowder head on the builtin extractor's 64-d features."""
    torch.manual_seed(3)
    model = create_model("imilia-chowder", 64, n_channels=5, n_top=5, n_bottom=5, mlp_hidden=[8])
    path = tmp_path_factory.mktemp("chowder") / "chowder5.safetensors"
    return save_model(model, path, extractor=EXTRACTOR, mpp=0.5, tile_px=224, name="chowder5")


def _dock(viewer, name: str):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    assert dock.inner_widget() is widget
    return widget


def _heatmap(viewer):
    layers = layers_with_role(viewer, HEATMAP_ROLE)
    return layers[0] if layers else None


def _caption(viewer) -> str:
    return link_viewer(viewer).heatmap.caption()


def _check_heatmap(viewer, session, column: str = "score") -> None:
    """The heatmap of ``column`` on the model's fixed scale (no cohort: the model's reference
    saved with the result, centred at 0), its colorbar and caption."""
    layer = _heatmap(viewer)
    assert layer is not None and layer.visible and layer.colorbar.visible
    np.testing.assert_allclose(layer.data, score_grid(session.tiles, column).values, rtol=1e-6)
    scale = reference_scale(session.prediction.info, column)
    assert tuple(layer.contrast_limits) == pytest.approx((scale.low, scale.high))
    assert scale.low < 0 < scale.high  # tile logits: 0 (neutral) in the middle colour
    overlays = link_viewer(viewer).heatmap.caption_overlays()
    assert len(overlays) == 3
    assert all(o.visible and o.position == layer.colorbar.position for o in overlays)
    caption = _caption(viewer)
    assert f"slide score {session.prediction.score:.4f}" in caption
    assert f"fixed scale: {scale.source}\n" in caption
    low, high = layer.contrast_limits
    assert f"range {low:.3g} to {high:.3g} · 0 (neutral) = mid-colour" in caption
    assert len(layers_with_role(viewer, TILE_TABLE_ROLE)) == 1


def test_heatmap_appears_after_a_run_and_on_reopen_with_only_the_slide_dock(
    make_napari_viewer, qtbot, small_svs, chowder_path, tmp_path
):
    viewer = make_napari_viewer(show=False)
    panel = _dock(viewer, "Slide and model")
    viewer.open(str(small_svs), plugin=PLUGIN)
    assert _heatmap(viewer) is None  # no result yet
    panel.form.set_model_path(str(chowder_path))
    panel.run()
    qtbot.waitUntil(lambda: not panel.running, timeout=WAIT_MS)
    assert panel.last_outcome.error is None
    session = viewer_state(viewer).session
    assert set(viewer.window.dock_widgets) == {"Slide and model (napari-imilia)"}
    _check_heatmap(viewer, session)
    assert _caption(viewer).startswith("tile score · slide score")
    _heatmap(viewer).visible = False  # the caption follows the layer
    assert _caption(viewer) == ""
    _heatmap(viewer).visible = True
    assert _caption(viewer).startswith("tile score · slide score")

    # the same slide opened again in a fresh viewer: the cached result shows at once
    again = make_napari_viewer(show=False)
    _dock(again, "Slide and model")
    again.open(str(small_svs), plugin=PLUGIN)
    reopened = viewer_state(again).session
    assert reopened is not session and reopened.prediction is not None
    _check_heatmap(again, reopened)
    viewer.layers.remove(_heatmap(viewer))
    assert _caption(viewer) == ""


def test_channels_drivers_and_ranking_by_channel(
    make_napari_viewer, qtbot, small_svs, chowder_path
):
    from napari_imilia.predict.slide import predict_slide

    root = Path(os.environ["IMILIA_RESULTS_DIR"])
    predict_slide(small_svs, root, model_path=chowder_path, device="cpu", progress=False)
    viewer = make_napari_viewer(show=False)
    heat = _dock(viewer, "Heatmap")
    viewer.open(str(small_svs), plugin=PLUGIN)
    session = viewer_state(viewer).session
    tiles, info = session.tiles, session.prediction.info
    polarity = {c["label"]: c["polarity"] for c in info["channels"]}
    choices = heat.value_choices()
    channel_items = [text for text in choices if text.startswith("channel ")]
    assert len(channel_items) == 5 and "attention" not in choices
    assert "tiles that drive the score" in choices
    sign = {1: "+", -1: "−", 0: "0"}[polarity["ch2"]]
    heat.values_combo.setCurrentText(f"channel ch2 (polarity {sign})")
    layer = _heatmap(viewer)
    assert "score_ch2" in layer.name
    _check_heatmap(viewer, session, "score_ch2")
    assert _caption(viewer).startswith("channel ch2 score")

    heat.values_combo.setCurrentText("tiles that drive the score")
    drivers = driver_values(tiles)
    assert np.count_nonzero(np.isfinite(layer.data)) == np.count_nonzero(np.isfinite(drivers))
    assert np.count_nonzero(np.isfinite(drivers)) == (tiles["extreme_channels"] != "").sum() > 0
    low, high = layer.contrast_limits
    assert low == -high and high >= np.nanmax(np.abs(drivers))
    assert layer.colormap.name == "imilia drivers"
    assert _caption(viewer).startswith("drivers")
    heat.colormap_combo.setCurrentText("viridis")  # drivers keep their diverging colours
    assert layer.colormap.name == "imilia drivers"
    heat.values_combo.setCurrentText("tile score")
    assert layer.colormap.name.startswith("viridis")

    # a result without channels: the heatmap falls back to the tile score, the dock follows
    heat.values_combo.setCurrentText(f"channel ch2 (polarity {sign})")
    keep = ["tile_id", "x", "y", "width", "height", "tissue_fraction", "score", "rank"]
    plain = replace(
        session.prediction,
        tiles=tiles[keep],
        info={k: v for k, v in info.items() if k not in ("channels", "extremes_per_channel")},
    )
    session.set_prediction(plain)
    assert list(heat.value_choices()) == ["tile score"]
    assert heat.values_combo.currentText() == "tile score"
    assert "(score)" in _heatmap(viewer).name
    session.set_prediction(replace(plain, tiles=tiles, info=info))
    assert len(heat.value_choices()) == 7

    top = _dock(viewer, "Top tiles")
    index = top.column_combo.findData("score_ch1")
    assert index >= 0 and top.column_combo.itemText(index) == "by channel ch1"
    top.column_combo.setCurrentIndex(index)
    assert top.tile_ids() == list(session.ranked_tiles(10, column="score_ch1")["tile_id"])
    assert top.tile_ids() != list(session.ranked_tiles(10)["tile_id"])


def test_cell_class_legend_on_the_canvas_while_masks_are_shown(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    from napari_imilia.interpret.cells.types import CELL_CLASS_COLORS
    from support.scored import make_scored_slide

    slide, results = make_scored_slide(tmp_path / "scored")
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(results))
    viewer = make_napari_viewer(show=False)
    viewer.open(str(slide), plugin=PLUGIN)
    inspector = _dock(viewer, "Tile inspector")
    legend = link_viewer(viewer).legend
    assert legend.overlays() == []
    session = viewer_state(viewer).session
    tile_id = str(session.ranked_tiles(1).iloc[0]["tile_id"])
    session.select_tile(tile_id)
    qtbot.waitUntil(
        lambda: inspector.worker is None and inspector.current is not None, timeout=WAIT_MS
    )
    counts = {k: v for k, v in inspector.current.markers.counts.items() if v}
    overlays = legend.overlays()
    assert len(overlays) == len(counts) + 1  # one line per class present, plus epithelium
    for overlay, (name, count) in zip(overlays, counts.items(), strict=False):
        assert overlay.text == f"■ {name} ({count})"
        rgb = np.asarray(overlay.color)[:3] * 255
        np.testing.assert_allclose(rgb, CELL_CLASS_COLORS[name], atol=1)
        assert overlay.box and overlay.position == "top_left"  # the colour bar is top right
    assert overlays[-1].text.startswith("■ epithelium")
    (cells,) = layers_with_role(viewer, CELLS_ROLE)
    cells.visible = False
    assert legend.overlays() == []
    cells.visible = True
    assert len(legend.overlays()) == len(counts) + 1
    viewer.layers.remove(cells)
    assert legend.overlays() == []
