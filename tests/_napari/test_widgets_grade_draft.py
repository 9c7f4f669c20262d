"""A slide grade typed but not saved is kept as that slide's draft (``gui``), outside any
study: Nancy 1, an activity, a verdict and a note set on a slide, then Alt+N and Alt+P
(issue 21's scenario): the form shows them again, with a cue."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from napari_imilia._napari.state import viewer_state
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.gui]


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


def test_unsaved_grade_survives_alt_n_and_alt_p(make_napari_viewer, scored_copy: Path) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget("napari-imilia", "Cohort")
    panel.open_cohort(scored_copy)
    keys = viewer.window._qt_viewer._key_map_handler
    for _ in range(4):
        keys.press_key("Alt-N")
    slide_id = viewer_state(viewer).session.slide_id
    form = panel.grade_form
    form.nancy_combo.setCurrentIndex(form.nancy_combo.findData(1))
    form.activity_combo.setCurrentIndex(form.activity_combo.findData("active"))
    form.agreement_combo.setCurrentIndex(form.agreement_combo.findData("disagree"))
    form.note_edit.setText("cryptitis in one crypt")
    keys.press_key("Alt-N")
    keys.press_key("Alt-P")
    assert viewer_state(viewer).session.slide_id == slide_id
    assert form.nancy_combo.currentData() == 1
    assert form.activity_combo.currentData() == "active"
    assert form.agreement_combo.currentData() == "disagree"
    assert form.note_edit.text() == "cryptitis in one crypt"
    assert "DRAFT" in form.status_label.text()
