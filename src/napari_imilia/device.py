"""Choosing where models run: CUDA with bf16 autocast when present, the CPU otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from napari_imilia.errors import ImiliaError

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:N]`` into a device; ``cuda`` without a GPU is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ImiliaError(
                f"--device {name} was asked for but no CUDA GPU is available to torch "
                f"(torch {torch.__version__}); use --device cpu or --device auto"
            )
        return torch.device(name)
    raise ImiliaError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """``torch.inference_mode`` plus bf16 autocast on CUDA (full precision on the CPU)."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                yield
        else:
            yield
