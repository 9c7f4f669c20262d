"""Heatmap colours that mean the same on every slide, and the DEMO flag on the canvas (``gui``).

Two generated slides scored by the bundled demo model: one with a planted inflamed area
(active), one without (inactive). On the default fixed scale the hottest tile of the inactive
slide must get a clearly different colour from the hottest tile of the active one (on each
slide's own range both are the colormap's top colour: the misleading heatmap of issue 21).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_imilia._napari.layers.heatmap import DEMO_TEXT
from napari_imilia._napari.layers.heatmap_values import HeatmapOptions
from napari_imilia._napari.link import link_viewer
from napari_imilia._napari.roles import HEATMAP_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.predict.colour_scale import SLIDE

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"
#: Smallest RGB distance (0-1 per channel) between colours a reviewer tells apart at a glance.
CLEARLY_DIFFERENT = 0.35


@pytest.fixture(scope="module")
def demo_cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An active and an inactive generated slide scored by the demo model."""
    from napari_imilia.demo.sample import write_synthetic_slide
    from napari_imilia.predict.slide import predict_slide

    root = tmp_path_factory.mktemp("demo_cohort")
    slides = {
        "active": write_synthetic_slide(
            root / "slides" / "active.svs",
            width_px=2048,
            height_px=2048,
            seed=1000,
            inflamed_regions="random",
            n_inflamed_regions=1,
            levels=(1, 4),
        ),
        "inactive": write_synthetic_slide(
            root / "slides" / "inactive.svs",
            width_px=2048,
            height_px=2048,
            seed=1001,
            levels=(1, 4),
        ),
    }
    for slide in slides.values():
        predict_slide(slide, root / "results", device="cpu", progress=False, decode_workers=0)
    return {**slides, "folder": root / "slides", "results": root / "results"}


def _hottest_rgb(viewer) -> np.ndarray:
    """The colour napari draws for the slide's highest tile: the heatmap layer's colormap at
    the tile's value within the layer's contrast limits."""
    (layer,) = layers_with_role(viewer, HEATMAP_ROLE)
    low, high = layer.contrast_limits
    value = float(np.nanmax(layer.data))
    position = np.clip((value - low) / (high - low), 0.0, 1.0)
    return np.asarray(layer.colormap.map(np.array([position])))[0, :3]


def _scores(viewer) -> float:
    return viewer_state(viewer).session.prediction.score


def test_hottest_tiles_of_an_active_and_an_inactive_slide_differ(make_napari_viewer, demo_cohort):
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    cohort = panel.open_cohort(demo_cohort["folder"], demo_cohort["results"])
    rows = {item.slide_id: i for i, item in enumerate(cohort.items)}
    heatmap = link_viewer(viewer).heatmap
    colours, scores = {}, {}
    for name in ("active", "inactive"):
        assert panel.open_index(rows[name])
        scores[name] = _scores(viewer)
        colours[name] = _hottest_rgb(viewer)
        caption = heatmap.caption()
        assert "fixed scale: cohort of 2 slides" in caption
        assert "0 (neutral) = mid-colour" in caption
        # the demo model scored it: flagged on the canvas, first line
        assert caption.startswith(DEMO_TEXT) and heatmap.demo_overlay().visible
    assert scores["active"] > 0.9 > 0.2 > scores["inactive"]
    assert np.linalg.norm(colours["active"] - colours["inactive"]) > CLEARLY_DIFFERENT
    # the neutral value 0 is the colormap's middle colour
    (layer,) = layers_with_role(viewer, HEATMAP_ROLE)
    low, high = layer.contrast_limits
    assert low < 0 < high
    middle = np.asarray(layer.colormap.map(np.array([-low / (high - low)])))[0]
    reference = np.asarray(layer.colormap.map(np.array([0.0, 1.0])))
    assert np.linalg.norm(middle - (reference[0] + reference[1]) / 2) < 0.5

    # each slide's own range: both hottest tiles are the top colour, as the issue found
    heatmap.show(HeatmapOptions(scale=SLIDE))
    assert "this slide's range" in heatmap.caption()
    own = {}
    for name in ("active", "inactive"):
        panel.open_index(rows[name])
        own[name] = _hottest_rgb(viewer)
    np.testing.assert_allclose(own["active"], own["inactive"], atol=1e-6)


def test_without_a_cohort_the_models_reference_scale_is_used(
    make_napari_viewer, demo_cohort, monkeypatch
):
    from napari_imilia.predict.colour_scale import reference_scale
    from napari_imilia.predict.results import load_prediction

    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(demo_cohort["results"]))
    viewer = make_napari_viewer(show=False)
    state = viewer_state(viewer)
    link_viewer(viewer)
    viewer.open(str(demo_cohort["inactive"]), plugin=PLUGIN)
    assert state.cohort is None
    session = state.session
    assert session.results_root is not None and session.prediction is not None
    info = load_prediction(demo_cohort["results"] / "inactive").info
    saved = reference_scale(info, "score")
    assert saved.source == "model reference"  # the demo model's, from its model.json
    (layer,) = layers_with_role(viewer, HEATMAP_ROLE)
    assert tuple(layer.contrast_limits) == pytest.approx((saved.low, saved.high))
    assert "fixed scale: model reference" in link_viewer(viewer).heatmap.caption()
    assert viewer.canvas.overlays["scale_bar"].visible
