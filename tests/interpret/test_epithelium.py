"""EpiSeg probe (labels, training, save/load, upsampling), stain heuristic and polygons."""

from __future__ import annotations

import re

import numpy as np
import pytest
import shapely
from scipy import ndimage as ndi

from napari_imilia.errors import CheckpointError, DataError, ImiliaError
from napari_imilia.interpret.epithelium import (
    EpiSegProbe,
    epithelium_polygons,
    load_episeg_probe,
    patch_fractions_from_mask,
    patch_labels_from_mask,
    patch_tokens_of,
    segment_epithelium,
    train_episeg_probe,
)

TILE_PX, GRID, DIM = 224, 16, 12


def synthetic_token_set(n_tiles=10, seed=0):
    """Tiles whose epithelium masks are random rectangles; tokens carry the patch fraction."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_tiles, TILE_PX, TILE_PX), dtype=bool)
    for mask in masks:
        for _ in range(3):
            r, c = rng.integers(0, TILE_PX - 60, size=2)
            h, w = rng.integers(20, 60, size=2)
            mask[r : r + h, c : c + w] = True
    fractions = np.stack([patch_fractions_from_mask(m, (GRID, GRID)) for m in masks])
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    tokens = rng.normal(size=(n_tiles, GRID, GRID, DIM)) + 4.0 * fractions[..., None] * direction
    return tokens.astype(np.float32), masks


class FakeViT:
    """Stands in for a ViT extractor: tokens are the tile's red channel per 14 px patch."""

    def __init__(self, name="fake-vit", dim=DIM, sha="ab" * 32):
        self.name, self.dim, self.weights_sha256 = name, dim, sha
        self.tile_px, self.target_mpp = TILE_PX, 0.5

    def patch_tokens(self, tiles):
        red = tiles[..., 0].astype(np.float32) / 255.0
        pooled = red.reshape(len(tiles), GRID, 14, GRID, 14).mean(axis=(2, 4))
        return np.repeat(pooled[..., None], self.dim, axis=-1)


def test_patch_labels_follow_reference_rule():
    mask = np.zeros((28, 42), dtype=bool)
    mask[0:14, 0:14] = True  # patch (0, 0): all epithelium -> 1
    mask[0:7, 14:28] = True  # patch (0, 1): half -> mixed, left out (-1)
    mask[14, 28] = True  # patch (1, 2): 1 px of 196 (0.5 %) -> 0
    fractions = patch_fractions_from_mask(mask, (2, 3))
    assert fractions[0, 0] == 1.0 and fractions[0, 1] == 0.5
    assert fractions[1, 2] == pytest.approx(1 / 196)
    labels = patch_labels_from_mask(mask, (2, 3))
    assert labels.tolist() == [[1, -1, 0], [0, 0, 0]]
    with pytest.raises(DataError):
        patch_fractions_from_mask(mask, (40, 3))


def test_probe_cross_validation_grouped_by_tile_and_accurate():
    tokens, masks = synthetic_token_set()
    probe, metrics = train_episeg_probe(
        tokens, masks, folds=5, seed=0, extractor_name="fake-vit", extractor_weights_sha256="ab"
    )
    held_out = [set(fold) for fold in metrics["fold_tiles"]]
    assert sorted(i for fold in held_out for i in fold) == list(range(10))
    assert len(metrics["fold_ap"]) == 5
    assert metrics["mean_ap"] >= 0.95 and min(metrics["fold_ap"]) >= 0.9
    assert metrics["mean_ap"] == pytest.approx(np.mean(metrics["fold_ap"]))
    assert metrics["best_c"] in [entry["c"] for entry in metrics["per_c"]]
    assert probe.dim == DIM and probe.threshold == 0.75
    again, metrics_again = train_episeg_probe(tokens, masks, folds=5, seed=0)
    assert np.array_equal(again.weights, probe.weights) and metrics_again == metrics
    with pytest.raises(DataError, match="folds"):
        train_episeg_probe(tokens[:3], masks[:3], folds=5)
    with pytest.raises(DataError, match="clearly"):
        train_episeg_probe(tokens[:5], np.zeros_like(masks[:5]), folds=5)


