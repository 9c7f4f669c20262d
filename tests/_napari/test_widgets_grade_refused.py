"""A slide grade the results folder refuses (issue 20, ``gui``): the slide's folder was
replaced by a co-reviewer with a symbolic link leading out of the results folder while the
slide is open. Saving must write nothing outside, say "not saved" with the reason (status
line and an error notification, not a traceback in a Qt slot), and keep the form's grade so
the reviewer's work is not lost."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from napari_imilia._napari.state import viewer_state
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "share" / "results"))


def test_a_grade_refused_by_the_folder_is_shown_as_not_saved(
    make_napari_viewer, scored_copy: Path, notes, qtbot
) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    panel.open_cohort(scored_copy)
    viewer.window._qt_viewer._key_map_handler.press_key("Alt-N")  # case_00 (first scored)
    assert viewer_state(viewer).session.slide_id == "case_00"

    outside = scored_copy.parent.parent / "outside_case_00"
    shutil.move(scored_copy / "case_00", outside)
    (scored_copy / "case_00").symlink_to(outside, target_is_directory=True)
    (outside / "slide_grade.json").unlink(missing_ok=True)

    form = panel.grade_form
    form.nancy_combo.setCurrentIndex(form.nancy_combo.findData(3))
    form.note_edit.setText("crypt abscesses")
    form.save_button.click()

    assert form.status_label.text().startswith("not saved: ")
    assert "outside the results folder" in form.status_label.text()
    assert any(
        level == "error" and text.startswith("slide grade not saved") for level, text in notes
    )
    assert not (outside / "slide_grade.json").exists()  # nothing written through the link
    assert not (outside / "grades").exists() and not (outside / ".drafts").exists()
    assert form.nancy_combo.currentData() == 3 and form.note_edit.text() == "crypt abscesses"
