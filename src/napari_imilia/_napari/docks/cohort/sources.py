"""Where the Cohort dock's cohort comes from: a folder, a CSV or the typed fields, and a
labels CSV laid on its slides.

Mixed into :class:`~napari_imilia._napari.docks.cohort.panel.CohortPanel`, which provides
``cohort``, the source widgets, ``summary_label``, ``source_section``, ``set_cohort`` and
``_refresh``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog

from napari_imilia._napari.notify import notify
from napari_imilia.cohort.review import Cohort
from napari_imilia.errors import ImiliaError


class CohortSourcesMixin:
    """Open a cohort (folder, CSV, fields) and label its slides from a CSV."""

    cohort: Any
    source_edit: Any
    results_edit: Any
    summary_label: Any
    source_section: Any

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of slides or of results")
        if folder:
            self.source_edit.setText(folder)
            self._open_from_fields()

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Cohort CSV", "", "CSV (*.csv *.tsv)")
        if path:
            self.source_edit.setText(path)
            self._open_from_fields()

    def _open_from_fields(self) -> None:
        source = self.source_edit.text().strip()
        if source:
            self.open_cohort(source, self.results_edit.text().strip() or None)

    def _choose_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labels CSV", "", "CSV (*.csv *.tsv)")
        if path:
            self.apply_labels(path)

    def apply_labels(self, csv_path: str | Path) -> int:
        """Label the open cohort's slides from ``csv_path`` (``Cohort.apply_labels``: never
        adds a slide); returns how many slides got labels (0 and a message when none)."""
        cohort = self.cohort
        if cohort is None:
            return 0
        known = len(cohort.warnings)
        try:
            n_labelled = cohort.apply_labels(csv_path)
        except ImiliaError as error:
            notify("error", f"napari-imilia: labels not applied: {error}")
            return 0
        for message in cohort.warnings[known:]:
            notify("warning", message)
        notify("info", f"labels of {n_labelled} slide(s) from {Path(csv_path).name}")
        self._refresh()
        return n_labelled

    def open_cohort(
        self, source: str | Path, results_root: str | Path | None = None
    ) -> Cohort | None:
        """Build (or reopen) the cohort of ``source`` and show it; None (and a message) when
        ``source`` names no usable slide."""
        try:
            cohort = Cohort.build(source, results_root)
        except ImiliaError as error:
            notify("error", f"napari-imilia cannot open this cohort: {error}")
            self.summary_label.setText(str(error))
            self.source_section.set_unfolded(True)
            return None
        self.set_cohort(cohort)
        return cohort
