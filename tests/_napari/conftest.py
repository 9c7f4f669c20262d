"""Fixtures of the napari wing's tests: ``notes`` (every notification shown)."""

from support.notifications import notes  # noqa: F401 (fixture)