def test_probe_save_load_round_trip_and_errors(tmp_path):
    tokens, masks = synthetic_token_set()
    probe, _ = train_episeg_probe(tokens, masks, folds=3, extractor_name="fake-vit")
    path = probe.save(tmp_path / "probe.safetensors")
    loaded = load_episeg_probe(path)
    assert np.array_equal(loaded.predict_proba(tokens[0]), probe.predict_proba(tokens[0]))
    assert loaded.extractor_name == "fake-vit" and loaded.provenance == probe.provenance
    with pytest.raises(CheckpointError, match="does not exist"):
        load_episeg_probe(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_episeg_probe(tmp_path / "bad.safetensors")
    from safetensors.numpy import load, save

    blob = path.read_bytes()
    tensors = load(blob)
    tensors["weights"] = np.concatenate([tensors["weights"], [0.0]])
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    (tmp_path / "wrong_dim.safetensors").write_bytes(save(tensors, metadata=metadata))
    with pytest.raises(CheckpointError, match="shape"):
        load_episeg_probe(tmp_path / "wrong_dim.safetensors")
    with pytest.raises(CheckpointError, match=f"\\(h, w, {DIM}\\)"):
        probe.predict_proba(np.zeros((16, 16, DIM + 1)))


def test_probe_refuses_another_extractor():
    probe = EpiSegProbe(np.ones(DIM), 0.0, 0.75, "fake-vit", "ab" * 32)
    probe.check_extractor(FakeViT())
    tile = np.zeros((TILE_PX, TILE_PX, 3), dtype=np.uint8)
    with pytest.raises(CheckpointError, match="trained on patch tokens of extractor 'fake-vit'"):
        segment_epithelium(tile, mpp=0.5, method="episeg", probe=probe, extractor=FakeViT("other"))
    with pytest.raises(CheckpointError, match="sha256"):
        probe.check_extractor(FakeViT(sha="cd" * 32))
    with pytest.raises(CheckpointError, match="13-d"):
        probe.check_extractor(FakeViT(dim=DIM + 1))
    with pytest.raises(ImiliaError, match="needs a trained probe"):
        segment_epithelium(tile, mpp=0.5, method="episeg")


def test_extractor_without_patch_tokens_is_a_clear_error():
    class Pooled:  # like the builtin extractor: one embedding per tile only
        name, dim = "builtin", DIM

    with pytest.raises(ImiliaError, match="gives no patch tokens"):
        patch_tokens_of(Pooled(), np.zeros((1, TILE_PX, TILE_PX, 3), np.uint8))


def test_predict_mask_upsamples_onto_the_right_patch_block():
    probe = EpiSegProbe(np.eye(DIM)[0], 0.0, 0.75, "fake-vit", "")
    tokens = np.full((GRID, GRID, DIM), -10.0)
    tokens[3, 5, 0] = 10.0  # one epithelium patch: rows 42-55, columns 70-83
    mask = probe.predict_mask(tokens, (TILE_PX, TILE_PX))
    assert mask.shape == (TILE_PX, TILE_PX) and mask.dtype == bool
    rows, cols = np.nonzero(mask)
    assert rows.min() >= 42 and rows.max() <= 55 and cols.min() >= 70 and cols.max() <= 83
    assert (rows.min() + rows.max()) / 2 == pytest.approx(48.5)
    assert (cols.min() + cols.max()) / 2 == pytest.approx(76.5)
    tokens[2:5, 4:7, 0] = 10.0  # 3 x 3 patches: the centre block is wholly epithelium
    mask = probe.predict_mask(tokens, (TILE_PX, TILE_PX))
    assert mask[42:56, 70:84].all()
    rows, cols = np.nonzero(mask)
    assert rows.min() >= 28 and rows.max() < 70 and cols.min() >= 56 and cols.max() < 98


def test_segment_episeg_with_a_token_extractor():
    tile = np.zeros((TILE_PX, TILE_PX, 3), dtype=np.uint8)
    tile[:, :112, 0] = 255  # left half "epithelium" in the fake token space
    probe = EpiSegProbe(np.full(DIM, 2.0), -DIM * 1.0, 0.75, "fake-vit", "ab" * 32, mpp=0.5)
    result = segment_epithelium(tile, mpp=1.0, method="episeg", probe=probe, extractor=FakeViT())
    assert result.method == "episeg" and result.mask.shape == (TILE_PX, TILE_PX)
    assert result.mask[:, :100].all() and not result.mask[:, 120:].any()
    assert any("trained at 0.5" in flag for flag in result.flags)


def test_polygons_in_level0_coordinates():
    mask = np.zeros((100, 120), dtype=bool)
    mask[10:60, 20:90] = True
    mask[30:40, 40:50] = False  # a lumen: kept as a hole
    mask[80:83, 100:103] = True  # 9 px = 2.25 µm² at 0.5 µm/px: dropped below 5 µm²
    polygons = epithelium_polygons(
        mask, mpp=0.5, level0_xy=(4000, 6000), level0_per_px=2.0, min_area_um2=5.0
    )
    assert len(polygons) == 1
    polygon = polygons[0]
    assert polygon.is_valid and len(polygon.interiors) == 1
    assert polygon.area == pytest.approx(mask[:70].sum() * 2.0**2, rel=0.01)
    minx, miny, maxx, maxy = polygon.bounds
    assert (minx, miny, maxx, maxy) == (4040.0, 6020.0, 4180.0, 6120.0)
    assert shapely.box(4000, 6000, 4000 + 120 * 2, 6000 + 100 * 2).contains(polygon)
    assert len(epithelium_polygons(mask, mpp=0.5, level0_xy=(0, 0), level0_per_px=1.0)) == 2
    assert (
        epithelium_polygons(np.zeros((5, 5), bool), mpp=0.5, level0_xy=(0, 0), level0_per_px=1)
        == []
    )


def crypt_tile(seed, size=224, mpp=0.5, n_crypts=2, n_lymphocytes=60):
    """An H&E-like tile: crypts (white lumen, purple epithelium ring with elongated basal
    nuclei pointing at the lumen) in pink stroma with round lymphocytes; returns the tile
    and its true epithelium mask. Used while ``napari_imilia.demo.synthetic`` is absent."""
    rng = np.random.default_rng(seed)
    px = 1.0 / mpp
    yy, xx = np.mgrid[:size, :size]
    rgb = np.empty((size, size, 3))
    rgb[:] = (232, 165, 195)
    epithelium = np.zeros((size, size), dtype=bool)
    for _ in range(n_crypts):
        cy, cx = rng.uniform(15 * px, size - 15 * px, 2)
        lumen_r, outer_r = rng.uniform(6, 10) * px, rng.uniform(22, 28) * px
        distance = np.hypot(yy - cy, xx - cx)
        ring = (distance >= lumen_r) & (distance < outer_r)
        epithelium |= ring
        rgb[ring] = (205, 150, 200)
        rgb[distance < lumen_r] = (245, 242, 245)
        n_nuclei = int(2 * np.pi * (outer_r - 4 * px) / (5 * px))
        for k in range(n_nuclei):
            angle = 2 * np.pi * k / n_nuclei + rng.normal(0, 0.05)
            r = outer_r - rng.uniform(5, 8) * px
            dy, dx = yy - (cy + r * np.sin(angle)), xx - (cx + r * np.cos(angle))
            u = dx * np.cos(angle) + dy * np.sin(angle)
            v = -dx * np.sin(angle) + dy * np.cos(angle)
            rgb[(u / (5 * px)) ** 2 + (v / (1.8 * px)) ** 2 <= 1] = (75, 50, 135)
    for cy, cx in rng.uniform(0, size, (n_lymphocytes, 2)):
        rgb[((yy - cy) ** 2 + (xx - cx) ** 2 <= (3 * px) ** 2) & ~epithelium] = (60, 40, 120)
    rgb += rng.normal(0, 6, rgb.shape)
    rgb = ndi.gaussian_filter(rgb, (0.7, 0.7, 0))
    return np.clip(rgb, 0, 255).astype(np.uint8), epithelium


def dice(a, b):
    return 2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def test_stain_heuristic_finds_crypt_epithelium():
    scores = []
    for seed in range(3):
        tile, truth = crypt_tile(seed)
        result = segment_epithelium(tile, mpp=0.5)
        assert result.method == "stain-heuristic" and result.mask.shape == truth.shape
        assert result.probability.min() >= 0.0 and result.probability.max() <= 1.0
        scores.append(dice(result.mask, truth))
    assert min(scores) >= 0.75, scores


def test_stain_heuristic_blank_and_tissue_mask():
    blank = np.full((224, 224, 3), 243, dtype=np.uint8)
    assert not segment_epithelium(blank, mpp=0.5).mask.any()
    pink = np.full((224, 224, 3), (232, 165, 195), dtype=np.uint8)
    assert segment_epithelium(pink, mpp=0.5).mask.mean() < 0.01
    tile, _ = crypt_tile(0)
    tissue = np.zeros(tile.shape[:2], dtype=bool)
    tissue[:, :100] = True
    assert not segment_epithelium(tile, mpp=0.5, tissue_mask=tissue).mask[:, 100:].any()
    with pytest.raises(ImiliaError, match="unknown epithelium method"):
        segment_epithelium(tile, mpp=0.5, method="magic")


def write_pairs(root, n=3, size=28):
    from PIL import Image

    tiles, masks = root / "tiles", root / "masks"
    tiles.mkdir(), masks.mkdir()
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), 200, np.uint8)).save(tiles / f"t{i}.png")
        mask = np.zeros((size, size), np.uint8)
        mask[: size // 2] = 255
        Image.fromarray(mask).save(masks / f"t{i}.png")
    return tiles, masks


def run_cli(tiles, masks, out, *extra):
    from napari_imilia.cli import main

    return main(
        ["train-episeg", "--tiles", str(tiles), "--masks", str(masks), "--extractor",
         "no-such-extractor", "--out", str(out), *extra]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda t, m: (m / "t0.png").rename(m / "other.png"), "same names"),
        (lambda t, m: _save(m / "t1.png", np.zeros((20, 28), np.uint8)), "20 px but its tile"),
        (lambda t, m: _save(m / "t2.png", np.arange(28 * 28).reshape(28, 28) % 7), "not binary"),
        (lambda t, m: None, "3 tile\\(s\\) cannot be split into 5 folds"),
    ],
)
def test_train_episeg_cli_input_errors(tmp_path, capsys, break_it, message):
    tiles, masks = write_pairs(tmp_path)
    break_it(tiles, masks)
    assert run_cli(tiles, masks, tmp_path / "probe.safetensors") == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "probe.safetensors").exists()


