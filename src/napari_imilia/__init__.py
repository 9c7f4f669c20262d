"""napari-imilia: interpretable MIL inflammation review of H&E whole-slide images.

The core (slide, tiling, features, mil, cells, epithelium, markers, export, review, cohort,
cli) never imports Qt; the napari widgets live in ``napari_imilia._widgets``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-imilia")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
