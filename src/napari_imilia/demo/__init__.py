"""The embedded default: the generated sample slide (``sample``), synthetic H&E with known
truth (``synthetic``), the demo model's training cohort (``cohort``) and ``imilia demo``
(``run``)."""

from typing import TYPE_CHECKING

from napari_imilia._lazy import lazy_exports

if TYPE_CHECKING:
    from napari_imilia.demo.run import DemoOutputs, run_demo
    from napari_imilia.demo.sample import sample_slide_path

_EXPORTS = {
    "run_demo": "run",
    "DemoOutputs": "run",
    "sample_slide_path": "sample",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "DemoOutputs",
    "run_demo",
    "sample_slide_path",
]
