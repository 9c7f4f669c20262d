"""The Cohort dock (``gui``): open a cohort, step with the keys, grade, filter, score all."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from qtpy.QtCore import Qt

from napari_imilia._napari.docks.cohort.table import COLUMNS
from napari_imilia._napari.reader import slide_from_metadata
from napari_imilia._napari.state import viewer_state
from napari_imilia.cohort.review import COHORT_FILE, Cohort
from support.cohort_data import N_SLIDES, cohort_data, scored_results  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"
WAIT_MS = 120_000


@pytest.fixture
def scored_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(scored_results, tmp_path / "results"))


def _slide_layers(viewer) -> list:
    return [layer for layer in viewer.layers if slide_from_metadata(layer.metadata) is not None]


def _cell(panel, row: int, column: str) -> str:
    return panel.model.data(panel.model.index(row, COLUMNS.index(column)))


def test_open_step_with_keys_grade_and_filter(
    make_napari_viewer, scored_copy: Path, notes, qtbot
) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    cohort = panel.open_cohort(scored_copy)
    assert panel.model.rowCount() == N_SLIDES + 1
    assert panel.summary_label.text() == f"0 of {N_SLIDES + 1} reviewed, {N_SLIDES} scored, 1 error"

    keys = viewer.window._qt_viewer._key_map_handler
    keys.press_key("Alt-N")  # the broken first slide is skipped
    session = viewer_state(viewer).session
    assert session.slide_id == "case_00" and session.prediction is not None
    assert session.results_root == scored_copy
    keys.press_key("Alt-N")
    session = viewer_state(viewer).session
    assert session.slide_id == "case_01" and len(_slide_layers(viewer)) == 1
    assert cohort.current_index == 2 and _cell(panel, 2, "status") == "in review"
    current = panel.model.index(2, 0)
    assert panel.model.data(current, Qt.ItemDataRole.BackgroundRole) is not None
    assert panel.model.data(panel.model.index(1, 0), Qt.ItemDataRole.BackgroundRole) is None
    assert panel.proxy.mapToSource(panel.table.selectionModel().selectedRows()[0]).row() == 2
    keys.press_key("Alt-P")
    assert viewer_state(viewer).session.slide_id == "case_00"

    form = panel.grade_form
    form.nancy_combo.setCurrentIndex(4)  # Nancy 3
    assert "moderate to severe acute" in form.definition_label.text()
    form.agreement_combo.setCurrentIndex(form.agreement_combo.findData("disagree"))
    form.note_edit.setText("crypt abscesses")
    form.save_button.click()
    assert _cell(panel, 1, "Nancy") == "3" and _cell(panel, 1, "status") == "reviewed"
    assert _cell(panel, 1, "verdict") == "disagree"
    assert panel.summary_label.text().startswith(f"1 of {N_SLIDES + 1} reviewed")
    assert review.grade_form.nancy_combo.currentData() == 3  # the Review dock follows
    saved = json.loads((scored_copy / COHORT_FILE).read_text())
    assert "grade" not in saved["slides"][1]  # no copy to go stale: the reader's journal
    (journal,) = (scored_copy / "case_00" / "grades").glob("*.jsonl")
    assert json.loads(journal.read_text())["read"]["grade"]["note"] == "crypt abscesses"

    panel.status_combo.setCurrentIndex(panel.status_combo.findData("reviewed"))
    assert panel.proxy.rowCount() == 1
    panel.status_combo.setCurrentIndex(0)
    panel.filter_edit.setText("broken")
    assert panel.proxy.rowCount() == 1
    panel.filter_edit.setText("")
    panel.table.sortByColumn(COLUMNS.index("score"), Qt.SortOrder.DescendingOrder)
    rows = [panel.proxy.mapToSource(panel.proxy.index(r, 0)).row() for r in range(3)]
    scores = [cohort[r].score for r in rows]
    assert scores == sorted(scores, reverse=True)

    # double-click a row: that slide replaces the previous one
    target = panel.proxy.mapFromSource(panel.model.index(5, 0))
    panel.table.doubleClicked.emit(target)
    assert viewer_state(viewer).session.slide_id == cohort[5].slide_id
    assert len(_slide_layers(viewer)) == 1

    # a restart: the grade, the statuses and the current slide come back
    again = Cohort.open(scored_copy)
    assert again.current_index == 5 and again[1].grade.nancy == 3
    assert again[2].status == "in review"
    panel.open_index(0)
    assert any("broken" in text for level, text in notes if level == "error")


def test_score_all_in_the_background(
    make_napari_viewer,
    cohort_data,  # noqa: F811
    tmp_path: Path,
    qtbot,
) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    panel.open_cohort(str(cohort_data["folder"] / "sub" / "case_0[89].tiff"), tmp_path)
    assert [_cell(panel, r, "status") for r in range(2)] == ["not scored"] * 2
    panel.model_edit.setText(str(cohort_data["model"]))
    panel.score_all()
    assert panel.cancel_button.isEnabled() and not panel.score_button.isEnabled()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=WAIT_MS)
    assert [_cell(panel, r, "status") for r in range(2)] == ["scored"] * 2
    assert _cell(panel, 0, "score") != "" and panel.progress_bar.value() == 2
    assert panel.progress_label.text() == "2 of 2 slides scored"
    assert panel.summary_label.text() == "0 of 2 reviewed, 2 scored"
