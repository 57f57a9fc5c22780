"""Where a stage runs: ``device: auto | cpu | cuda`` in its params section.

``auto`` picks CUDA when torch sees a GPU and the CPU otherwise. On the CPU a run is bit-for-bit
deterministic (same params and seed, same artifacts); on a GPU results agree to float tolerance,
not bit for bit (cuBLAS and cuDNN choose kernels at run time), and a stage records nothing about
the device in its artifacts, so the same params give the same DVC stage either way.
"""

from __future__ import annotations

import torch

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
