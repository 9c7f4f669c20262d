"""Index items in the slide grade form: the reviewer's item grades, the census evidence for
each, the Nancy and Robarts indices they give, and calibrated proposals.

:class:`EvidencePanel` sits in :class:`~napari_imilia._napari.docks.cohort.grade_form.
SlideGradeForm` (collapsible; its rows scroll). Per item of
:data:`~napari_imilia.review.indices.ITEMS`: a grade (its published scale), the measured
value over the slide and in the worst window (:data:`~napari_imilia.review.evidence.
WORST_WINDOW_UM` µm, stated in the panel), the three tiles that show it most (a click
centres the canvas on the tile and picks it: its cells listed, and on a scored slide the
tile selected and inspected, ``ViewerState.census.pick``), and the proposal of a model
calibrated on this reviewer's own grades of the cohort with its leave-one-out kappa
(:mod:`napari_imilia.review.proposals`; *Accept* only sets the item in the form: the grade
is stored when the reviewer commits it, as any grade). Nancy and RHI follow from the items
(:mod:`napari_imilia.review.indices`); *Use for Nancy* copies the Nancy grade to the form.

Without a census the panel says so and offers *Run census* (``ViewerState.census.run``).
While a blinded study withholds the model the panel shows no evidence and no proposal.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_imilia._napari.docks.fold import FoldSection
from napari_imilia._napari.state import viewer_state
from napari_imilia.review.evidence import TOP_TILES, WORST_WINDOW_UM, ItemEvidence, item_evidence
from napari_imilia.review.indices import EPI_NEUTROPHILS, ITEMS, RHI_MAX, index_values
from napari_imilia.review.proposals import CohortProposals, cohort_proposals, kappa_text
from napari_imilia.review.reviewer import load_reviewer

#: Height of the item rows before they scroll (screen pixels).
ROWS_MAX_HEIGHT_PX = 300
HIDDEN_TEXT = "Evidence and proposals are hidden until you commit your blind grade."
AREA_WORDS = {"lamina propria": "LP", "epithelium": "epithelium", "tissue": "tissue"}


class _ItemRow:
    """The widgets of one item: grade, evidence, top tiles, proposal."""

    def __init__(self, panel: EvidencePanel, grid: QGridLayout, row: int, item: Any) -> None:
        self.item = item
        self.name = QLabel(f"<b>{item.name}</b>")
        self.name.setToolTip("enters " + (" and ".join(item.used_by) or "no index"))
        self.combo = QComboBox()
        self.combo.addItem("not graded", None)
        for grade, words in enumerate(item.levels):
            self.combo.addItem(f"{grade} - {words}", grade)
        self.combo.setMinimumContentsLength(12)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.value = QLabel("")
        self.value.setWordWrap(True)
        self.tiles = [QPushButton(f"tile {i + 1}") for i in range(TOP_TILES)]
        self.proposal = QLabel("")
        self.proposal.setWordWrap(True)
        self.accept = QPushButton("Accept")
        self.accept.setToolTip("set this item to the proposed grade (commit to keep it)")
        tiles = QHBoxLayout()
        for button in self.tiles:
            button.clicked.connect(lambda _=False, b=button: panel.go_to_tile(b.property("tile")))
            tiles.addWidget(button)
        tiles.addStretch(1)
        proposal = QHBoxLayout()
        proposal.addWidget(self.proposal, 1)
        proposal.addWidget(self.accept)
        self.accept.clicked.connect(self._accept)
        grid.addWidget(self.name, row, 0)
        grid.addWidget(self.combo, row, 1)
        grid.addWidget(self.value, row + 1, 0, 1, 2)
        grid.addLayout(tiles, row + 2, 0, 1, 2)
        grid.addLayout(proposal, row + 3, 0, 1, 2)
        self.proposed: int | None = None

    def _accept(self) -> None:
        if self.proposed is not None:
            self.combo.setCurrentIndex(self.proposed + 1)

    def show_evidence(self, evidence: ItemEvidence | None, window: str) -> None:
        for button in self.tiles:
            button.setVisible(False)
        self.value.setVisible(evidence is not None)
        if evidence is None:
            self.value.setText("")
            return
        if not evidence.measured:
            self.value.setText(f"<i>{evidence.note}</i>")
            return
        self.value.setText(_value_text(evidence, window))
        for button, tile_id in zip(self.tiles, evidence.top_tiles, strict=False):
            button.setProperty("tile", tile_id)
            button.setToolTip(f"census tile {tile_id}: centre the canvas on it and inspect it")
            button.setVisible(True)

    def show_proposal(self, proposals: CohortProposals | None, slide_id: str, why: str) -> None:
        self.proposed = None
        model = None if proposals is None else proposals.models.get(self.item.key)
        found = None if proposals is None else proposals.for_slide(slide_id).get(self.item.key)
        if found is not None and model is not None and model.kappa is not None:
            grade, probability = found
            self.proposed = grade
            self.proposal.setText(
                f"proposed <b>{grade}</b> (p {probability:.2f}; {kappa_text(model)})"
            )
        elif model is not None and model.model is not None:  # graded here, or no census
            self.proposal.setText(f"<i>no proposal for this slide; model {kappa_text(model)}</i>")
        elif model is not None:
            self.proposal.setText(f"<i>{kappa_text(model)}</i>")
        else:
            self.proposal.setText(f"<i>{why}</i>" if why else "")
        self.accept.setVisible(self.proposed is not None)
        self.proposal.setVisible(bool(self.proposal.text()))


def _number(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def _value_text(evidence: ItemEvidence, window: str) -> str:
    text = (
        f"{evidence.what}: slide {_number(evidence.slide)}/mm², "
        f"worst {window} {_number(evidence.worst)}/mm²"
    )
    if evidence.key == EPI_NEUTROPHILS and not math.isnan(evidence.involved_slide):
        worst = evidence.involved_worst
        text += (
            f"; epithelial tiles with a neutrophil (crypts involved): "
            f"{evidence.involved_slide:.0%} of the slide's, "
            f"{'-' if math.isnan(worst) else f'{worst:.0%}'} in the worst area"
        )
    return text


class EvidencePanel(QWidget):
    """Item grades, their evidence, indices and proposals (see the module docstring).

    Signals: ``edited()`` when the reviewer changed an item grade, ``use_nancy(int)`` when
    they asked for the items' Nancy grade in the form."""

    edited = Signal()
    use_nancy = Signal(int)

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._session: Any = None
        self._filling = False
        self._other_items: dict[str, int] = {}
        self._proposals_key: Any = None
        self._proposals: CohortProposals | None = None
        self.evidence: list[ItemEvidence] = []
        self._build()
        state = viewer_state(viewer)
        state.census.changed.connect(self._on_census_changed)
        state.blinding_changed.connect(self._on_census_changed)
        state.census.status.connect(self._on_census_status)

    def _build(self) -> None:
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.run_button = QPushButton("Run census")
        self.run_button.clicked.connect(lambda: viewer_state(self.viewer).census.run())
        self.indices = QLabel("")
        self.nancy_button = QPushButton("Use for Nancy")
        self.nancy_button.clicked.connect(self._use_nancy)
        rows = QWidget()
        grid = QGridLayout(rows)
        grid.setContentsMargins(0, 0, 0, 0)
        self.rows = [_ItemRow(self, grid, 4 * i, item) for i, item in enumerate(ITEMS)]
        for row in self.rows:
            row.combo.currentIndexChanged.connect(self._on_item_changed)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(rows)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setMaximumHeight(ROWS_MAX_HEIGHT_PX)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.status)
        body.addWidget(self.run_button)
        indices = QHBoxLayout()
        indices.addWidget(self.indices, 1)
        indices.addWidget(self.nancy_button)
        body.addLayout(indices)
        body.addWidget(self.scroll)
        # folded until asked for: the grade form stays beside the cohort table on a laptop
        self.section = FoldSection("Index items and evidence", self.body)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.section)

    # ------------------------------------------------------------------ item grades
    def items(self) -> dict[str, int]:
        """The item grades as set in the panel, and any other item the shown grade held
        (kept as it was: the panel edits only the items it shows)."""
        shown = {
            row.item.key: int(row.combo.currentData())
            for row in self.rows
            if row.combo.currentData() is not None
        }
        return {**self._other_items, **shown}

    def show_items(self, items: dict[str, int]) -> None:
        """Show ``items`` (a grade's) in the combos; not an edit of the reviewer's."""
        scales = {row.item.key: row.item.max_grade for row in self.rows}
        self._other_items = {  # items not shown here, or off their scale: kept as they were
            k: v for k, v in items.items() if k not in scales or not 0 <= v <= scales[k]
        }
        self._filling = True
        try:
            for row in self.rows:
                grade = items.get(row.item.key)
                ok = grade is not None and 0 <= grade <= row.item.max_grade
                row.combo.setCurrentIndex(grade + 1 if ok else 0)
        finally:
            self._filling = False
        self._show_indices()

    def set_editable(self, editable: bool) -> None:
        for row in self.rows:
            row.combo.setEnabled(editable)
            row.accept.setEnabled(editable)
        self.nancy_button.setEnabled(editable)

    def _on_item_changed(self, *_: Any) -> None:
        self._show_indices()
        if not self._filling:
            self.edited.emit()

    def _show_indices(self) -> None:
        values = index_values(self.items())
        nancy, rhi = values["nancy_from_items"], values["rhi"]
        self.indices.setText(
            f"From the items: Nancy <b>{'-' if nancy is None else nancy}</b>, "
            f"RHI <b>{'-' if rhi is None else rhi}</b> / {RHI_MAX}"
        )
        self.nancy_button.setVisible(nancy is not None)

    def _use_nancy(self) -> None:
        nancy = index_values(self.items())["nancy_from_items"]
        if nancy is not None:
            self.use_nancy.emit(int(nancy))

    # ------------------------------------------------------------------ evidence
    def show_session(self, session: Any) -> None:
        """Show the evidence and proposals of ``session``'s slide."""
        self._session = session
        self.refresh()

    def _on_census_changed(self, *_: Any) -> None:
        try:
            self.refresh()
        except RuntimeError:  # the Qt side of the panel was deleted: stop listening
            state = viewer_state(self.viewer)
            state.census.changed.disconnect(self._on_census_changed)
            state.blinding_changed.disconnect(self._on_census_changed)
            state.census.status.disconnect(self._on_census_status)

    def _on_census_status(self, text: str) -> None:
        """While the slide has no census, say how its run goes (the runner's status)."""
        try:
            if not self.run_button.isHidden():
                self.status.setText(text)
                self.run_button.setEnabled(not viewer_state(self.viewer).census.running)
        except RuntimeError:  # the Qt side of the panel was deleted
            viewer_state(self.viewer).census.status.disconnect(self._on_census_status)

    def refresh(self) -> None:
        """Read the evidence (the state's census) and the proposals again and show them."""
        state = viewer_state(self.viewer)
        session, data = self._session, state.census.data
        hidden = session is not None and bool(session.withheld_reason)
        window = f"{WORST_WINDOW_UM:.0f} µm"
        self.evidence = [] if hidden or data is None else item_evidence(data)
        if session is None:
            text = "Open a slide to see the evidence for each item."
        elif hidden:
            text = HIDDEN_TEXT
        elif data is None:
            text = "No census for this slide: run it to measure the evidence for each item."
        else:
            tiles = data.window_tiles(WORST_WINDOW_UM)
            text = (
                f"Measured by the census. Worst area: the densest square window about {window} "
                f"wide ({tiles} x {tiles} tiles of {data.stride_px * data.mpp:.0f} µm)."
            )
        self.status.setText(text)
        self.run_button.setVisible(session is not None and not hidden and data is None)
        self.run_button.setEnabled(not state.census.running)
        by_key = {e.key: e for e in self.evidence}
        proposals, why = self._current_proposals(hidden)
        slide_id = "" if session is None else session.slide_id
        for row in self.rows:
            row.show_evidence(by_key.get(row.item.key), window)
            row.show_proposal(None if hidden else proposals, slide_id, "" if hidden else why)

    def _current_proposals(self, hidden: bool) -> tuple[CohortProposals | None, str]:
        """The reviewer's proposals over the cohort holding the slide (computed again when
        the cohort, the reviewer or their grades changed), or why there are none."""
        state = viewer_state(self.viewer)
        session, cohort = self._session, state.cohort
        if hidden or session is None:
            return None, ""
        if cohort is None or cohort.results_root != session.results_root:
            return None, "proposals need the slide's cohort open in the Cohort dock"
        ids = tuple(item.slide_id for item in cohort.items)
        if session.slide_id not in ids:
            return None, "proposals need the slide's cohort open in the Cohort dock"
        reader = load_reviewer()
        key = (str(cohort.results_root), reader, ids, _grades_stamp(cohort, ids))
        if key != self._proposals_key:
            self._proposals = cohort_proposals(cohort.results_root, list(ids), reader)
            self._proposals_key = key
        return self._proposals, ""

    def go_to_tile(self, tile_id: Any) -> None:
        """Centre the canvas on census tile ``tile_id`` and pick it (cells listed; on a
        scored slide the tile is selected and inspected)."""
        from napari_imilia._napari.layers.placement import centre_on_tile_row

        state = viewer_state(self.viewer)
        data, session = state.census.data, state.session
        if data is None or session is None or not tile_id:
            return
        rows = data.tiles[data.tiles["tile_id"].astype(str) == str(tile_id)]
        if rows.empty:
            return
        centre_on_tile_row(self.viewer, session, rows.iloc[0])
        state.census.pick(str(tile_id))


def _grades_stamp(cohort: Any, ids: tuple[str, ...]) -> tuple[int, ...]:
    """Modification times of the slides' reader journals: a new read changes one."""
    from pathlib import Path

    from napari_imilia.review.reads import READ_SUFFIX, READS_DIR

    stamps = []
    for slide_id in ids:
        folder = Path(cohort.results_root) / slide_id / READS_DIR
        try:
            stamps += [p.stat().st_mtime_ns for p in sorted(folder.glob("*" + READ_SUFFIX))]
        except OSError:
            stamps.append(0)
        stamps.append(-1)  # one slide's end
    return tuple(stamps)
