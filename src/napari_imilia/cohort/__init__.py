"""Many slides: the inputs of a run (``inputs``), the run in this process or on
dask.distributed (``run``, ``cluster``), ``cohort.csv`` (``summary``), and the cohort under
review (``review``: slides, scores, grades; ``item``; ``scoring``: Score all)."""

from typing import TYPE_CHECKING

from napari_imilia._lazy import lazy_exports

if TYPE_CHECKING:
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.run import CohortProgress, predict_cohort
    from napari_imilia.cohort.scoring import score_unscored

_EXPORTS = {
    "predict_cohort": "run",
    "CohortProgress": "run",
    "Cohort": "review",
    "score_unscored": "scoring",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "Cohort",
    "CohortProgress",
    "predict_cohort",
    "score_unscored",
]
