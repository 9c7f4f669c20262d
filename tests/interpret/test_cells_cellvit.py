"""The CellViT backend: HistoPLUS key names and shapes, save/load round trips, checkpoint
errors, window stitching on planted maps, HoVer post-processing on ideal maps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from napari_imilia.demo.synthetic import render_tile
from napari_imilia.errors import CheckpointError, ImiliaError
from napari_imilia.features.vit import H0_MINI, VisionTransformer
from napari_imilia.features.vit.config import scaled_down as scaled_down_vit
from napari_imilia.interpret.cells import CELL_CLASSES, CellTile, create_cell_backend
from napari_imilia.interpret.cells.cellvit import (
    HISTOPLUS_20X,
    HISTOPLUS_40X,
    CellViT,
    CellViTBackend,
    cells_from_maps,
    expected_shapes,
    histoplus_state_dict,
    hover_instances,
    hover_params_for_mpp,
    infer_config,
    save_cellvit,
    scaled_down,
    to_model_keys,
)
from napari_imilia.interpret.cells.cellvit.post import hv_targets, sobel_kernels, vote_classes
from napari_imilia.interpret.cells.cellvit.windows import (
    axis_windows,
    plan_windows,
    predict_tile_maps,
)

SMALL = scaled_down(HISTOPLUS_40X, embed_dim=32, depth=4, num_heads=2, grid=4)
WINDOW = {"protocol": "tile-context", "window_px": 56, "overlap_px": 16}
E = "backbone.feature_extractor.model."


@pytest.fixture(scope="module")
def small_model() -> CellViT:
    return CellViT(SMALL).init_random(seed=3).eval()


@pytest.fixture(scope="module")
def tile_rgb() -> np.ndarray:
    return render_tile(100, 0.25, seed=5, inflamed=True).rgb


def _reference_shapes(config) -> dict[str, tuple[int, ...]]:
    """HistoPLUS's state dict (``CellViT`` of histoplus/helpers/nn/cellvit), written out from
    its module definitions: timm ViT trunk (xformers SwiGLU w12/w3, no final norm), neck,
    three decoder branches."""
    d, hidden = config.encoder.embed_dim, config.encoder.mlp_hidden_dim
    grid = config.encoder.img_size_px // 14
    shapes = {
        E + "cls_token": (1, 1, d),
        E + "reg_token": (1, 4, d),
        E + "pos_embed": (1, grid * grid, d),
        E + "patch_embed.proj.weight": (d, 3, 14, 14),
        E + "patch_embed.proj.bias": (d,),
    }
    for i in range(12):
        b = f"{E}blocks.{i}."
        for name, shape in {
            "norm1": (d,),
            "norm2": (d,),
            "attn.qkv": (3 * d, d),
            "attn.proj": (d, d),
            "mlp.w12": (hidden, d),
            "mlp.w3": (d, hidden // 2),
        }.items():
            shapes[b + name + ".weight"] = shape
            shapes[b + name + ".bias"] = (shape[0],)
        shapes[b + "ls1.gamma"] = shapes[b + "ls2.gamma"] = (d,)

    def conv(prefix, cin, cout, k=3, bn=True):
        shapes[prefix + ".weight"] = (cout, cin, k, k)
        shapes[prefix + ".bias"] = (cout,)

    def bnorm(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    def up(prefix, cin, cout):
        shapes[prefix + ".weight"] = (cin, cout, 2, 2)
        shapes[prefix + ".bias"] = (cout,)

    def conv_block(prefix, cin, cout):
        conv(prefix + ".block.0", cin, cout)
        bnorm(prefix + ".block.1", cout)

    def deconv_block(prefix, cin, cout):
        up(prefix + ".block.0", cin, cout)
        conv(prefix + ".block.1", cout, cout)
        bnorm(prefix + ".block.2", cout)

    conv_block("neck.necks.0.0", 3, 32)
    conv_block("neck.necks.0.1", 32, 64)
    for i, (cin, cout) in enumerate([(d, 512), (512, 256), (256, 128)]):
        deconv_block(f"neck.necks.1.{i}", cin, cout)
    for i, (cin, cout) in enumerate([(d, 512), (512, 256)]):
        deconv_block(f"neck.necks.2.{i}", cin, cout)
    deconv_block("neck.necks.3.0", d, 512)
    for branch, n_out in (("np", 2), ("hv", 2), ("tp", 15)):
        p = f"{branch}_branch."
        up(p + "bottleneck_upsampler", d, 512)
        conv_block(p + "decoder3_upsampler.0", 1024, 512)
        conv_block(p + "decoder3_upsampler.1", 512, 512)
        conv_block(p + "decoder3_upsampler.2", 512, 512)
        up(p + "decoder3_upsampler.3", 512, 256)
        conv_block(p + "decoder2_upsampler.0", 512, 256)
        conv_block(p + "decoder2_upsampler.1", 256, 256)
        up(p + "decoder2_upsampler.2", 256, 128)
        conv_block(p + "decoder1_upsampler.0", 256, 128)
        conv_block(p + "decoder1_upsampler.1", 128, 128)
        up(p + "decoder1_upsampler.2", 128, 64)
        conv_block(p + "decoder0_header.0", 128, 64)
        conv_block(p + "decoder0_header.1", 64, 64)
        conv(p + "decoder0_header.2", 64, n_out, k=1)
    return shapes


def _histoplus_names(shapes: dict) -> dict[str, tuple[int, ...]]:
    renamed = {}
    for key, shape in shapes.items():
        if key.startswith(E):
            key = key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
        renamed[key] = tuple(shape)
    return renamed


@pytest.mark.parametrize("config", [HISTOPLUS_40X, HISTOPLUS_20X], ids=["40x", "20x"])
def test_full_size_model_has_histoplus_keys_and_shapes(config):
    ours = _histoplus_names(expected_shapes(config))
    reference = _reference_shapes(config)
    assert len(reference) == 460
    assert ours == reference
    assert ours[E + "pos_embed"] == ((1, 1024, 768) if config.mpp == 0.25 else (1, 256, 768))


def _meta_state(config, *, old_layout: bool = False) -> dict[str, torch.Tensor]:
    state = {k: torch.empty(s, device="meta") for k, s in _reference_shapes(config).items()}
    if old_layout:  # HistoPLUS's earlier files: no ".model.", final norm still present
        state = {k.replace(E, "backbone.feature_extractor."): v for k, v in state.items()}
        state["backbone.feature_extractor.norm.weight"] = torch.empty(768, device="meta")
        state["backbone.feature_extractor.norm.bias"] = torch.empty(768, device="meta")
    return state


@pytest.mark.parametrize("old_layout", [False, True])
def test_infer_config_recognises_both_histoplus_releases(old_layout):
    for release in (HISTOPLUS_40X, HISTOPLUS_20X):
        state = to_model_keys({"state_dict": _meta_state(release, old_layout=old_layout)})
        assert infer_config(state) == release
        assert set(state) == set(expected_shapes(release))


def test_forward_shapes_and_input_size_checks(small_model):
    with torch.no_grad():
        out = small_model(torch.randn(2, 3, 56, 56))
        odd = small_model(torch.randn(1, 3, 70, 42))  # other grids: positions resampled
    assert out["np"].shape == (2, 2, 56, 56) and out["hv"].shape == (2, 2, 56, 56)
    assert out["tp"].shape == (2, 15, 56, 56)
    assert odd["tp"].shape == (1, 15, 70, 42)
    with pytest.raises(ValueError, match="multiple of 14"):
        small_model(torch.randn(1, 3, 50, 56))


def _same_cells(a, b) -> None:
    np.testing.assert_array_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.table.drop(columns="cell_id"), b.table.drop(columns="cell_id"))
    assert a.mpp == b.mpp and a.level0_per_px == b.level0_per_px


def test_safetensors_round_trip_gives_identical_outputs(tmp_path, small_model, tile_rgb):
    path = save_cellvit(small_model, tmp_path / "small.safetensors")
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["format"] == "napari-imilia-cellvit" and record["config"]["mpp"] == 0.25
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
    assert E + "blocks.0.mlp.w12.weight" in keys and E + "blocks.0.mlp.fc1.weight" not in keys
    assert keys == set(_histoplus_names(expected_shapes(SMALL)))

    before = CellViTBackend(small_model, device="cpu", **WINDOW)
    after = CellViTBackend(path, device="cpu", **WINDOW)
    assert after.config == SMALL and after.analysis_mpp == 0.25
    x = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, value in small_model(x).items():
            assert torch.equal(value, after.model(x)[name]), name
    kwargs = {"mpp": 0.25, "level0_xy": (1000, 2000), "level0_per_px": 1.0}
    cells_before = before.segment(tile_rgb, **kwargs)
    cells_after = after.segment(tile_rgb, **kwargs)
    _same_cells(cells_before, cells_after)
    assert cells_after.n_cells > 0
    assert cells_after.labels.shape == (100, 100) and cells_after.labels.dtype == np.int32
    table = cells_after.table
    assert table["class_id"].between(1, len(CELL_CLASSES) - 1).all()
    assert table["probability"].between(0, 1).all()
    assert table["class_name"].tolist() == [CELL_CLASSES[i] for i in table["class_id"]]
    assert table["centroid_x"].between(1000, 1100).all()
    assert len(cells_after.contours) == len(table) and cells_after.backend == "cellvit"


def test_torch_checkpoint_with_histoplus_layout_loads_and_infers(tmp_path):
    config = scaled_down(HISTOPLUS_20X, embed_dim=64, depth=4, num_heads=1, grid=4)
    model = CellViT(config).init_random(seed=8).eval()
    state = histoplus_state_dict(model)
    old = {"module." + k.replace(E, "backbone.feature_extractor."): v for k, v in state.items()}
    old["module.backbone.feature_extractor.norm.weight"] = torch.ones(64)
    old["module.backbone.feature_extractor.norm.bias"] = torch.zeros(64)
    path = tmp_path / "histoplus_like.pt"
    torch.save({"state_dict": old}, path)
    loaded = CellViTBackend(path, device="cpu", mpp=0.5, **WINDOW)  # no JSON: from shapes
    assert loaded.config.encoder.num_heads == 1 and loaded.config.encoder_layers == (0, 1, 2, 3)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(model(x)["tp"], loaded.model(x)["tp"])
    with pytest.raises(CheckpointError, match="pass mpp="):
        CellViTBackend(path, device="cpu")  # 56 px training tiles: not a HistoPLUS release


def test_resampling_batching_and_tissue(small_model, tile_rgb):
    backend = CellViTBackend(small_model, device="cpu", batch_size=3, **WINDOW)
    half = tile_rgb[::2, ::2].copy()  # 50 px at 0.5 µm/px -> 100 px at the model's 0.25
    coarse = backend.segment(half, mpp=0.5, level0_xy=(0, 0), level0_per_px=2.0)
    assert coarse.labels.shape == (100, 100)
    assert coarse.mpp == pytest.approx(0.25) and coarse.level0_per_px == pytest.approx(1.0)
    tiles = [
        CellTile(tile_rgb, 0.25, (0, 0), 1.0),
        CellTile(tile_rgb[:70, :90].copy(), 0.25, (5, 5), 1.0),
        CellTile(tile_rgb, 0.25, (0, 0), 1.0, tissue_mask=np.zeros((100, 100), bool)),
    ]
    many = backend.segment_many(tiles)
    for tile, cells in zip(tiles[:2], many[:2], strict=True):
        _same_cells(
            cells, backend.segment(tile.rgb, mpp=0.25, level0_xy=tile.level0_xy, level0_per_px=1.0)
        )
    assert many[1].labels.shape == (70, 90)
    assert many[2].n_cells == 0 and many[2].flags == ["no_tissue"]
    left = np.zeros((100, 100), bool)
    left[:, :50] = True
    masked = backend.segment(
        tile_rgb, mpp=0.25, level0_xy=(0, 0), level0_per_px=1.0, tissue_mask=left
    )
    assert 0 < masked.n_cells < many[0].n_cells
    assert (masked.table["centroid_x"] < 50 + 5).all()


def test_registry_creates_the_backend(tmp_path, small_model):
    path = save_cellvit(small_model, tmp_path / "reg.safetensors")
    backend = create_cell_backend("CellViT", checkpoint=path, device="cpu", **WINDOW)
    assert isinstance(backend, CellViTBackend) and backend.name == "cellvit"
    with pytest.raises(ImiliaError, match="multiple of the patch size"):
        CellViTBackend(small_model, device="cpu", window_px=50)
    with pytest.raises(ImiliaError, match="overlap_px"):
        CellViTBackend(small_model, device="cpu", window_px=56, overlap_px=56)


class _NotATensor:
    pass


def test_bad_checkpoints_raise_clear_errors(tmp_path, small_model):
    six = dataclasses.replace(SMALL, class_names=CELL_CLASSES[:6])
    six_path = tmp_path / "six.pt"
    torch.save(histoplus_state_dict(CellViT(six).init_random(1)), six_path)
    with pytest.raises(CheckpointError, match=r"predicts 6 cell types.*taxonomy has 15"):
        CellViTBackend(six_path, device="cpu", mpp=0.25)
    assert CellViTBackend(six_path, device="cpu", config=six).config.num_classes == 6
    good = save_cellvit(small_model, tmp_path / "good.safetensors")
    with pytest.raises(CheckpointError, match=r"predicts 15 cell types.*config names 6"):
        CellViTBackend(good, device="cpu", config=six)
    wider = dataclasses.replace(SMALL, bottleneck_dim=SMALL.bottleneck_dim * 2)
    with pytest.raises(CheckpointError, match=r"shape mismatches: neck\.necks\.3\.0"):
        CellViTBackend(good, device="cpu", config=wider)

    vit = VisionTransformer(scaled_down_vit(H0_MINI)).init_random(0)
    vit_path = tmp_path / "vit.pt"
    torch.save(vit.state_dict(), vit_path)
    with pytest.raises(CheckpointError, match="ViT encoder alone"):
        CellViTBackend(vit_path, device="cpu")
    other = tmp_path / "other.pt"
    torch.save({"attention.weight": torch.zeros(3, 4)}, other)
    with pytest.raises(CheckpointError, match=r"not a CellViT.*attention\.weight"):
        CellViTBackend(other, device="cpu")

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt"):
        CellViTBackend(corrupt, device="cpu")
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": _NotATensor()}, pickled)
    with pytest.raises(CheckpointError, match="refused"):
        CellViTBackend(pickled, device="cpu")
    with pytest.raises(CheckpointError, match="does not exist"):
        CellViTBackend(tmp_path / "missing.pt", device="cpu")
    bad_json = tmp_path / "good.json"
    bad_json.write_text(json.dumps({"format": "napari-imilia-cellvit", "config": {"x": 1}}))
    with pytest.raises(CheckpointError, match="invalid"):
        CellViTBackend(good, device="cpu")


def test_axis_windows_cores_partition_with_context():
    for length in [1, 55, 56, 57, 100, 161, 400, 601]:
        windows = axis_windows(length, 56, 16)
        covered = np.concatenate([np.arange(a, b) for _, a, b in windows])
        np.testing.assert_array_equal(covered, np.arange(length))
        for start, a, b in windows:
            assert start <= a < b <= start + 56
            assert a == 0 or a - start >= 8  # at least overlap / 2 of context inside
            assert b == length or start + 56 - b >= 8


def _encode(labels: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = labels % 256, labels // 256
    return rgb


def _planted_class(label: np.ndarray) -> np.ndarray:
    return 1 + label % 14


def _fake_predictor(crops: np.ndarray):
    """Ideal maps of what each window shows: nuclei, HV offsets of the *visible* part of each
    nucleus (a nucleus cut by the window edge gets the maps of its cut part, as a network
    would), class 1 + label % 14 with probability 0.8."""
    labels = crops[..., 0].astype(np.int64) + 256 * crops[..., 1].astype(np.int64)
    nuclei = (labels > 0).astype(np.float32)
    hv = np.stack([hv_targets(_relabel(lab)) for lab in labels])
    types = np.full((len(crops), 15, *labels.shape[1:]), 0.2 / 14, np.float32)
    cls = np.where(labels > 0, _planted_class(labels), 0)
    np.put_along_axis(types, cls[:, None], 0.8, axis=1)
    return nuclei, hv, types


def _relabel(labels: np.ndarray) -> np.ndarray:
    values, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(labels.shape).astype(np.int32)
    return out if values[0] == 0 else out + 1


def _disc_tile(centres, radius, shape) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = k
    return labels


def test_cells_on_window_borders_are_neither_cut_nor_doubled():
    shape = (200, 230)
    rows, cols = axis_windows(shape[0], 56, 16), axis_windows(shape[1], 56, 16)
    edges_r = sorted({s for s, _, _ in rows[1:]} | {s + 56 for s, _, _ in rows[:-1]})
    cuts_r = [b for _, _, b in rows[:-1]]
    edges_c = sorted({s for s, _, _ in cols[1:]} | {s + 56 for s, _, _ in cols[:-1]})
    cuts_c = [b for _, _, b in cols[:-1]]
    centres = [(r, c) for r in cuts_r for c in cuts_c]  # on core corners: 4 windows meet
    centres += [(r, 28) for r in edges_r + cuts_r] + [(100, c) for c in edges_c + cuts_c]
    kept: list[tuple[int, int]] = []
    for r, c in centres:  # 6.5 px discs at least 2 px apart
        if all(np.hypot(r - a, c - b) > 15 for a, b in kept):
            kept.append((r, c))
    centres = kept
    planted = _disc_tile(centres, 6.5, shape)
    n_planted = int(planted.max())
    assert n_planted >= 30

    ((index, maps),) = predict_tile_maps(
        [_encode(planted)],
        _fake_predictor,
        window_px=56,
        overlap_px=16,
        batch_size=4,
        num_classes=15,
    )
    assert index == 0
    labels, class_ids, probability = cells_from_maps(
        maps, np.arange(15), hover_params_for_mpp(0.25)
    )
    assert labels.max() == n_planted  # nothing doubled, nothing split
    for k in range(1, n_planted + 1):
        found = np.unique(labels[planted == k])
        assert len(found) == 1 and found[0] > 0  # one instance covers the planted cell
        inst = labels == found[0]
        iou = (inst & (planted == k)).sum() / (inst | (planted == k)).sum()
        assert iou > 0.9
        assert class_ids[found[0]] == _planted_class(np.array(k))
        assert probability[found[0]] == pytest.approx(0.8)

    # Counting window by window instead would see cells in overlaps twice and cut others.
    windows = plan_windows(*shape, 56, 16)
    assert len(windows) == len(rows) * len(cols) == 30
    per_window = 0
    for window in windows:
        crop = planted[window.top : window.top + 56, window.left : window.left + 56]
        per_window += len(np.unique(crop)) - 1
    assert per_window > 1.5 * n_planted


def test_hover_recovers_planted_round_touching_nuclei():
    rng = np.random.default_rng(0)
    centres, radii = [], []
    for cy in range(20, 210, 38):
        for cx in range(18, 200, 46):
            r = float(rng.uniform(7, 10))
            centres += [(cy, cx), (cy + rng.uniform(-2, 2), cx + 2 * r - 1.5)]  # touching
            radii += [r, r]
    planted = np.zeros((224, 224), np.int32)
    yy, xx = np.mgrid[:224, :224]
    for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True), start=1):
        planted[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (planted == 0)] = k
    n = int(planted.max())
    found = hover_instances(
        (planted > 0).astype(np.float32), hv_targets(planted), hover_params_for_mpp(0.25)
    )
    assert found.max() == n
    index = np.arange(1, n + 1)
    truth = np.array(ndi.center_of_mass(np.ones_like(planted), planted, index))
    got = np.array(ndi.center_of_mass(np.ones_like(found), found, index))
    distance = np.linalg.norm(truth[:, None] - got[None], axis=2)
    r, c = linear_sum_assignment(distance)
    assert distance[r, c].max() < 1.0


def test_vote_drops_background_only_cells_and_averages_probability():
    labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2]], np.int32)
    types = np.zeros((3, 2, 4), np.float32)
    types[:, :, 0] = np.array([0.2, 0.4, 0.4])[:, None]  # tie of classes 1 and 2: 1 wins
    types[:, :, 1:] = np.array([0.6, 0.3, 0.1])[:, None, None]  # background wins
    winner, probability = vote_classes(labels, types)
    # label 1: half its pixels vote class 1, half background -> class 1 (background skipped);
    # label 2 votes only background -> 0 (removed by cells_from_maps)
    assert winner.tolist() == [0, 1, 0]
    assert probability[1] == pytest.approx((0.4 + 0.3) / 2)


def test_hover_settings_and_sobel_kernels():
    p25, p50, p499 = (hover_params_for_mpp(m) for m in (0.25, 0.5, 0.499))
    assert (p25.min_size_px, p25.sobel_ksize) == (10, 21)
    assert (p50.min_size_px, p50.sobel_ksize) == (5, 11) == (p499.min_size_px, p499.sobel_ksize)
    assert hover_params_for_mpp(1.0).sobel_ksize == 5
    smooth, derivative = sobel_kernels(3)
    assert smooth.tolist() == [1, 2, 1] and derivative.tolist() == [-1, 0, 1]
    smooth, derivative = sobel_kernels(5)
    assert smooth.tolist() == [1, 4, 6, 4, 1] and derivative.tolist() == [-1, -2, 0, 2, 1]
