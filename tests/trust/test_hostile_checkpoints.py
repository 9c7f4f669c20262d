"""Checkpoint loading that cannot hang or over-allocate (issue 14): self-referencing dicts,
safetensors headers that lie, files far larger than their architecture, configs that ask
for terabytes. Big files are sparse (declared, never written), so the tests stay cheap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_imilia.errors import CheckpointError
from napari_imilia.features.vit import H0_MINI, VisionTransformer, load_vit
from napari_imilia.features.vit.config import scaled_down as scaled_down_vit
from napari_imilia.features.vit.keys import unwrap_state_dict
from napari_imilia.interpret.cells.cellvit import (
    HISTOPLUS_40X,
    load_cellvit,
    save_cellvit,
    scaled_down,
)
from napari_imilia.interpret.cells.cellvit.model import CellViT
from napari_imilia.mil import create_model, load_model, save_model
from napari_imilia.trust.checkpoints import safetensors_header

TINY_VIT = scaled_down_vit(H0_MINI)


def _self_referencing(path: Path) -> Path:
    loop: dict = {"epoch": 3}
    loop["state_dict"] = loop
    torch.save(loop, path)
    return path


def _sparse_safetensors(path: Path, shape: list[int], *, lie_bytes: int | None = None) -> Path:
    """A safetensors file declaring one float32 tensor of ``shape``; its data is a hole
    (sparse file). ``lie_bytes``: declare the shape but store only that many bytes."""
    nbytes = 4 * int(torch.Size(shape).numel())
    stored = nbytes if lie_bytes is None else lie_bytes
    header = {"big": {"dtype": "F32", "shape": shape, "data_offsets": [0, stored]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        handle.truncate(8 + len(text) + stored)
    return path


def test_unwrapping_a_dict_that_contains_itself_stops() -> None:
    loop: dict = {}
    loop["model"] = loop
    with pytest.raises(CheckpointError, match="contains itself"):
        unwrap_state_dict(loop, "w.pt")
    deep: dict = {"w": torch.zeros(1)}
    for _ in range(20):
        deep = {"state_dict": deep}
    with pytest.raises(CheckpointError, match="wrapped more than 8 levels"):
        unwrap_state_dict(deep)


def test_vit_and_cellvit_loaders_refuse_a_self_referencing_checkpoint(tmp_path: Path) -> None:
    path = _self_referencing(tmp_path / "loop.pt")
    with pytest.raises(CheckpointError, match=r"loop\.pt.*contains itself"):
        load_vit(path, TINY_VIT, model_name="tiny")
    with pytest.raises(CheckpointError, match=r"loop\.pt.*contains itself"):
        load_cellvit(path)


def test_safetensors_header_that_lies_about_sizes_is_refused(tmp_path: Path) -> None:
    path = _sparse_safetensors(tmp_path / "lie.safetensors", [1 << 20, 1 << 20], lie_bytes=64)
    with pytest.raises(CheckpointError, match=r"declares shape .* corrupt or lies"):
        safetensors_header(path)
    with pytest.raises(CheckpointError, match="corrupt or lies"):
        load_vit(path, TINY_VIT)
    huge_header = tmp_path / "header.safetensors"
    huge_header.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="header of 1099511627776 bytes does not fit"):
        load_vit(huge_header, TINY_VIT)


def test_a_file_far_larger_than_the_architecture_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _sparse_safetensors(tmp_path / "big.safetensors", [1 << 28])  # 1 GiB, sparse
    with pytest.raises(CheckpointError, match=r"holds 1073\.7 MB of tensors, far more than"):
        load_vit(path, TINY_VIT, model_name="tiny")
    cellvit_config = scaled_down(HISTOPLUS_40X)
    with pytest.raises(CheckpointError, match="far more than"):
        load_cellvit(path, config=cellvit_config)
    monkeypatch.setenv("IMILIA_MAX_CHECKPOINT_MB", "512")
    with pytest.raises(CheckpointError, match=r"unknown size .*IMILIA_MAX_CHECKPOINT_MB"):
        load_cellvit(path)  # no config: the architecture is not known before reading


def test_real_checkpoints_still_load(tmp_path: Path) -> None:
    vit = VisionTransformer(TINY_VIT).init_random(seed=1).eval()
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))
    assert isinstance(load_vit(tmp_path / "vit.safetensors", TINY_VIT), VisionTransformer)
    cellvit = CellViT(scaled_down(HISTOPLUS_40X)).eval()
    path = save_cellvit(cellvit, tmp_path / "cellvit.safetensors")
    assert isinstance(load_cellvit(path), CellViT)


@pytest.fixture
def mil_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("max-mil", 16, hidden=[8])
    return save_model(model, tmp_path / "m.safetensors", extractor="imilia-stain-stats")


def _edit_config(path: Path, **changes) -> None:
    config_path = path.with_suffix(".json")
    config = json.loads(config_path.read_text())
    config.update(changes)
    config_path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"in_dim": 2**40}, r"in_dim must be a feature width 1-65536; got 1099511627776"),
        ({"in_dim": "16"}, r"in_dim must be a feature width"),
        ({"hparams": {"hidden": [2**40]}}, r"hparams\.hidden\[0\] is 1099511627776, over the"),
        ({"hparams": {"hidden": [60000, 60000]}}, r"declares [\d,]+ parameters .* holds only"),
        ({"hparams": {"dropout": float("nan")}}, r"hparams\.dropout is nan"),
        ({"hparams": [1, 2]}, r"hparams must be a JSON object"),
    ],
)
def test_mil_config_is_validated_before_any_allocation(
    mil_checkpoint: Path, changes: dict, message: str
) -> None:
    assert load_model(mil_checkpoint, device="cpu").in_dim == 16
    _edit_config(mil_checkpoint, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_model(mil_checkpoint, device="cpu")


def test_cellvit_config_with_absurd_sizes_is_refused(tmp_path: Path) -> None:
    cellvit = CellViT(scaled_down(HISTOPLUS_40X)).eval()
    path = save_cellvit(cellvit, tmp_path / "cellvit.safetensors")
    config_path = path.with_suffix(".json")
    data = json.loads(config_path.read_text())
    data["config"]["encoder"]["embed_dim"] = 2**40
    config_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"embed_dim is 1099511627776, over the limit"):
        load_cellvit(path)
