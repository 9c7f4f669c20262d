"""Draw a window of a synthetic scene: stain concentrations, then RGB by Beer-Lambert.

Every random texture comes from noise blocks seeded by their global position, and every blur
is computed with a margin, so a window is identical to the same pixels of a bigger window:
slides can be drawn strip by strip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from napari_imilia.demo.synthetic import looks
from napari_imilia.demo.synthetic.paint import paint_cells, paint_ellipses
from napari_imilia.demo.synthetic.scene import Scene
from napari_imilia.interpret.cells.types import CELL_CLASSES

_NOISE_BLOCK_PX = 128
_NOISE_OFFSET = 1 << 24
_LOOK_CLASS_IDS = np.array([CELL_CLASSES.index(name) for name in looks.LOOK_NAMES], np.uint8)
#: Intensity noise (standard deviation, 0-255 scale, same in R, G, B) added after the blur.
PIXEL_NOISE_SD = 2.2


@dataclass
class Raster:
    """One drawn window: RGB, nucleus instance labels (global cell index + 1), masks."""

    rgb: np.ndarray
    labels: np.ndarray
    class_ids: np.ndarray
    epithelium_mask: np.ndarray
    tissue_mask: np.ndarray


def global_noise(seed: int, stream: int, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """(height, width) float32 noise, mean 0 and variance 1 (uniform, so fast to draw), that
    depends only on the seed, the stream and global pixel positions."""
    block = _NOISE_BLOCK_PX
    bx0, by0 = x0 // block, y0 // block
    bx1, by1 = (x0 + width - 1) // block, (y0 + height - 1) // block
    out = np.empty(((by1 - by0 + 1) * block, (bx1 - bx0 + 1) * block), dtype=np.float32)
    for by in range(by0, by1 + 1):
        for bx in range(bx0, bx1 + 1):
            key = [seed, stream, by + _NOISE_OFFSET, bx + _NOISE_OFFSET]
            values = np.random.default_rng(key).random((block, block), np.float32)
            out[
                (by - by0) * block : (by - by0 + 1) * block,
                (bx - bx0) * block : (bx - bx0 + 1) * block,
            ] = values
    r0, c0 = y0 - by0 * block, x0 - bx0 * block
    window = out[r0 : r0 + height, c0 : c0 + width]
    window -= np.float32(0.5)
    window *= np.float32(math.sqrt(12.0))
    return window


def _blurred_noise(raw: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian-blurred unit-variance white noise rescaled to unit standard deviation."""
    return gaussian_filter(raw, sigma) * np.float32(2 * math.sqrt(math.pi * sigma[0] * sigma[1]))


def _fibres(
    seed: int, x0: int, y0: int, width: int, height: int, sigma_fine: float, sigma_coarse: float
) -> np.ndarray:
    """Wavy thin lines in [0, 1] of a window: zero crossings of band-pass filtered noise.

    The band-pass is computed on a global lattice of half resolution (its point ``j`` sits at
    pixel ``2 j + 0.5``) when that is fine enough, then interpolated bilinearly: 8x cheaper.
    """
    step = 2 if sigma_fine >= 2.0 else 1
    s_fine, s_coarse = sigma_fine / step, sigma_coarse / step
    pad = math.ceil(4 * s_coarse) + 2
    rows = (np.arange(y0, y0 + height) - 0.5 * (step - 1)) / step  # lattice coordinates
    cols = (np.arange(x0, x0 + width) - 0.5 * (step - 1)) / step
    r0, c0 = math.floor(rows[0]), math.floor(cols[0])
    n_rows, n_cols = math.floor(rows[-1]) + 2 - r0, math.floor(cols[-1]) + 2 - c0
    raw = global_noise(seed, 12 + step, c0 - pad, r0 - pad, n_cols + 2 * pad, n_rows + 2 * pad)
    band = gaussian_filter(raw, s_fine) - gaussian_filter(raw, s_coarse)
    band = band[pad:-pad, pad:-pad]
    a, b = s_fine**2, s_coarse**2
    sd = math.sqrt(1 / (4 * math.pi * a) + 1 / (4 * math.pi * b) - 1 / (math.pi * (a + b)))
    band /= np.float32(0.28 * sd)
    band = band[:height, :width] if step == 1 else _bilinear(band, rows - r0, cols - c0)
    return np.exp(-(band**2))


