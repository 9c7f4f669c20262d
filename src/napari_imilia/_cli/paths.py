"""Path arguments of ``imilia``: made absolute once, when the command line is read.

Every option or argument that names a file or folder is declared with ``type=user_path``:
argparse hands the sub-command the path made absolute against the folder the command runs
in (``~`` expanded) by :func:`~napari_imilia.trust.paths.absolute_path`, the one resolver,
so that nothing further down (worker processes, dask workers, files that record a path)
depends on the current folder. String defaults go through it too.
"""

from __future__ import annotations

import argparse

from napari_imilia.trust.paths import absolute_path


def user_path(text: str) -> str:
    """``text`` as an absolute path (argparse ``type``); an empty path is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path; name a file or folder")
    return str(absolute_path(text))
