"""MIL architectures: registry, shapes and padding masks, Chowder semantics, the MIL assumption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_imilia.errors import CheckpointError
from napari_imilia.mil import MILOutput, create_model, list_models, model_class
from napari_imilia.mil.chowder import select_extremes

DIM = 12
SMALL = {
    "imilia-chowder": {"n_channels": 3, "n_top": 4, "n_bottom": 4, "mlp_hidden": [16, 8]},
    "abmil": {"embed_dim": 16, "attn_dim": 8},
    "max-mil": {"hidden": [16]},
}


def small_model(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, DIM, **SMALL[arch]).eval()


def bag(n: int, seed: int = 0, dim: int = DIM) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, dim)).astype("f4"))


def test_registry_lists_every_architecture_with_a_description() -> None:
    models = dict(list_models())
    assert {"imilia-chowder", "abmil", "max-mil"} <= set(models)
    assert all(desc and "\n" not in desc for desc in models.values())
    with pytest.raises(CheckpointError, match=r"unknown MIL architecture 'nope'.*abmil"):
        create_model("nope", 8)
    with pytest.raises(CheckpointError, match="bad hyper-parameters") as bad:
        create_model("abmil", 8, no_such_option=3)
    # the message names what was given and what the architecture accepts
    assert "(no_such_option=3)" in str(bad.value)
    assert "abmil accepts: embed_dim, attn_dim, dropout" in str(bad.value)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_forward_shapes_and_padding_mask(arch: str) -> None:
    model = small_model(arch)
    bags = [bag(n, seed=n) for n in (3, 9, 20)]
    with torch.no_grad():
        singles = [model(b) for b in bags]
        x = torch.zeros((3, 20, DIM))
        mask = torch.ones((3, 20), dtype=torch.bool)
        for i, b in enumerate(bags):
            x[i, : len(b)] = b
            mask[i, : len(b)] = False
        batched = model(x, mask)
    assert isinstance(singles[0], MILOutput)
    assert singles[0].logit.shape == () and singles[0].tile_scores.shape == (3,)
    assert batched.logit.shape == (3,) and batched.tile_scores.shape == (3, 20)
    for i, (b, single) in enumerate(zip(bags, singles, strict=True)):
        n = len(b)
        torch.testing.assert_close(batched.logit[i], single.logit, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            batched.tile_scores[i, :n], single.tile_scores, atol=1e-5, rtol=0
        )
        assert torch.isnan(batched.tile_scores[i, n:]).all()
        if single.attention is not None:
            assert float(single.attention.sum()) == pytest.approx(1.0, abs=1e-5)
            assert float(batched.attention[i, n:].abs().sum()) == 0.0


def test_chowder_extreme_layer_order_and_short_bags() -> None:
    scores = torch.tensor([[[1.0, -1.0], [5.0, 0.5], [3.0, 2.0]]])  # (1, 3 tiles, 2 channels)
    extremes = select_extremes(scores, None, n_top=2, n_bottom=2)
    # per channel: top sorted descending, then bottom sorted ascending
    assert extremes[0, :, 0].tolist() == [5.0, 3.0, 1.0, 3.0]
    assert extremes[0, :, 1].tolist() == [2.0, 0.5, -1.0, 0.5]
    # fewer tiles than n_top: the missing extreme slots are 0 (IMILIA's masked-slot value)
    short = select_extremes(scores[:, :1], None, n_top=3, n_bottom=2)
    assert short[0, :, 0].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    mask = torch.tensor([[False, True, False]])
    masked = select_extremes(scores, mask, n_top=2, n_bottom=2)
    assert masked[0, :, 0].tolist() == [3.0, 1.0, 1.0, 3.0]


def test_chowder_flattening_is_tile_major_as_in_imilia() -> None:
    model = small_model("imilia-chowder")
    x = bag(30)
    with torch.no_grad():
        channel = model.score_model(x)[None]  # (1, N, C)
        top = channel.topk(4, dim=1).values
        bottom = channel.topk(4, dim=1, largest=False).values
        extremes = torch.cat([top, bottom], dim=1)  # (1, K, C)
        flat = torch.stack([extremes[0, k, c] for k in range(8) for c in range(3)])[None]
        expected = model.mlp(flat)[0, 0]
        assert float(model(x).logit) == pytest.approx(float(expected), abs=1e-6)


def test_chowder_polarity_is_the_sign_of_the_channel_gradient() -> None:
    model = small_model("imilia-chowder", seed=3)
    x = bag(25, seed=4)
    with torch.no_grad():
        out = model(x)
    channel = model.score_model(x)[None]
    extremes = select_extremes(channel, None, 4, 4).reshape(1, -1).detach().requires_grad_(True)
    model.mlp(extremes)[0, 0].backward()
    autograd = extremes.grad.reshape(1, 8, 3).sum(dim=1)[0]
    assert torch.equal(out.channel_polarity, torch.sign(autograd))
    expected = (out.channel_scores * out.channel_polarity).mean(dim=1)
    torch.testing.assert_close(out.tile_scores, expected)


def test_abmil_slide_logit_is_attention_weighted_mean_of_tile_scores() -> None:
    model = small_model("abmil")
    with torch.no_grad():
        out = model(bag(40))
    weighted = float((out.attention * out.tile_scores).sum())
    assert float(out.logit) == pytest.approx(weighted, abs=1e-5)


def test_presence_model_never_lowers_the_slide_logit_when_normal_tiles_are_added() -> None:
    """Standard MIL assumption: max-mil's logit cannot drop, whatever tiles are appended."""
    assert model_class("max-mil").respects_presence_assumption
    model = small_model("max-mil")
    x = bag(20)
    with torch.no_grad():
        before = float(model(x).logit)
        candidates = bag(5000, seed=1)
        low = candidates[model(candidates).tile_scores < before]  # "normal" tiles
        assert len(low) > 1000
        for extra in (low[:10], low, candidates):
            after = float(model(torch.cat([x, extra])).logit)
            assert after >= before - 1e-6


def test_abmil_is_diluted_by_normal_tiles() -> None:
    """ABMIL does not respect the presence assumption: low-score tiles pull its logit down."""
    assert not model_class("abmil").respects_presence_assumption
    assert not model_class("imilia-chowder").respects_presence_assumption
    model = small_model("abmil")
    x = bag(20)
    with torch.no_grad():
        before = float(model(x).logit)
        candidates = bag(5000, seed=1)
        low = candidates[model(candidates).tile_scores < before - 0.05]
        assert len(low) >= 200
        after = float(model(torch.cat([x, low[:200]])).logit)
    assert after < before
