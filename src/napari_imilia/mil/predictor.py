"""Loaded MIL models: one checkpoint or an ensemble, predicting one slide's tile features.

``load_model`` accepts a checkpoint file, a folder of checkpoints (every ``.safetensors``,
``.pt`` and ``.pth`` inside, sorted) or a list; several members form an ensemble whose slide
logit is the mean of the members' logits (probability = sigmoid of that mean) and whose tile
scores and attention are the members' means. Its ``sha256`` is the weight file's, or for an
ensemble the SHA-256 of the members' sorted hex digests joined by newlines.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_imilia.device import inference_context, resolve_device
from napari_imilia.errors import CheckpointError
from napari_imilia.mil.channels import ChannelReadout, combine_members, member_channels
from napari_imilia.mil.checkpoint import WEIGHT_SUFFIXES, CheckpointMember, load_member

_DEFAULT: Any = object()


@dataclass
class SlidePrediction:
    """A slide's prediction: probability = sigmoid(logit), one score per input tile.

    ``channels``: per-channel tile scores, polarity and selected extremes of multi-channel
    models (every member an ``imilia-chowder``), else None (see ``channels.py``).
    """

    probability: float
    logit: float
    tile_scores: np.ndarray
    attention: np.ndarray | None
    member_logits: np.ndarray
    channels: ChannelReadout | None = None


def _expand_sources(source: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [source] if isinstance(source, str | Path) else list(source)
    if not items:
        raise CheckpointError("no checkpoint given")
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            found = sorted(
                p
                for p in item.iterdir()
                if p.is_file()
                and p.suffix.lower() in WEIGHT_SUFFIXES
                and not p.name.startswith(".")
            )
            if not found:
                raise CheckpointError(
                    f"{item} holds no checkpoint ({', '.join(WEIGHT_SUFFIXES)} files)"
                )
            paths.extend(found)
        elif item.exists():
            paths.append(item)
        else:
            raise CheckpointError(f"checkpoint not found: {item}")
    return paths


def load_model(
    source: str | Path | Sequence[str | Path],
    device: str | torch.device = "auto",
    *,
    pad_to_tiles: int | None = None,
    hparams: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Load a checkpoint file, a directory of checkpoints or a list of them (an ensemble).

    ``pad_to_tiles``: reproduce IMILIA's inference protocol (every bag cut to its first
    ``pad_to_tiles`` rows, then padded with zero feature rows up to that count and no mask;
    IMILIA used 10,000); ``None`` (default) scores the exact bag. ``hparams``: architecture
    values a bare state dict cannot tell, e.g. ``{"n_top": 30, "n_bottom": 20}``.
    """
    paths = _expand_sources(source)
    members = [load_member(p, hparams) for p in paths]
    first = members[0]
    for member in members[1:]:
        for key in ("in_dim", "extractor", "mpp", "tile_px"):
            if member.config.get(key) != first.config.get(key):
                raise CheckpointError(
                    f"ensemble members disagree on {key}: {first.path.name} has "
                    f"{first.config.get(key)!r}, {member.path.name} has {member.config.get(key)!r}"
                )
    torch_device = resolve_device(device)
    for member in members:
        member.module.to(torch_device)
    return LoadedModel(members, torch_device, pad_to_tiles=pad_to_tiles, source=source)


def _normalise_extractor(name: str) -> str:
    return name.strip().lower().rsplit("/", 1)[-1].replace("_", "-")


