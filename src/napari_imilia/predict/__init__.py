"""One slide end to end: tissue, tiles, features, MIL, result files (``slide``); the heatmap
image (``heatmap``); reusing and reading results (``results``)."""

from typing import TYPE_CHECKING

from napari_imilia._lazy import lazy_exports

if TYPE_CHECKING:
    from napari_imilia.predict.slide import (
        PredictionResult,
        default_model_path,
        load_prediction,
        predict_slide,
    )

_EXPORTS = {
    "predict_slide": "slide",
    "load_prediction": "slide",
    "default_model_path": "slide",
    "PredictionResult": "slide",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "PredictionResult",
    "default_model_path",
    "load_prediction",
    "predict_slide",
]
