"""Where a stage runs: ``device: auto | cpu | cuda`` in its params section.

``auto`` picks CUDA when torch sees a GPU and the CPU otherwise. On the CPU a run is bit-for-bit
deterministic (same params and seed, same artifacts); on a GPU results agree to float tolerance,
not bit for bit (cuBLAS and cuDNN choose kernels at run time), and a stage records nothing about
the device in its artifacts, so the same params give the same DVC stage either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from humandiff.io import ArtifactError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, parameter: str = "device") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is a one-line error.

    ``parameter`` names the setting in the error (e.g. ``params.yaml: train_mdm.device``).
    """
    if name not in DEVICE_CHOICES:
        raise ArtifactError(f"{parameter} must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ArtifactError(f"{parameter} is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    return torch.device(name)


def to_device(value: Any, device: torch.device | str) -> Any:
    """``value`` with every tensor in it (also inside dicts, lists and tuples) on ``device``.

    What is already there comes back as the very same object (no copy, no new container), so a
    CPU batch or state dict passes through the CPU untouched; a state dict keeps its ``_metadata``.
    """
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        moved = {k: to_device(v, device) for k, v in value.items()}
        if all(moved[k] is v for k, v in value.items()):
            return value
        out = type(value)(moved)
        if hasattr(value, "_metadata"):
            out._metadata = value._metadata
        return out
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        moved_items = [to_device(v, device) for v in value]
        if all(a is b for a, b in zip(moved_items, value)):
            return value
        return type(value)(moved_items)
    return value


class OnDevice(nn.Module):
    """``module`` computing on ``device`` behind a CPU interface: the tensors of each call move to
    the device and the tensors of its result (also inside dicts, lists and tuples) come back to the
    CPU. Attributes it lacks (e.g. ``config``) are the module's.

    For inference code that builds its inputs and reads its outputs on the CPU (DDIM sampling,
    decoding heatmaps): the network runs on the accelerator, the bookkeeping around it stays as it
    was. Use :func:`on_device`, which leaves a CPU module unwrapped.
    """

    def __init__(self, module: nn.Module, device: torch.device | str) -> None:
        super().__init__()
        self.module = module.to(device)  # in place: the caller's module is on the device too
        self.device = torch.device(device)
        self.train(module.training)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = to_device((args, kwargs), self.device)
        return to_device(self.module(*args, **kwargs), "cpu")

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def on_device(module: nn.Module, device: torch.device | str) -> nn.Module:
    """``module`` itself on the CPU (nothing changes), else :class:`OnDevice` (``module`` moved to ``device``)."""
    return module if torch.device(device).type == "cpu" else OnDevice(module, device)