def _save(path, array):
    from PIL import Image

    Image.fromarray(array.astype(np.uint8)).save(path)


def test_train_episeg_cli_then_inspect_with_the_probe(tmp_path, capsys, tiff_writer):
    """`imilia train-episeg` end to end with a (tiny, random) ViT of H0-mini's layout on
    synthetic tiles and their planted epithelium masks: probe + episeg_cv.json written, the
    probe loads with its extractor and segments a tile through inspect_tile."""
    import dataclasses
    import json

    from PIL import Image
    from safetensors.torch import save_file

    from napari_imilia.cli import main
    from napari_imilia.demo.synthetic import render_tile
    from napari_imilia.features.extractors import (
        FOUNDATION_SPECS,
        ViTExtractor,
        register_extractor,
        unregister_extractor,
    )
    from napari_imilia.features.vit import VisionTransformer
    from napari_imilia.features.vit.config import scaled_down
    from napari_imilia.interpret import TileBox, inspect_tile
    from napari_imilia.slide import open_slide

    h0 = next(spec for spec in FOUNDATION_SPECS if spec.name == "h0-mini")
    spec = dataclasses.replace(h0, name="tiny-h0", vit=scaled_down(h0.vit, grid=16))  # 224 px
    weights = tmp_path / "tiny.safetensors"
    save_file(VisionTransformer(spec.vit).init_random(seed=2).state_dict(), str(weights))
    tiles_dir, masks_dir = tmp_path / "tiles", tmp_path / "masks"
    tiles_dir.mkdir(), masks_dir.mkdir()
    rendered = [render_tile(224, 0.5, seed=s) for s in range(6)]
    for k, tile in enumerate(rendered):
        Image.fromarray(tile.rgb).save(tiles_dir / f"t{k}.png")
        Image.fromarray(tile.epithelium_mask.astype(np.uint8) * 255).save(masks_dir / f"t{k}.png")
    register_extractor(
        "tiny-h0", "test", lambda w, d, b: ViTExtractor(spec, w, device=d, batch_size=b)
    )
    try:
        probe_path = tmp_path / "probe.safetensors"
        argv = ["train-episeg", "--tiles", str(tiles_dir), "--masks", str(masks_dir)]
        argv += ["--extractor", "tiny-h0", "--extractor-weights", str(weights)]
        assert main([*argv, "--out", str(probe_path), "--folds", "3", "--device", "cpu"]) == 0
        assert "cross-validated AP" in capsys.readouterr().out
        cv = json.loads((tmp_path / "episeg_cv.json").read_text())
        assert cv["extractor"] == "tiny-h0" and len(cv["fold_ap"]) == 3
        assert 0.0 <= cv["mean_ap"] <= 1.0
        probe = load_episeg_probe(probe_path)
        assert probe.extractor_name == "tiny-h0" and probe.mpp == 0.5
        extractor = ViTExtractor(spec, weights, device="cpu")
        probe.check_extractor(extractor)

        path = tiff_writer(
            tmp_path / "s.tiff",
            (224, 224),
            mpp=0.5,
            pattern=lambda y, x: rendered[0].rgb[np.clip(y, 0, 223), np.clip(x, 0, 223)],
        )
        with open_slide(path) as slide:
            result = inspect_tile(
                slide,
                TileBox("t", 0, 0, 224, 224),
                epithelium_method="episeg",
                episeg_probe=probe,
                episeg_extractor=extractor,
            )
        assert result.epithelium_method == "episeg" and result.epithelium_mask.shape == (224, 224)
        assert not result.epithelium_mask[~result.tissue_mask].any()
    finally:
        unregister_extractor("tiny-h0")
