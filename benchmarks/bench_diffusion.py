"""Benchmark of the diffusion core on a DNO-shaped workload.

A transformer denoiser over motion frames (MDM-sized with ``--layers 8 --width 512``) runs
DDIM sampling without gradients, then the differentiable DDIM chain forward + backward w.r.t.
``x_T`` (one DNO optimisation step) with and without activation checkpointing. Reports wall time
per call and the bytes autograd keeps for backward (a device-independent memory figure).

    PYTHONPATH=lib python benchmarks/bench_diffusion.py --steps 10 --batch 16
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import Tensor, nn

from humandiff.diffusion import cosine_schedule, ddim_sample


class FrameTransformer(nn.Module):
    """``(B, frames, features)`` -> same, with a learned timestep token (MDM-like, predicts x0)."""

    def __init__(self, features: int, width: int, layers: int, num_timesteps: int) -> None:
        super().__init__()
        self.inp = nn.Linear(features, width)
        self.time = nn.Embedding(num_timesteps, width)
        block = nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers)
        self.out = nn.Linear(width, features)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        tokens = torch.cat([self.time(t)[:, None], self.inp(x)], dim=1)
        return self.out(self.encoder(tokens)[:, 1:])


def timed(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=196)
    parser.add_argument("--features", type=int, default=263)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    schedule = cosine_schedule(1000)
    model = FrameTransformer(args.features, args.width, args.layers, 1000).to(device).eval().requires_grad_(False)
    x_T = torch.randn(args.batch, args.frames, args.features, device=device)
    report: dict[str, float | int | str] = {"device": str(device), **{k: v for k, v in vars(args).items() if k != "device"}}

    report["sample_s"] = timed(lambda: ddim_sample(model, x_T, schedule, num_steps=args.steps), args.repeats, device)
    for checkpoint in (False, True):
        saved, seen = [0], set()

        def pack(tensor: Tensor) -> Tensor:
            if tensor.data_ptr() not in seen:  # parameters are saved by every step, but stored once
                seen.add(tensor.data_ptr())
                saved[0] += tensor.numel() * tensor.element_size()
            return tensor

        def step() -> None:
            x = x_T.clone().requires_grad_(True)
            y = ddim_sample(model, x, schedule, num_steps=args.steps, differentiable=True, checkpoint=checkpoint)
            y.square().mean().backward()

        report[f"grad_s_ckpt{int(checkpoint)}"] = timed(step, args.repeats, device)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            x = x_T.clone().requires_grad_(True)
            ddim_sample(model, x, schedule, num_steps=args.steps, differentiable=True, checkpoint=checkpoint)
        report[f"saved_mib_ckpt{int(checkpoint)}"] = round(saved[0] / 2**20, 2)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            step()
            report[f"peak_mib_ckpt{int(checkpoint)}"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
