"""Reading blind in napari (``gui``): a blinded study hides the model everywhere until the
grade is committed, the second read is kept beside the first, drafts survive Alt+N / Alt+P
and a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from qtpy.QtWidgets import QAbstractItemView, QComboBox, QLabel, QLineEdit

from napari_imilia._napari.roles import HEATMAP_ROLE, TILE_TABLE_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.review.reads import POST_AI, PRE_AI, load_slide_reads
from napari_imilia.review.reviewer import save_reviewer
from napari_imilia.review.study import create_study
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)
from support.docks import DOCKS

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"
READER = "Dr Ada"


@pytest.fixture
def study_copy(scored_results: Path, tmp_path: Path) -> Path:  # noqa: F811
    root = Path(shutil.copytree(scored_results, tmp_path / "results"))
    slides = sorted(p.name for p in root.iterdir() if (p / "slide.json").is_file())
    create_study(root, slides, [READER, "Dr Bo"], blinded=True, second_read=True, seed=11)
    save_reviewer(READER)
    return root


def dock_texts(viewer) -> str:
    """Every text the docks show: labels, fields, combo boxes, table cells."""
    texts = []
    for widget in viewer.window.dock_widgets.values():
        texts += [w.text() for w in widget.findChildren(QLabel)]
        texts += [w.text() for w in widget.findChildren(QLineEdit)]
        texts += [w.currentText() for w in widget.findChildren(QComboBox)]
        texts += [w.toolTip() for w in widget.findChildren(QLabel)]
        for view in widget.findChildren(QAbstractItemView):
            model = view.model()
            if model is None:
                continue
            try:
                columns = model.columnCount()
            except TypeError:  # a list model
                columns = 1
            for r in range(model.rowCount()):
                for c in range(columns):
                    texts.append(str(model.data(model.index(r, c)) or ""))
    return "\n".join(texts)


def open_all_docks(viewer) -> dict:
    return {name: viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in DOCKS}


def test_blinded_walk_hides_the_model_until_the_grade(make_napari_viewer, study_copy) -> None:
    viewer = make_napari_viewer(show=False)
    docks = open_all_docks(viewer)
    panel = docks["Cohort"]
    cohort = panel.open_cohort(study_copy)
    state = viewer_state(viewer)
    assert "You, Dr Ada: 0 of 12 read" in panel.study_box.progress_label.text()
    order = cohort.study.order_for(READER)
    viewer.window._qt_viewer._key_map_handler.press_key("Alt-N")  # first of Ada's order
    session = state.session
    assert session.slide_id == order[0]
    score = cohort[cohort.index_of(order[0])].score
    # nothing shows the model: no prediction, no heatmap or tile table, no score text
    assert session.prediction is None and state.model_hidden
    assert not layers_with_role(viewer, HEATMAP_ROLE)
    assert not layers_with_role(viewer, TILE_TABLE_ROLE)
    texts = dock_texts(viewer)
    for item in cohort.items:
        if item.score is not None:
            assert f"{item.score:.4f}" not in texts and f"{item.score:.3f}" not in texts
    assert "hidden until you commit your grade" in texts and "Dr Bo" not in texts.replace(
        "other reader", ""
    )
    assert not panel.report_button.isEnabled()  # reports show scores: the coordinator's
    heatmap_text = docks["Heatmap"].score_label.text()  # says why, never "run the model"
    assert "commit your grade" in heatmap_text and "run the model" not in heatmap_text

    form = panel.grade_form
    assert form.save_button.text() == "Commit blind grade (shows the model)"
    assert not form.agreement_combo.isEnabled()  # nothing to agree with yet
    form.nancy_combo.setCurrentIndex(form.nancy_combo.findData(3))
    form.note_edit.setText("crypt abscesses")
    form.save_button.click()
    # committed: the model appears everywhere, the second read is offered
    assert session.prediction is not None and not state.model_hidden
    assert layers_with_role(viewer, HEATMAP_ROLE)
    assert f"{score:.4f}" in dock_texts(viewer)
    assert form.save_button.text() == "Commit second read (after the model)"
    assert "Your blind grade stays as it was: Nancy 3" in form.phase_label.text()
    form.nancy_combo.setCurrentIndex(form.nancy_combo.findData(2))
    form.agreement_combo.setCurrentIndex(form.agreement_combo.findData("disagree"))
    form.save_button.click()
    reads = load_slide_reads(study_copy / order[0], order[0])
    assert [(r.phase, r.grade.nancy) for r in reads.reads] == [(PRE_AI, 3), (POST_AI, 2)]
    assert reads.reads[0].grade.note == "crypt abscesses" and reads.reads[1].reader == READER
    assert "1 of 12 read, 1 read again after the model" in panel.study_box.progress_label.text()

    viewer.window._qt_viewer._key_map_handler.press_key("Alt-N")  # the next: hidden again
    assert state.session.slide_id == order[1] and state.session.prediction is None
    assert not layers_with_role(viewer, HEATMAP_ROLE)


def test_drafts_survive_alt_n_alt_p_and_a_restart(make_napari_viewer, study_copy) -> None:
    viewer = make_napari_viewer(show=False)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    panel.open_cohort(study_copy)
    keys = viewer.window._qt_viewer._key_map_handler
    keys.press_key("Alt-N")
    keys.press_key("Alt-N")
    slide_id = viewer_state(viewer).session.slide_id
    form = panel.grade_form
    form.nancy_combo.setCurrentIndex(form.nancy_combo.findData(1))
    form.activity_combo.setCurrentIndex(form.activity_combo.findData("active"))
    form.note_edit.setText("few neutrophils?")
    keys.press_key("Alt-N")  # leave without committing
    assert form.nancy_combo.currentData() is None and form.note_edit.text() == ""
    keys.press_key("Alt-P")  # back: the draft, with its cue
    assert viewer_state(viewer).session.slide_id == slide_id
    assert form.nancy_combo.currentData() == 1 and form.note_edit.text() == "few neutrophils?"
    assert form.activity_combo.currentData() == "active"
    assert "DRAFT" in form.status_label.text()
    assert review.grade_form.note_edit.text() == "few neutrophils?"  # the Review dock's too
    assert "1 draft" in panel.study_box.progress_label.text()
    form.note_edit.setText("few neutrophils, cryptitis")  # typed, then napari is closed
    viewer.close()

    again = make_napari_viewer(show=False)
    _, panel = again.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    cohort = panel.open_cohort(study_copy)
    assert cohort[cohort.current_index].slide_id == slide_id  # Ada's place came back
    panel.open_index(cohort.current_index)
    form = panel.grade_form
    assert form.nancy_combo.currentData() == 1
    assert form.note_edit.text() == "few neutrophils, cryptitis"
    assert "DRAFT" in form.status_label.text()
    form.save_button.click()  # committed: the draft is gone, the grade kept
    assert "DRAFT" not in form.status_label.text()
    assert "1 of 12 read" in panel.study_box.progress_label.text()
    assert not list((study_copy / slide_id / "grades").glob("*.draft.json"))