def _bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Samples of ``grid`` at fractional (rows, cols) (outer product), clamped at the edges."""
    rows = np.clip(rows, 0, grid.shape[0] - 1.0001)
    cols = np.clip(cols, 0, grid.shape[1] - 1.0001)
    ir, ic = rows.astype(np.int64), cols.astype(np.int64)
    wr, wc = (rows - ir).astype(np.float32)[:, None], (cols - ic).astype(np.float32)
    top = grid[ir] * (1 - wr) + grid[ir + 1] * wr
    return top[:, ic] * (1 - wc) + top[:, ic + 1] * wc


def _sigmas_px(mpp: float) -> dict[str, float]:
    return {
        "fine": max(0.6, 0.3 / mpp),
        "fibre_fine": max(1.0, 1.4 / mpp),
        "fibre_coarse": max(2.0, 2.8 / mpp),
        "optics": max(0.5, 0.22 / mpp),
    }


#: Windows are drawn in blocks of at most this many pixels a side: small arrays are reused by
#: the allocator (large ones cost page faults on every operation) and blocks without tissue
#: are cheap.
BLOCK_PX = 1024


def rasterise(scene: Scene, x0: int, y0: int, width: int, height: int) -> Raster:
    """Draw the window whose top-left pixel is (x0, y0) of ``scene``, block by block."""
    if width <= BLOCK_PX and height <= BLOCK_PX:
        return _rasterise_window(scene, x0, y0, width, height)
    out = Raster(
        rgb=np.empty((height, width, 3), np.uint8),
        labels=np.empty((height, width), np.int32),
        class_ids=np.empty((height, width), np.uint8),
        epithelium_mask=np.empty((height, width), bool),
        tissue_mask=np.empty((height, width), bool),
    )
    for top in range(0, height, BLOCK_PX):
        for left in range(0, width, BLOCK_PX):
            w, h = min(BLOCK_PX, width - left), min(BLOCK_PX, height - top)
            block = _rasterise_window(scene, x0 + left, y0 + top, w, h)
            for name in ("rgb", "labels", "class_ids", "epithelium_mask", "tissue_mask"):
                getattr(out, name)[top : top + h, left : left + w] = getattr(block, name)
    return out


def _rasterise_window(scene: Scene, x0: int, y0: int, width: int, height: int) -> Raster:
    sigmas = _sigmas_px(scene.mpp)
    margin = math.ceil(4 * max(sigmas["fine"], sigmas["optics"])) + 2
    ex0, ey0, ew, eh = x0 - margin, y0 - margin, width + 2 * margin, height + 2 * margin
    inner = (slice(margin, margin + height), slice(margin, margin + width))
    tissue = scene.tissue.mask(ex0, ey0, ew, eh)
    labels = np.zeros((eh, ew), dtype=np.int32)
    epithelium = np.zeros((eh, ew), dtype=bool)
    her = np.zeros((3, eh, ew), dtype=np.float32)
    if tissue.any() or _has_cells(scene, ex0, ey0, ew, eh):
        _paint_window(scene, her, tissue, epithelium, labels, ex0, ey0, sigmas)
    rgb = _beer_lambert(scene.stain, her[:, inner[0], inner[1]])
    rgb += PIXEL_NOISE_SD * global_noise(scene.seed, 13, x0, y0, width, height)[..., None]
    labels = labels[inner]
    lut = np.zeros(len(scene.cells) + 1, dtype=np.uint8)
    lut[1:] = _LOOK_CLASS_IDS[scene.cells.look]
    return Raster(
        rgb=np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
        labels=labels,
        class_ids=lut[labels],
        epithelium_mask=epithelium[inner],
        tissue_mask=tissue[inner],
    )


def _beer_lambert(stain: looks.Stain, her: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 intensities 0-255 of (3, H, W) H, E, R concentrations (no BLAS:
    element-wise only, so results do not depend on thread counts)."""
    rgb = np.empty((*her.shape[1:], 3), dtype=np.float32)
    for channel in range(3):
        od = her[0] * stain.od_matrix[0, channel] + stain.background_od[channel]
        od += her[1] * stain.od_matrix[1, channel]
        od += her[2] * stain.od_matrix[2, channel]
        np.exp(-od, out=od)
        rgb[..., channel] = od * np.float32(255.0)
    return rgb


