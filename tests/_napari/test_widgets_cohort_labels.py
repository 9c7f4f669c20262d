"""The Cohort dock's Labels… button (``gui``): a labels CSV labels the open cohort's slides,
adds none, names the rows that match nothing, and leaves the cohort file alone when no row
matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_imilia.cohort.review import COHORT_FILE, Cohort

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"


@pytest.fixture
def study(tmp_path: Path, tiff_writer) -> Path:
    for k in (1, 2):
        (tmp_path / "slides").mkdir(exist_ok=True)
        tiff_writer(tmp_path / "slides" / f"biopsy_0{k}.tiff", (512, 512), tile_px=256)
    return tmp_path


def test_labels_button_labels_slides_and_adds_none(make_napari_viewer, study, notes) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    assert not panel.labels_button.isEnabled()  # no cohort yet
    panel.open_cohort(study / "slides", study / "results")
    assert panel.labels_button.isEnabled() and panel.model.rowCount() == 2

    csv = study / "labels.csv"
    csv.write_text("slide,active,nancy\nslides/biopsy_01.tiff,1,3\nzzz,0,0\nyyy,1,1\n")
    assert panel.apply_labels(csv) == 1
    assert panel.model.rowCount() == 2
    assert ("warning", "2 label rows match no slide of the cohort: zzz, yyy") in notes
    reopened = Cohort.open(study / "results")
    assert [item.labels for item in reopened.items] == [{"active": "1", "nancy": "3"}, {}]

    saved = (study / "results" / COHORT_FILE).read_bytes()
    csv.write_text("slide,active\nnothing.svs,1\n")
    assert panel.apply_labels(csv) == 0
    assert notes[-1][0] == "error" and "matches a slide of the cohort" in notes[-1][1]
    assert (study / "results" / COHORT_FILE).read_bytes() == saved
    assert panel.model.rowCount() == 2
