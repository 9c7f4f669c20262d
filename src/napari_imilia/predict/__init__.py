"""One slide end to end: the settings that decide its result (``settings``), the steps from
slide to result files (``slide``), its result folder and the one reuse rule (``results``),
and the heatmap image (``heatmap``)."""

from typing import TYPE_CHECKING

from napari_imilia._lazy import lazy_exports

if TYPE_CHECKING:
    from napari_imilia.predict.results import PredictionResult, load_prediction, reusable_result
    from napari_imilia.predict.settings import PredictSettings
    from napari_imilia.predict.slide import default_model_path, predict_slide

_EXPORTS = {
    "predict_slide": "slide",
    "load_prediction": "results",
    "default_model_path": "slide",
    "PredictionResult": "results",
    "PredictSettings": "settings",
    "reusable_result": "results",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "PredictSettings",
    "PredictionResult",
    "default_model_path",
    "load_prediction",
    "predict_slide",
    "reusable_result",
]
