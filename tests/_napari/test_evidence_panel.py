"""The evidence panel of the slide grade form (``gui``): no census -> Run census; the values
of each item over the slide and in the stated worst window; a click on a top tile centres
the canvas on it and inspects it; item grades committed as a normal read with the indices
they give; a blinded reader sees no evidence."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from napari_imilia._napari.compat import viewer_camera
from napari_imilia._napari.docks.cohort.evidence import HIDDEN_TEXT
from napari_imilia._napari.docks.cohort.grade_form import SlideGradeForm
from napari_imilia._napari.layers.placement import tile_centre_world, world_um_per_px
from napari_imilia._napari.link import link_viewer
from napari_imilia._napari.roles import CENSUS_DENSITY_ROLE, layers_with_role
from napari_imilia._napari.state import viewer_state
from napari_imilia.interpret.census import census_slide
from napari_imilia.review.evidence import item_evidence
from napari_imilia.review.grade import SlideGrade
from napari_imilia.review.grading import commit_grade
from napari_imilia.review.indices import ACUTE, CHRONIC, EROSION, ITEMS, index_values
from napari_imilia.review.reads import load_slide_reads
from napari_imilia.review.reviewer import save_reviewer
from napari_imilia.review.study import create_study
from support.census_tables import write_table_census
from support.cohort_data import cohort_data, scored_results  # noqa: F401 (fixtures)
from support.scored import make_scored_slide

pytestmark = [pytest.mark.gui]
PLUGIN = "napari-imilia"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_scored_slide(tmp_path_factory.mktemp("evidence_gui"))


def _open(make_napari_viewer, slide, results, tmp_path, monkeypatch):
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(results))
    save_reviewer("Dr Ada")
    viewer = make_napari_viewer(show=False)
    viewer.open(str(slide), plugin=PLUGIN)
    link_viewer(viewer).ensure_session()
    form = SlideGradeForm(viewer)
    form.show_session(viewer_state(viewer).session)
    return viewer, form


def test_no_census_offers_the_run_then_shows_each_items_values(
    make_napari_viewer, scored, tmp_path, monkeypatch, qtbot
):
    slide, results = scored
    results = Path(shutil.copytree(results, tmp_path / "results"))
    viewer, form = _open(make_napari_viewer, slide, results, tmp_path, monkeypatch)
    panel = form.evidence
    assert "No census for this slide" in panel.status.text()
    assert not panel.run_button.isHidden()
    panel.run_button.click()
    assert "census of" in panel.status.text() and not panel.run_button.isEnabled()
    state = viewer_state(viewer)
    qtbot.waitUntil(lambda: state.census.data is not None, timeout=WAIT_MS)
    assert panel.run_button.isHidden()
    assert "500 µm" in panel.status.text()  # the worst-area size is stated
    expected = {e.key: e for e in item_evidence(state.census.data)}
    for row in panel.rows:
        evidence = expected[row.item.key]
        if row.item.key == EROSION:
            assert "pathologist's call" in row.value.text()
            assert all(b.isHidden() for b in row.tiles)
            continue
        assert f"slide {evidence.slide:,.0f}/mm²" in row.value.text()
        assert f"worst 500 µm {evidence.worst:,.0f}/mm²" in row.value.text()
        shown = [b.property("tile") for b in row.tiles if not b.isHidden()]
        assert shown == list(evidence.top_tiles)
        assert "cohort" in row.proposal.text()  # no cohort open: no proposal, and why


def test_a_top_tile_click_moves_the_canvas_and_inspects_it(
    make_napari_viewer, scored, tmp_path, monkeypatch, qtbot
):
    slide, results = scored
    census_slide(slide, results, workers=1)  # made here or reused
    viewer, form = _open(make_napari_viewer, slide, results, tmp_path, monkeypatch)
    state = viewer_state(viewer)
    row = next(r for r in form.evidence.rows if r.item.key == CHRONIC)
    scored_ids = set(state.session.tiles["tile_id"].astype(str))
    button = next(b for b in row.tiles if not b.isHidden() and b.property("tile") in scored_ids)
    tile_id = button.property("tile")
    button.click()
    tiles = state.census.data.tiles.set_index("tile_id")
    centre = tile_centre_world(tiles.loc[tile_id], world_um_per_px(viewer, state.session))
    assert tuple(viewer_camera(viewer).center)[-2:] == pytest.approx(centre)
    assert state.census.picked_tile == tile_id
    assert state.session.selected_tile_id == tile_id
    qtbot.waitUntil(
        lambda: (
            state.inspections.current is not None and state.inspections.current.tile_id == tile_id
        ),
        timeout=WAIT_MS,
    )


def test_item_grades_are_committed_as_a_normal_read_with_their_indices(
    make_napari_viewer, scored, tmp_path, monkeypatch
):
    slide, results = scored
    results = Path(shutil.copytree(results, tmp_path / "results"))
    viewer, form = _open(make_napari_viewer, slide, results, tmp_path, monkeypatch)
    panel = form.evidence
    grades = {CHRONIC: 2, "lamina_propria_neutrophils": 1, "epithelium_neutrophils": 1}
    grades |= {ACUTE: 1, EROSION: 0}
    panel.show_items({"geboes_2b": 1, EROSION: 9})  # items the panel does not edit are kept
    for row in panel.rows:
        if row.item.key in grades:
            row.combo.setCurrentIndex(grades[row.item.key] + 1)
    assert index_values(grades) == {"nancy_from_items": 2, "rhi": 7}
    assert "Nancy <b>2</b>" in panel.indices.text() and "RHI <b>7</b> / 33" in panel.indices.text()
    panel.nancy_button.click()
    assert form.nancy_combo.currentData() == 2
    read = form.save()
    assert read is not None
    slide_id = viewer_state(viewer).session.slide_id
    saved = load_slide_reads(results / slide_id, slide_id).latest("Dr Ada")
    assert saved.grade.items == {**grades, "geboes_2b": 1} and saved.grade.nancy == 2
    form.reload()
    assert panel.items() == {**grades, "geboes_2b": 1}
    assert len(ITEMS) == len(panel.rows)


def test_a_blinded_reader_sees_no_evidence(make_napari_viewer, scored, tmp_path, monkeypatch):
    slide, results = scored
    census_slide(slide, results, workers=1)
    results = Path(shutil.copytree(results, tmp_path / "results"))
    slide_id = next(p.name for p in results.iterdir() if (p / "slide.json").is_file())
    create_study(results, [slide_id], ["Dr Ada"], blinded=True, seed=1)
    viewer, form = _open(make_napari_viewer, slide, results, tmp_path, monkeypatch)
    state = viewer_state(viewer)
    assert state.model_hidden
    panel = form.evidence
    assert panel.status.text() == HIDDEN_TEXT and panel.run_button.isHidden()
    assert state.census.data is None and not layers_with_role(viewer, CENSUS_DENSITY_ROLE)
    for row in panel.rows:
        assert row.value.text() == "" and all(b.isHidden() for b in row.tiles)
        assert row.proposal.isHidden() and row.accept.isHidden()
    assert not panel.items()


def test_proposals_show_their_kappa_and_accept_only_fills_the_form(
    make_napari_viewer,
    scored_results,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    root = Path(shutil.copytree(scored_results, tmp_path / "results"))
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path / "config"))
    save_reviewer("Dr Ada")
    slide_ids = sorted(p.name for p in root.iterdir() if (p / "slide.json").is_file())
    for i, slide_id in enumerate(slide_ids):
        write_table_census(root, slide_id, 2 + 3 * i)
    graded = slide_ids[:-1]
    for i, slide_id in enumerate(graded):  # graded from the census: chronic rises
        grade = SlideGrade(nancy=0, items={CHRONIC: i * 3 // len(graded)})
        commit_grade(root, slide_id, "Dr Ada", grade)
    viewer = make_napari_viewer(show=False)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Cohort")
    cohort = dock.open_cohort(root)
    dock.open_index(cohort.index_of(slide_ids[-1]))
    row = next(r for r in dock.grade_form.evidence.rows if r.item.key == CHRONIC)
    text = row.proposal.text()
    assert "proposed <b>2</b>" in text and "κ" in text
    assert f"leave-one-out, {len(graded)} slides" in text
    assert not row.accept.isHidden() and row.combo.currentData() is None
    row.accept.click()
    assert row.combo.currentData() == 2  # in the form, not stored: no read was written
    assert load_slide_reads(root / slide_ids[-1], slide_ids[-1]).reads == []
    other = next(r for r in dock.grade_form.evidence.rows if r.item.key == ACUTE)
    assert "no proposal yet" in other.proposal.text() and other.accept.isHidden()
