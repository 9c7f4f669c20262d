"""napari-imilia: interpretable MIL inflammation review of H&E whole-slide images.

The folders read as the pipeline: ``slide`` → ``tiling`` → ``features`` → ``mil`` →
``predict`` → ``interpret`` (cells, epithelium, markers) → ``review`` → ``cohort`` →
``export`` / ``report``, with ``trust`` (untrusted input) and ``demo`` beside them and the
``imilia`` command in ``cli`` / ``_cli``. None of them imports Qt; everything napari lives in
``napari_imilia._napari``. See docs/architecture.md.

The names most scripts need are here too, imported on first use:
``predict_slide``, ``load_prediction``, ``predict_cohort``, ``open_slide``, ``inspect_slide``,
``inspect_tile``, ``Cohort``, ``score_unscored``, ``run_demo``.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from napari_imilia._lazy import lazy_exports

try:
    __version__ = version("napari-imilia")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from napari_imilia.cohort.review import Cohort
    from napari_imilia.cohort.run import predict_cohort
    from napari_imilia.cohort.scoring import score_unscored
    from napari_imilia.demo.run import run_demo
    from napari_imilia.interpret.batch import inspect_slide
    from napari_imilia.interpret.tile import inspect_tile
    from napari_imilia.predict.slide import load_prediction, predict_slide
    from napari_imilia.slide import open_slide

_EXPORTS = {
    "predict_slide": "predict.slide",
    "load_prediction": "predict.slide",
    "predict_cohort": "cohort.run",
    "open_slide": "slide",
    "inspect_slide": "interpret.batch",
    "inspect_tile": "interpret.tile",
    "Cohort": "cohort.review",
    "score_unscored": "cohort.scoring",
    "run_demo": "demo.run",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "Cohort",
    "__version__",
    "inspect_slide",
    "inspect_tile",
    "load_prediction",
    "open_slide",
    "predict_cohort",
    "predict_slide",
    "run_demo",
    "score_unscored",
]
