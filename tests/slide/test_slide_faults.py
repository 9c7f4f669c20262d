"""Slides that used to make `imilia info` / `predict` wait forever, or run out of memory.

- a TIFF whose chain of image directories loops (to the first one, or to itself): tifffile
  followed it forever; now one line and exit status 2;
- a FIFO (or a device) given as the slide: opening it blocked until Ctrl-C; now refused;
- a single-level giant (200k x 200k, 10^6 x 10^6 px BigTIFF, made sparse in milliseconds):
  opening built a lazy pyramid over every level-0 chunk (26 s, 1.4 GB for 10^6) and tissue
  detection decoded all of level 0 (no output after 300 s, or a MemoryError); now the
  overview is refused with a clear message naming the limit.

The command runs in a subprocess with a bound, so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_imilia
from napari_imilia.errors import SlideError
from napari_imilia.slide import open_slide
from napari_imilia.slide.backends.tiff import check_ifd_chain
from napari_imilia.tiling.tissue import detect_tissue
from support.crafted_tiff import write_giant_tiff, write_looped_tiff
from support.images import synthetic_he, write_pyramid_tiff

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev/zero")


def imilia(*args: str, timeout_s: float = 120, env: dict | None = None):
    """``imilia ARGS`` in a subprocess: (exit status, stderr)."""
    src = str(Path(napari_imilia.__file__).parents[1])
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "napari_imilia.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return done.returncode, done.stderr


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imilia "), err
    return lines[0]


@pytest.mark.parametrize("to", ["first", "self"])
def test_a_looping_directory_chain_is_refused(to: str, tmp_path: Path) -> None:
    slide = write_looped_tiff(tmp_path / f"loop_{to}.tiff", to=to)
    code, err = imilia("info", str(slide))
    assert code == 2
    assert "is corrupt: its chain of TIFF image directories loops" in one_error_line(err)
    with pytest.raises(SlideError, match="loops"):
        open_slide(slide)


def test_the_directory_walk_counts_pages_and_subifds(tmp_path: Path) -> None:
    image = synthetic_he(np.ones((512, 768), bool))
    pyramid = write_pyramid_tiff(tmp_path / "pyramid.tiff", image, mpp=0.5, n_levels=3)
    assert check_ifd_chain(pyramid) == 3  # one page and its two SubIFD levels
    with tifffile.TiffFile(pyramid) as tiff:  # a SubIFD that names itself as the next one
        first_level = tiff.pages[0].subifds[0]
    data = bytearray(pyramid.read_bytes())
    count = int.from_bytes(data[first_level : first_level + 2], "little")
    next_at = first_level + 2 + 12 * count
    data[next_at : next_at + 4] = first_level.to_bytes(4, "little")
    looped = tmp_path / "subifd_loop.tiff"
    looped.write_bytes(bytes(data))
    with pytest.raises(SlideError, match=rf"directory at byte {first_level} is reached twice"):
        check_ifd_chain(looped)


def test_fifos_and_devices_are_not_slides(tmp_path: Path) -> None:
    fifo = tmp_path / "waiting.svs"
    os.mkfifo(fifo)
    link = tmp_path / "link.svs"
    link.symlink_to(fifo)
    for path, kind in ((fifo, "a FIFO"), (link, "a FIFO"), (Path("/dev/zero"), "a character")):
        code, err = imilia("info", str(path), timeout_s=60)
        assert code == 2 and f"is {kind}" in one_error_line(err), err
    out = tmp_path / "out"
    code, err = imilia("predict", str(fifo), "--out", str(out), "--device", "cpu", timeout_s=120)
    assert code == 2 and "a FIFO (named pipe), not a slide file" in one_error_line(err)
    assert not (out / "waiting").exists()


def test_a_single_level_giant_is_refused_before_any_work(tmp_path: Path) -> None:
    giant = write_giant_tiff(tmp_path / "giant.tiff", 200_000)
    out = tmp_path / "out"
    code, err = imilia("predict", str(giant), "--out", str(out), "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "giant.tiff is 200000 x 200000 px" in line
    assert "finding its tissue would decode 40,000 megapixels" in line
    assert "IMILIA_MAX_OVERVIEW_MPX" in line and "pyramidal TIFF" in line
    assert not (out / "giant").exists()


def test_a_million_pixel_square_opens_without_building_a_pyramid(tmp_path: Path) -> None:
    huge = write_giant_tiff(tmp_path / "huge.tiff", 1_000_000)
    with open_slide(huge) as slide:
        assert slide.level_dimensions == [(1_000_000, 1_000_000)]  # no lazy overview levels
        with pytest.raises(SlideError, match="would decode 1,000,000 megapixels"):
            detect_tissue(slide)
        with pytest.raises(SlideError, match="a thumbnail would decode"):
            slide.thumbnail(512)
    code, err = imilia("info", str(huge), "--json")
    assert code == 0 and err == ""


def test_the_overview_limit_is_a_setting(tmp_path: Path, monkeypatch) -> None:
    slide_path = write_giant_tiff(tmp_path / "small.tiff", 4096, tile_px=512)
    with open_slide(slide_path) as slide:
        assert len(slide.level_dimensions) == 2  # 4096 -> 2048 (lazy)
        assert detect_tissue(slide).mask.shape == (128, 128)  # 8 µm/px from 0.25 µm/px
    monkeypatch.setenv("IMILIA_MAX_OVERVIEW_MPX", "10")
    with open_slide(slide_path) as slide:
        assert len(slide.level_dimensions) == 1
        with pytest.raises(SlideError, match="above the limit of 10 megapixels"):
            detect_tissue(slide)
    monkeypatch.setenv("IMILIA_MAX_OVERVIEW_MPX", "lots")
    with pytest.raises(SlideError, match="IMILIA_MAX_OVERVIEW_MPX must be a number"):
        open_slide(slide_path)