def _has_cells(scene: Scene, x0: int, y0: int, width: int, height: int) -> bool:
    reach = 20.0 / scene.mpp
    x, y = scene.cells.x, scene.cells.y
    near = (
        (x > x0 - reach) & (x < x0 + width + reach) & (y > y0 - reach) & (y < y0 + height + reach)
    )
    return bool(near.any())


def _paint_window(
    scene: Scene,
    her: np.ndarray,
    tissue: np.ndarray,
    epithelium: np.ndarray,
    labels: np.ndarray,
    x0: int,
    y0: int,
    sigmas: dict[str, float],
) -> None:
    """Stain concentrations of an extended window (tissue, rings, paints, cells), blurred."""
    eh, ew = tissue.shape
    raw = global_noise(scene.seed, 11, x0, y0, ew, eh)
    fine = _blurred_noise(raw, (sigmas["fine"], sigmas["fine"]))
    fibre = _fibres(scene.seed, x0, y0, ew, eh, sigmas["fibre_fine"], sigmas["fibre_coarse"])
    lowfreq = _upsample_grid(scene, x0, y0, ew, eh)
    _paint_stroma(her, tissue, fine, fibre, lowfreq[1])
    _paint_rings(scene, her, tissue, epithelium, fine, x0, y0)
    paint_ellipses(her, scene.paints, fine, x0, y0)
    paint_cells(scene, her, labels, fine, x0, y0)
    her *= 1 + 0.06 * lowfreq[0]
    for channel in her:
        channel[...] = gaussian_filter(channel, sigmas["optics"])


def _upsample_grid(scene: Scene, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """Bilinear samples (2, height, width) of the scene's coarse low-frequency grids."""
    pitch = scene.lowfreq_pitch_px
    rows = (np.arange(y0, y0 + height) + 2 * pitch) / pitch
    cols = (np.arange(x0, x0 + width) + 2 * pitch) / pitch
    return np.stack([_bilinear(scene.lowfreq[..., c], rows, cols) for c in range(2)])


def _paint_stroma(
    her: np.ndarray, tissue: np.ndarray, fine: np.ndarray, fibre: np.ndarray, pale: np.ndarray
) -> None:
    """Lamina propria: pale eosin with wavy collagen fibres and faint haematoxylin."""
    h, e, _ = looks.STROMA_HER
    her[0] = np.where(tissue, h * (1 + 0.2 * fine), 0)
    her[1] = np.where(tissue, e * (0.8 + 0.6 * fibre - 0.12 * pale + 0.08 * fine), 0)


def _paint_rings(
    scene: Scene,
    her: np.ndarray,
    tissue: np.ndarray,
    epithelium: np.ndarray,
    fine: np.ndarray,
    x0: int,
    y0: int,
) -> None:
    """Epithelial bands (apically eosinophilic, basement membrane) and white lumina."""
    rings, mpp = scene.rings, scene.mpp
    eh, ew = tissue.shape
    for index, window, rho, inner, outer in rings.windows(x0, y0, ew, eh):
        band = (rho >= inner) & (rho <= outer)
        if rings.inverted[index]:
            tissue[window] &= rho <= outer
            depth = (outer - rho) / np.maximum(outer - inner, 1e-6)
            membrane = band & (rho - inner < 0.7 / mpp)
        else:
            lumen = rho < inner
            for channel, value in enumerate(looks.LUMEN_HER):
                her[channel][window][lumen] = value
            depth = (rho - inner) / np.maximum(outer - inner, 1e-6)
            membrane = band & (outer - rho < 0.7 / mpp)
        h, e, _ = looks.EPITHELIUM_HER
        local_fine = fine[window]
        her[0][window][band] = (h * (0.75 + 0.5 * depth) * (1 + 0.15 * local_fine))[band]
        her[1][window][band] = (e * (1.25 - 0.35 * depth) * (1 + 0.08 * local_fine))[band]
        her[2][window][band] = 0.0
        her[1][window][membrane] += looks.BASEMENT_MEMBRANE_E
        epithelium[window] |= band
    epithelium &= tissue
    her[:, ~tissue] = 0.0
