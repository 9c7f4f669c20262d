"""One reviewer identity per user (``gui``): asked once at the first review action, kept in the
user's settings, shown in the Review dock's header (the one place to change it), written with
every verdict, region, note and grade, and in both reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication, QInputDialog, QLineEdit
from test_widgets_review import results_root, scored  # noqa: F401 (fixtures)

import napari_imilia._napari.reviewer as reviewer_module
from napari_imilia._napari.docks.links import dock_viewer_link
from napari_imilia._napari.roles import REGIONS_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.export.layers import level0_to_world
from napari_imilia.review import ReviewStore
from napari_imilia.review.reads import latest_grade
from napari_imilia.review.reviewer import REVIEWER_FILE, load_reviewer
from napari_imilia.user_dirs import config_dir

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"


class Asked(list):
    """Each ask of the reviewer dialog (current name, problem shown); ``answers`` are given in
    turn (None: cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[str | None] = []

    def __call__(self, _parent: Any, current: str = "", problem: str = "") -> str | None:
        self.append((current, problem))
        return self.answers.pop(0)


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Asked:
    calls = Asked()
    monkeypatch.setattr(reviewer_module, "ask_reviewer_name", calls)
    return calls


def _press(viewer: Any, key: str) -> None:
    viewer.window._qt_viewer._key_map_handler.press_key(key)


def _shown_viewer(make_napari_viewer: Any, slide: Path) -> tuple[Any, Any]:
    viewer = make_napari_viewer(show=True)
    dock_viewer_link(viewer)  # the link and the review keys, as any dock makes them
    viewer.open(str(slide), plugin=PLUGIN)
    session = viewer_state(viewer).session
    assert session is not None and session.prediction is not None
    return viewer, session


@pytest.mark.usefixtures("results_root")
def test_asked_once_then_written_with_every_review_action_and_in_the_reports(
    make_napari_viewer, small_svs, asked, qtbot
) -> None:
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.report import write_cohort_report, write_slide_report

    assert load_reviewer() == ""
    asked.answers += ["bad\nname", "  Dr Zoe  "]  # a line break is refused, asked again
    viewer, session = _shown_viewer(make_napari_viewer, small_svs)
    first, second = (str(t) for t in session.ranked_tiles(2)["tile_id"])
    session.select_tile(first)
    _press(viewer, "A")  # the first review action asks, once
    assert [problem for _current, problem in asked] == ["", asked[1][1]]
    assert "line break" in asked[1][1]
    (entry,) = session.review.entries()
    assert entry.reviewer == "Dr Zoe" and load_reviewer() == "Dr Zoe"

    # shown in the Review dock's header, which is the one place to change it
    _, review = viewer.window.add_plugin_dock_widget(PLUGIN, "Review")
    assert review.reviewer_edit.text() == "Dr Zoe"
    assert not hasattr(review.grade_form, "reviewer_edit")
    edits = [w for w in review.grade_form.findChildren(QLineEdit) if "name" in w.placeholderText()]
    assert edits == []  # no second "Reviewer" field in the grade form
    session.select_tile(second)
    review.verdict_buttons["uncertain"].click()
    # a shown window draws the review layers in a turn of the event loop of their own
    qtbot.waitUntil(lambda: len(layers_with_role(viewer, REGIONS_ROLE)) == 1, timeout=10_000)
    (regions,) = layers_with_role(viewer, REGIONS_ROLE)
    mpp = float(session.slide.mpp)
    regions.add_rectangles([level0_to_world(np.array([[200.0, 300.0], [600.0, 700.0]]), mpp)])
    _press(viewer, "Alt-D")
    review.grade_form.nancy_combo.setCurrentIndex(3)  # Nancy 2
    review.grade_form.save_button.click()
    assert len(asked) == 2  # never asked again

    # another reviewer takes over (the header edit): Zoe's review of the first tile stays
    # hers; Yan's note goes with Yan's own verdict, a review beside hers
    review.reviewer_edit.setText("Dr Yan")
    review.reviewer_edit.editingFinished.emit()
    assert load_reviewer() == "Dr Yan"
    session.select_tile(first)
    review.note_edit.setText("cryptitis")
    review.note_edit.editingFinished.emit()
    _press(viewer, "D")
    # Zoe's review of the second tile opened from the list: Yan's typing never changes it,
    # it waits for Yan's verdict and goes with it
    zoe_second = next(e for e in session.review.for_tile(second) if e.reviewer == "Dr Zoe")
    review.select_entry(zoe_second.entry_id)
    review.note_edit.setText("ulcer edge")
    review.note_edit.editingFinished.emit()
    assert session.review.get(zoe_second.entry_id).note == ""
    session.select_tile(first)  # away and back: what Yan typed was kept
    session.select_tile(second)
    assert review.note_edit.text() == "ulcer edge"
    _press(viewer, "A")

    saved = ReviewStore.open(session.results_dir, session.slide_id)
    signed = sorted(
        (e.target_kind, e.tile_id or "region", e.reviewer, e.verdict, e.note)
        for e in saved.entries()
    )
    assert signed == sorted(
        [
            ("tile", first, "Dr Zoe", "agree", ""),
            ("tile", first, "Dr Yan", "disagree", "cryptitis"),
            ("tile", second, "Dr Zoe", "uncertain", ""),
            ("tile", second, "Dr Yan", "agree", "ulcer edge"),
            ("region", "region", "Dr Zoe", "disagree", ""),
        ]
    )
    assert latest_grade(session.results_dir, session.slide_id).reviewer == "Dr Zoe"
    settings = json.loads((config_dir() / REVIEWER_FILE).read_text(encoding="utf-8"))
    assert settings == {"reviewer": "Dr Yan"}

    # both reports name the reviewer: no blank reviewer cell
    page = write_slide_report(session.results_dir, top_k=0).read_text(encoding="utf-8")
    assert page.count("Dr Zoe") >= 3 and "Dr Yan" in page
    cohort = Cohort.build(small_svs, session.results_root)
    paths = write_cohort_report(cohort)
    table = pd.read_csv(paths["csv"])
    assert table["reviewer"].tolist() == ["Dr Zoe"]


@pytest.mark.usefixtures("results_root")
def test_a_cancelled_dialog_keeps_the_verdict_and_asks_again(
    make_napari_viewer, small_svs, asked
) -> None:
    asked.answers += [None, "AB"]
    viewer, session = _shown_viewer(make_napari_viewer, small_svs)
    session.select_tile(str(session.ranked_tiles(1)["tile_id"].iloc[0]))
    _press(viewer, "A")
    (entry,) = session.review.entries()
    assert entry.verdict == "agree" and entry.reviewer == ""  # saved, not lost
    _press(viewer, "D")
    (entry,) = session.review.entries()
    assert (entry.verdict, entry.reviewer) == ("disagree", "AB") and len(asked) == 2


def test_a_hidden_viewer_never_blocks_on_the_dialog(make_napari_viewer, asked) -> None:
    viewer = make_napari_viewer(show=False)
    assert reviewer_module.reviewer_for_action(viewer) == "" and asked == []


def test_the_dialog_itself_returns_what_was_typed(qtbot) -> None:
    def answer() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, QInputDialog)
        assert "every verdict" in dialog.labelText()
        dialog.setTextValue("Dr Qt")
        dialog.accept()

    QTimer.singleShot(200, answer)
    assert reviewer_module.ask_reviewer_name(None) == "Dr Qt"
