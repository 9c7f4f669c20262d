"""napari sample data: the generated synthetic IBD H&E slide, opened like any other slide.

*File → Open Sample → napari-imilia → Synthetic IBD H&E slide*. The slide is generated once
(deterministic, cached; see :func:`napari_imilia.demo.sample.sample_slide_path`) and then opened
through the same code as the reader, so the layer is lazy, multiscale and scaled in µm.
"""

from __future__ import annotations

from napari_imilia._napari.reader import LayerDataTuple, slide_layer_data
from napari_imilia.slide import open_slide


def sample_slide() -> list[LayerDataTuple]:
    """Layer data for the sample slide (an inflamed synthetic colon biopsy, 0.5 µm/px)."""
    from napari_imilia.demo.sample import sample_slide_path

    return [slide_layer_data(open_slide(sample_slide_path()))]
