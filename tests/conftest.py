"""Shared fixtures: the real test slides in ../shared/data, generated TIFFs, the sample slide.

Tests marked ``gui`` need a display (CI runs the suite under ``xvfb-run``); without one they
are skipped here, before any Qt code runs. Real files nobody in this project made (the public
test slides, IMILIA's released weights) are looked for in :data:`TEST_DATA`:
``$IMILIA_TEST_DATA`` when set, else ``../shared/data`` beside the repository; tests that need
them skip with one of the reasons below, identical per cause, and the summary at the end of
a run counts the skipped tests per reason (``pytest -rs`` lists them per file and line).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tifffile.zarr import ZarrTiffStore

from support.notifications import notes  # noqa: F401 (fixture: every napari notification shown)

#: Real files nobody in this project made (see its README): $IMILIA_TEST_DATA, else
#: ../shared/data beside the repository; tests skip when absent.
TEST_DATA = Path(
    os.environ.get("IMILIA_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
).expanduser()
SHARED_DATA = TEST_DATA
#: The released IMILIA Chowder folds (fold_0.pt ... fold_4.pt).
IMILIA_RELEASE = TEST_DATA / "imilia_chowder"
#: The skip reasons, one per cause (the end-of-run summary counts skips per reason).
_WHERE = "in $IMILIA_TEST_DATA or ../shared/data"
NEEDS_SLIDES = f"needs the public test slides (small_HE.svs, small_HE_levels.tiff) {_WHERE}"
NEEDS_WEIGHTS = f"needs IMILIA's released weights (imilia_chowder/fold_*.pt) {_WHERE}"
NEEDS_XVFB = "needs Xvfb (scripts/install_system_deps.sh)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="needs a display: run under xvfb-run (DISPLAY is unset)")
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """'skipped, by reason': how many tests skipped for each reason, most first."""
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section("skipped, by reason")
        for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            terminalreporter.write_line(f"{n:4d}  {reason}")


@pytest.fixture(autouse=True)
def _private_user_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Widget settings and default results go to a temporary folder, never the user's home."""
    monkeypatch.setenv("IMILIA_CONFIG_DIR", str(tmp_path_factory.mktemp("user_config")))
    monkeypatch.setenv("IMILIA_RESULTS_DIR", str(tmp_path_factory.mktemp("user_results")))


def _shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(NEEDS_SLIDES)
    return path


@pytest.fixture(scope="session")
def small_svs() -> Path:
    """Real Aperio SVS, single level 2220 x 2967 px, 0.499 µm/px, with associated images."""
    return _shared_file("small_HE.svs")


@pytest.fixture(scope="session")
def small_levels_tiff() -> Path:
    """Real 4-level generic TIFF (300 x 250 px) whose resolution tags are nonsense (~353 µm)."""
    return _shared_file("small_HE_levels.tiff")


def write_tiled_tiff(
    path: Path,
    shape_hw: tuple[int, int],
    *,
    tile_px: int = 256,
    mpp: float | None = 0.5,
    pattern: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Path:
    """Write a single-level tiled RGB TIFF tile by tile (zlib), without the image in memory.

    ``pattern(ys, xs)`` gives the (h, w, 3) uint8 pixels at level-0 row/column grids; the
    default is white. ``mpp`` (µm/px) goes into the resolution tags (none when ``None``).
    """
    import tifffile

    height, width = shape_hw
    fill = pattern or (lambda ys, xs: np.full((*ys.shape, 3), 255, np.uint8))

    def tiles() -> Iterator[np.ndarray]:
        for y0 in range(0, height, tile_px):
            for x0 in range(0, width, tile_px):
                ys, xs = np.mgrid[y0 : y0 + tile_px, x0 : x0 + tile_px]
                yield np.ascontiguousarray(fill(ys, xs), dtype=np.uint8)

    resolution = {}
    if mpp is not None:
        resolution = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width, 3),
        dtype=np.uint8,
        tile=(tile_px, tile_px),
        photometric="rgb",
        compression="zlib",
        **resolution,
    )
    return path


@pytest.fixture(scope="session")
def tiff_writer() -> Callable[..., Path]:
    """:func:`write_tiled_tiff`, for tests that need a TIFF of their own."""
    return write_tiled_tiff


@pytest.fixture
def chunk_reads(monkeypatch) -> list[str]:
    """Keys of the image chunks read from any TIFF (metadata keys are not counted)."""
    keys: list[str] = []
    original = ZarrTiffStore.get

    async def counting_get(self, key, *args, **kwargs):
        if not key.endswith(("zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata")):
            keys.append(key)
        return await original(self, key, *args, **kwargs)

    monkeypatch.setattr(ZarrTiffStore, "get", counting_get)
    return keys


@pytest.fixture
def tiled_tiff(tmp_path: Path) -> Path:
    """A small valid tiled TIFF (600 x 800 px, 0.5 µm/px) with a pink rectangle on white."""

    def pink_box(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        image = np.full((*ys.shape, 3), 255, np.uint8)
        image[(ys >= 100) & (ys < 300) & (xs >= 200) & (xs < 500)] = (200, 100, 150)
        return image

    return write_tiled_tiff(tmp_path / "box.tiff", (600, 800), pattern=pink_box)


@pytest.fixture(scope="session")
def sample_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated sample slide (napari_imilia.demo.sample), made once per test session."""
    from napari_imilia.demo.sample import sample_slide_path

    return sample_slide_path(tmp_path_factory.mktemp("sample_cache"))
