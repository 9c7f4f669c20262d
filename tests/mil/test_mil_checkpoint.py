"""Checkpoints: save/load round trips, ensembles, and every refusal with a clear message."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_imilia.errors import CheckpointError
from napari_imilia.files import sha256_file
from napari_imilia.mil import config_path_for, create_model, load_model, save_model

DIM = 16
SMALL = {
    "imilia-chowder": {"n_channels": 2, "n_top": 3, "n_bottom": 3, "mlp_hidden": [8]},
    "abmil": {"embed_dim": 8, "attn_dim": 4},
    "max-mil": {"hidden": [8]},
}


def model_of(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(arch, DIM, **SMALL[arch]).eval()


def features(n: int = 30, seed: int = 0, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_save_then_load_gives_identical_outputs(arch: str, tmp_path: Path) -> None:
    model = model_of(arch)
    path = save_model(
        model,
        tmp_path / "model.safetensors",
        extractor="toy",
        mpp=0.5,
        tile_px=224,
        training={"seed": 0},
        demo=True,
    )
    config = json.loads(config_path_for(path).read_text())
    assert config["architecture"] == arch and config["in_dim"] == DIM
    assert config["extractor"] == "toy" and config["demo"] is True
    assert config["weights_sha256"] == sha256_file(path)
    loaded = load_model(path, device="cpu")
    assert loaded.sha256 == sha256_file(path) and loaded.in_dim == DIM
    assert loaded.expected_extractor == "toy" and loaded.config["tile_px"] == 224
    x = features()
    with torch.no_grad():
        direct = model(torch.from_numpy(x))
    prediction = loaded.predict(x, extractor="toy")
    assert prediction.logit == float(direct.logit)
    assert prediction.probability == pytest.approx(float(torch.sigmoid(direct.logit)))
    np.testing.assert_array_equal(prediction.tile_scores, direct.tile_scores.numpy())
    assert (prediction.attention is None) == (direct.attention is None)


def test_directory_is_an_ensemble_of_mean_logits(tmp_path: Path) -> None:
    members = [model_of("abmil", seed) for seed in range(3)]
    paths = [save_model(m, tmp_path / f"fold_{i}.safetensors") for i, m in enumerate(members)]
    ensemble = load_model(tmp_path, device="cpu")
    assert len(ensemble.members) == 3
    x = features()
    singles = [load_model(p, device="cpu").predict(x) for p in paths]
    prediction = ensemble.predict(x)
    assert prediction.logit == pytest.approx(np.mean([s.logit for s in singles]), abs=1e-6)
    assert prediction.probability == pytest.approx(1 / (1 + np.exp(-prediction.logit)))
    np.testing.assert_allclose(
        prediction.tile_scores, np.mean([s.tile_scores for s in singles], axis=0), atol=1e-6
    )
    assert load_model(paths[::-1], device="cpu").sha256 == ensemble.sha256  # order-free hash
    assert ensemble.sha256 not in {sha256_file(p) for p in paths}


def test_pickle_payload_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, path)
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_model(path, device="cpu")
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"weight": Payload()}))
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_model(legacy, device="cpu")
    assert not marker.exists()


def test_missing_corrupt_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.safetensors")
    path = save_model(model_of("abmil"), tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(path)
    pt = tmp_path / "model.pt"
    torch.save(model_of("imilia-chowder").state_dict(), pt)
    pt.write_bytes(pt.read_bytes()[:-300])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(pt)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="unsupported checkpoint"):
        load_model(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_model(empty)


def test_feature_dimension_and_extractor_mismatch(tmp_path: Path) -> None:
    path = save_model(model_of("max-mil"), tmp_path / "m.safetensors", extractor="h0-mini")
    loaded = load_model(path, device="cpu")
    with pytest.raises(CheckpointError) as info:
        loaded.predict(features(dim=8), extractor="toy-64")
    message = str(info.value)
    assert "expects 16-d features (extractor h0-mini) but got 8-d features" in message
    assert "from extractor toy-64" in message
    with pytest.raises(CheckpointError, match="trained on h0-mini features"):
        loaded.predict(features(), extractor="uni2")
    loaded.predict(features(), extractor="H0_mini")  # same name, other spelling
    bad = features()
    bad[3, 2] = np.nan
    with pytest.raises(CheckpointError, match="NaN"):
        loaded.predict(bad)


def test_unknown_architecture_and_misfitting_weights(tmp_path: Path) -> None:
    path = save_model(model_of("abmil"), tmp_path / "m.safetensors")
    config_path = config_path_for(path)
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "architecture": "transmil"}))
    with pytest.raises(CheckpointError, match="unknown MIL architecture 'transmil'"):
        load_model(path)
    config_path.write_text(json.dumps({**config, "hparams": {"embed_dim": 32, "attn_dim": 4}}))
    with pytest.raises(CheckpointError, match="do not fit architecture abmil"):
        load_model(path)
    config_path.write_text(json.dumps({**config, "weights_sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path)


def test_bare_state_dicts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    odd = tmp_path / "odd.pt"
    torch.save({"encoder.weight": torch.zeros(4, 3), "head.bias": torch.zeros(1)}, odd)
    with pytest.raises(CheckpointError, match=r"fits no known architecture.*encoder\.weight"):
        load_model(odd)
    bare = tmp_path / "abmil.safetensors"
    save_file(model_of("abmil").state_dict(), str(bare))
    with pytest.raises(CheckpointError, match=r"without its \.json config"):
        load_model(bare)
    chowder = model_of("imilia-chowder")
    for name in ("chowder.safetensors", "chowder.pt"):
        if name.endswith(".pt"):
            torch.save(chowder.state_dict(), tmp_path / name)
        else:
            save_file(chowder.state_dict(), str(tmp_path / name))
        loaded = load_model(tmp_path / name, device="cpu")
        assert loaded.config["hparams"]["n_top"] == 3 and loaded.expected_extractor is None
        with torch.no_grad():
            expected = float(chowder(torch.from_numpy(features())).logit)
        assert loaded.predict(features()).logit == pytest.approx(expected, abs=1e-6)
    uneven = tmp_path / "uneven.pt"
    torch.manual_seed(0)
    torch.save(
        create_model("imilia-chowder", DIM, n_channels=2, n_top=3, n_bottom=2).state_dict(), uneven
    )
    with pytest.raises(CheckpointError, match="odd number"):
        load_model(uneven)
    assert load_model(uneven, hparams={"n_top": 3}).config["hparams"]["n_bottom"] == 2


def test_pad_to_tiles_protocol_cuts_and_pads(tmp_path: Path) -> None:
    path = save_model(model_of("imilia-chowder"), tmp_path / "m.safetensors")
    loaded = load_model(path, device="cpu")
    x = features(20)
    padded = np.zeros((64, DIM), np.float32)
    padded[:20] = x
    assert loaded.predict(x, pad_to_tiles=64).logit == pytest.approx(
        loaded.predict(padded).logit, abs=1e-6
    )
    with pytest.warns(UserWarning, match="cut to its first 10"):
        cut = loaded.predict(x, pad_to_tiles=10)
    assert cut.logit == pytest.approx(loaded.predict(x[:10]).logit, abs=1e-6)
    assert np.isnan(cut.tile_scores[10:]).all() and not np.isnan(cut.tile_scores[:10]).any()


def test_saving_the_same_model_twice_gives_identical_bytes(tmp_path):
    import hashlib

    import torch

    from napari_imilia.mil import create_model
    from napari_imilia.mil.checkpoint import save_model

    torch.manual_seed(0)
    model = create_model("abmil", 16)
    digests = set()
    for index in range(3):
        path = save_model(model, tmp_path / f"m{index}.safetensors")
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
    assert len(digests) == 1


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_prediction_stays_float32_under_the_cuda_bf16_autocast(
    arch: str, tmp_path: Path, monkeypatch
) -> None:
    """On CUDA, ``predict`` runs inside the bf16 autocast of ``inference_context``; the MIL head
    must opt out so a slide scores the same as on the CPU (checked here with CPU autocast)."""
    import contextlib

    from napari_imilia.mil import predictor

    @contextlib.contextmanager
    def cpu_bf16_context(device):
        with torch.inference_mode(), torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            yield

    loaded = load_model(save_model(model_of(arch), tmp_path / "m.safetensors"), device="cpu")
    x = features(40, seed=5)
    full = loaded.predict(x)
    monkeypatch.setattr(predictor, "inference_context", cpu_bf16_context)
    under_autocast = loaded.predict(x)
    assert under_autocast.logit == full.logit
    np.testing.assert_array_equal(under_autocast.tile_scores, full.tile_scores)
    with cpu_bf16_context(None):  # without the opt-out the head would run in bf16
        assert float(model_of(arch)(torch.from_numpy(x)).logit) != full.logit
