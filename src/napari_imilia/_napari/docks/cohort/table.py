"""The cohort table of the Cohort dock: a Qt model over a ``Cohort`` and its sort/filter
proxy (numbers sort as numbers, a status filter and a text filter on every column).

Made for cohorts of thousands of slides: the model keeps each row's sort keys and search
text once computed (dropped when the row changes), so sorting compares plain values
(:meth:`CohortFilter.lessThan`) and filtering tests one string per row.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtGui import QBrush, QColor, QFont

#: (header, how a ``CohortItem`` gives the value) of each column.
COLUMNS: tuple[str, ...] = (
    "slide",
    "score",
    "status",
    "Nancy",
    "activity",
    "verdict",
    "reviewer",
    "tiles",
    "error",
)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
CURRENT_BRUSH = QBrush(QColor(255, 214, 102, 150))
STATUS_COLOURS = {
    "error": QColor(220, 60, 60),
    "reviewed": QColor(60, 170, 90),
    "in review": QColor(230, 150, 30),
}


def _sort_key(value: Any, column: str) -> Any:
    if column in ("score", "Nancy", "tiles"):
        return -1.0 if value is None else float(value)
    return str(value or "")


def _value(item: Any, column: str) -> Any:
    grade = item.grade
    if column == "slide":
        return item.slide_id
    if column == "score":
        return item.shown_score  # None where a blinded study hides the model
    if column == "status":
        return item.status
    if column == "Nancy":
        return None if grade is None else grade.nancy
    if column == "activity":
        return "" if grade is None else grade.effective_activity
    if column == "verdict":
        return "" if grade is None else grade.model_agreement
    if column == "reviewer":
        return "" if grade is None else grade.reviewer
    if column == "tiles":
        return item.n_tiles
    return item.error


class CohortTableModel(QAbstractTableModel):
    """Rows = the cohort's slides, in cohort order; the current slide is highlighted."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.cohort: Any = None
        self._keys: dict[int, list[Any]] = {}  # column -> sort key per row
        self._text: dict[int, str] = {}  # row -> lower-case text of every column

    def set_cohort(self, cohort: Any) -> None:
        self.beginResetModel()
        self.cohort = cohort
        self._forget()
        self.endResetModel()

    def _forget(self, row: int | None = None) -> None:
        """Drop the cached sort keys and search text (of ``row``, else of every row)."""
        self._keys.clear()
        if row is None:
            self._text.clear()
        else:
            self._text.pop(row, None)

    def sort_keys(self, column: int) -> list[Any]:
        """The sort key of every row in ``column`` (numbers as numbers, missing as -1)."""
        keys = self._keys.get(column)
        if keys is None:
            name = COLUMNS[column]
            keys = [_sort_key(_value(item, name), name) for item in self.cohort.items]
            self._keys[column] = keys
        return keys

    def search_text(self, row: int) -> str:
        """Row ``row``'s values, lower case, for the text filter."""
        text = self._text.get(row)
        if text is None:
            item = self.cohort[row]
            text = "\n".join(str(_value(item, c) or "") for c in COLUMNS).lower()
            self._text[row] = text
        return text

    def rowCount(self, parent: QModelIndex | None = None) -> int:
        if parent is not None and parent.isValid():
            return 0
        return 0 if self.cohort is None else len(self.cohort)

    def columnCount(self, parent: QModelIndex | None = None) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Any, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.cohort is None:
            return None
        item = self.cohort[index.row()]
        column = COLUMNS[index.column()]
        value = _value(item, column)
        if role == Qt.ItemDataRole.DisplayRole:
            if column == "score" and item.model_hidden and item.scored:
                return "hidden"
            if value is None:
                return ""
            return f"{value:.4f}" if column == "score" else str(value)
        if role == SORT_ROLE:
            return _sort_key(value, column)
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.error or item.path
        current = self.cohort.current_index == index.row()
        if role == Qt.ItemDataRole.BackgroundRole and current:
            return CURRENT_BRUSH
        if role == Qt.ItemDataRole.FontRole and current:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ForegroundRole and column == "status":
            colour = STATUS_COLOURS.get(item.status)
            return None if colour is None else QBrush(colour)
        return None

    def refresh_row(self, row: int) -> None:
        if 0 <= row < self.rowCount():
            self._forget(row)
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def refresh_all(self) -> None:
        self._forget()
        if self.rowCount():
            self.dataChanged.emit(
                self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1)
            )


class CohortFilter(QSortFilterProxyModel):
    """Sorts on the model's sort keys (``SORT_ROLE``'s values); keeps rows of ``status``
    ('' for all) containing ``text``."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.status = ""
        self.text = ""
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    def set_filter(self, status: str | None = None, text: str | None = None) -> None:
        if status is not None:
            self.status = status
        if text is not None:
            self.text = text.strip().lower()
        self.invalidateFilter()

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:
        keys = self.sourceModel().sort_keys(left.column())
        return keys[left.row()] < keys[right.row()]

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:
        model = self.sourceModel()
        cohort = getattr(model, "cohort", None)
        if cohort is None:
            return False
        if self.status and cohort[row].status != self.status:
            return False
        return not self.text or self.text in model.search_text(row)