class LoadedModel:
    """One checkpoint or an ensemble, ready to ``predict`` a slide's tile features."""

    def __init__(
        self,
        members: list[CheckpointMember],
        device: torch.device,
        *,
        pad_to_tiles: int | None = None,
        source: Any = None,
    ) -> None:
        if pad_to_tiles is not None and int(pad_to_tiles) < 1:
            raise CheckpointError(f"pad_to_tiles must be >= 1, got {pad_to_tiles}")
        self.members = members
        self.device = device
        self.pad_to_tiles = None if pad_to_tiles is None else int(pad_to_tiles)
        first = members[0]
        self.architecture: str = str(first.config["architecture"])
        self.in_dim: int = int(first.config["in_dim"])
        self.expected_extractor: str | None = first.config.get("extractor")
        if len(members) == 1:
            self.name: str = str(first.config.get("name") or first.path.stem)
            self.sha256: str = first.sha256
            self.config: dict[str, Any] = dict(first.config)
        else:
            folder = Path(source).name if isinstance(source, str | Path) else "list"
            self.name = f"{self.architecture} ensemble of {len(members)} ({folder})"
            digests = sorted(m.sha256 for m in members)
            self.sha256 = hashlib.sha256("\n".join(digests).encode("ascii")).hexdigest()
            self.config = {
                **{k: v for k, v in first.config.items() if k not in ("name", "weights_sha256")},
                "name": self.name,
                "ensemble": [{"path": str(m.path), "sha256": m.sha256} for m in members],
            }

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, {len(self.members)} member(s), {self.device})"

    def check_features(self, features: np.ndarray, extractor: str | None = None) -> np.ndarray:
        """Validate one bag (N x D, finite) against the model; returns it as float32."""
        feats = np.asarray(features)
        if feats.ndim != 2 or feats.shape[0] < 1:
            raise CheckpointError(f"tile features must be N x D with N >= 1, got {feats.shape}")
        source = f"from extractor {extractor}" if extractor else "(extractor not stated)"
        if feats.shape[1] != self.in_dim:
            raise CheckpointError(
                f"model {self.name} expects {self.in_dim}-d features (extractor "
                f"{self.expected_extractor or 'unknown'}) but got {feats.shape[1]}-d features "
                f"{source}; use the extractor the model was trained on"
            )
        if (
            extractor
            and self.expected_extractor
            and _normalise_extractor(extractor) != _normalise_extractor(self.expected_extractor)
        ):
            raise CheckpointError(
                f"model {self.name} was trained on {self.expected_extractor} features but got "
                f"features from extractor {extractor}; re-extract with {self.expected_extractor}"
            )
        feats = feats.astype(np.float32, copy=False)
        if not np.isfinite(feats).all():
            raise CheckpointError("tile features contain NaN or infinite values")
        return feats

    def predict(
        self,
        features: np.ndarray,
        *,
        extractor: str | None = None,
        pad_to_tiles: int | object | None = _DEFAULT,
    ) -> SlidePrediction:
        """Score one slide's tile features (N x D); see ``load_model`` for ``pad_to_tiles``.

        Tile scores (and attention) are the members' mean. Under ``pad_to_tiles``, tiles past
        the first ``pad_to_tiles`` take no part and get NaN.
        """
        feats = self.check_features(features, extractor)
        pad = self.pad_to_tiles if pad_to_tiles is _DEFAULT else pad_to_tiles
        n_tiles = feats.shape[0]
        kept = n_tiles if pad is None else min(n_tiles, int(pad))
        if kept < n_tiles:
            warnings.warn(
                f"bag of {n_tiles} tiles cut to its first {kept} (pad_to_tiles={pad}); the "
                "other tiles take no part and get no score",
                stacklevel=2,
            )
        x = torch.from_numpy(np.ascontiguousarray(feats[:kept]))
        if pad is not None and kept < int(pad):
            x = torch.cat([x, x.new_zeros((int(pad) - kept, x.shape[1]))])
        x = x.to(self.device)
        logits, tiles, attentions, channels = [], [], [], []
        # MIL heads are tiny: keep them in float32 even under the CUDA bf16 autocast of
        # inference_context, so a slide gets the same score on a GPU as on the CPU.
        no_autocast = torch.autocast(device_type=self.device.type, enabled=False)
        with inference_context(self.device), no_autocast:
            for member in self.members:
                out = member.module(x)
                logits.append(float(out.logit.float()))
                tiles.append(out.tile_scores[:kept].float().cpu().numpy())
                if out.attention is not None:
                    attentions.append(out.attention[:kept].float().cpu().numpy())
                channels.append(member_channels(member.module, out, kept))
        logit = float(np.mean(logits))
        if not math.isfinite(logit) or not all(np.isfinite(t).all() for t in tiles + attentions):
            raise CheckpointError(
                f"model {self.name} gave a non-finite slide logit ({logit}) or tile scores on "
                "these features: its weights overflow, the model is degenerate; retrain it"
            )
        tile_scores = _extend(np.mean(tiles, axis=0), n_tiles)
        attention = None
        if len(attentions) == len(self.members):
            attention = _extend(np.mean(attentions, axis=0), n_tiles)
        return SlidePrediction(
            probability=_sigmoid(logit),
            logit=logit,
            tile_scores=tile_scores.astype(np.float32),
            attention=None if attention is None else attention.astype(np.float32),
            member_logits=np.asarray(logits, dtype=np.float64),
            channels=(
                combine_members(channels, n_tiles) if all(c is not None for c in channels) else None
            ),
        )


def _extend(values: np.ndarray, n_tiles: int) -> np.ndarray:
    if values.shape[0] == n_tiles:
        return values
    return np.concatenate([values, np.full(n_tiles - values.shape[0], np.nan, values.dtype)])


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)
