"""Benchmark of the MDM-style prior on this machine: a training step and DDIM-10 sampling.

Reports seconds per training step (forward, backward with the preset's geometric losses on
recovered joints, AdamW, EMA) at the train_mdm preset's size, clause slots and batch, DDIM-10
sampling throughput with classifier-free guidance (samples/s), and the
achieved GFLOP/s of both as a share of the fp32 matmul peak measured in the same run (a square
matmul loop timed right before and after each measurement, so a busy shared machine is seen in
both). Matmul FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``. Every
measurement runs in fp32 and with bf16 autocast (fp32 master weights).

    python benchmarks/bench_mdm.py                      # sizes of params.yaml's train_mdm section
    python benchmarks/bench_mdm.py --latent-dim 512 --num-layers 8 --ff-dim 1024 --batch-size 64
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from functools import partial
from pathlib import Path

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from humandiff.io import save_json
from humandiff.train.ema import ema_copy, ema_update
from humandiff.prior.mdm import (
    GeometryWeights,
    MDMConfig,
    MotionDiffusionModel,
    count_parameters,
    generate,
    training_loss,
)

from prior_params import train_mdm_params


def matmul_peak(size: int = 1024, seconds: float = 0.5) -> float:
    """fp32 GFLOP/s of a square matmul loop (best of a few timed runs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def counted_flops(fn) -> int:
    """FLOPs of the matmul-like ops (mm, addmm, bmm, attention) ``fn()`` runs."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--latent-dim", type=int, default=None)
@click.option("--num-layers", type=int, default=None)
@click.option("--ff-dim", type=int, default=None)
@click.option("--frames-per-token", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--frames", type=int, default=104, show_default=True,
              help="Frames per training clip (the default data's mean length, ~100, plus bucketed padding).")
@click.option("--sample-batch", type=int, default=32, show_default=True)
@click.option("--sample-frames", type=int, default=100, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--out", "out_file", default="reports/bench/mdm.json", show_default=True, type=click.Path())
def main(params_file, latent_dim, num_layers, ff_dim, frames_per_token, batch_size, frames, sample_batch, sample_frames, threads, repeats, out_file):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sizes = train_mdm_params(params_file)
    for key, value in (("latent_dim", latent_dim), ("num_layers", num_layers), ("ff_dim", ff_dim),
                         ("frames_per_token", frames_per_token), ("batch_size", batch_size)):
        if value is not None:
            sizes[key] = value
    config = MDMConfig.from_section(sizes)
    frames = min(frames, sizes["max_frames"])
    schedule = config.noise_schedule()
    model = MotionDiffusionModel(config)
    ema = ema_copy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    B = sizes["batch_size"]
    # every word slot filled: an upper bound on the words' cost (captions use 9-28 of 32, median 18)
    batch = {"motion": torch.randn(B, frames, 263), "mask": torch.ones(B, frames, dtype=torch.bool),
             "text_emb": torch.nn.functional.normalize(torch.randn(B, config.condition_dim), dim=1)}
    # features are standard normal here, so an identity normalisation gives plausible joint ranges
    geometry = GeometryWeights(torch.zeros(263), torch.ones(263), sizes["lambda_joints"], sizes["lambda_velocity"],
                               sizes["lambda_foot"], signal_weighted=sizes["geometry_signal_weighted"])
    loss_fn = partial(training_loss, schedule=schedule, cond_drop=config.cond_drop, geometry=geometry,
                      high_noise_share=sizes["high_noise_share"], high_noise_fraction=sizes["high_noise_fraction"],
                      prediction=config.prediction)
    generator = torch.Generator().manual_seed(0)
    results = {"config": config.to_dict(), "parameters": count_parameters(model), "batch_size": B, "frames": frames,
               "threads": threads, "sample_batch": sample_batch, "sample_frames": sample_frames}

    def forward_backward(bf16: bool) -> None:
        with autocast(bf16):
            loss, _ = loss_fn(model, batch, generator)
        loss.backward()

    def train_step(bf16: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        forward_backward(bf16)
        if sizes["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), sizes["grad_clip"])
        optimizer.step()
        ema_update(ema, model, 0.999)

    text = torch.nn.functional.normalize(torch.randn(sample_batch, config.condition_dim), dim=1)

    def sample(bf16: bool) -> None:
        with autocast(bf16):
            generate(model, schedule, text, [sample_frames] * sample_batch, num_steps=10, guidance_scale=2.5,
                     batch_size=sample_batch)

    train_flops = counted_flops(lambda: forward_backward(False))
    optimizer.zero_grad(set_to_none=True)
    # the eval-mode fast path fuses each encoder layer into one op the counter cannot see: count without it
    torch.backends.mha.set_fastpath_enabled(False)
    sample_flops = counted_flops(lambda: sample(False))
    torch.backends.mha.set_fastpath_enabled(True)
    results["train_step_gflop"] = train_flops / 1e9
    results["ddim10_gflop_per_batch"] = sample_flops / 1e9
    for bf16 in (False, True):
        tag = "bf16" if bf16 else "fp32"
        peak_before = matmul_peak()
        step_seconds = timed(lambda: train_step(bf16), repeats)
        peak_mid = matmul_peak()
        sample_seconds = timed(lambda: sample(bf16), max(1, repeats // 2))
        peak_after = matmul_peak()
        train_peak, sample_peak = (peak_before + peak_mid) / 2, (peak_mid + peak_after) / 2
        results[tag] = {
            "train_step_seconds": step_seconds,
            "train_gflops": train_flops / step_seconds / 1e9,
            "train_share_of_fp32_peak": train_flops / step_seconds / 1e9 / train_peak,
            "ddim10_samples_per_second": sample_batch / sample_seconds,
            "ddim10_gflops": sample_flops / sample_seconds / 1e9,
            "ddim10_share_of_fp32_peak": sample_flops / sample_seconds / 1e9 / sample_peak,
            "fp32_matmul_peak_gflops": (peak_before + peak_mid + peak_after) / 3,
        }
    save_json(out_file, results)
    click.echo(f"MDM {results['parameters'] / 1e6:.2f} M parameters, batch {B} x {frames} frames, {threads} threads")
    click.echo(f"  training step: {results['train_step_gflop']:.1f} GFLOP; DDIM-10 + CFG: {results['ddim10_gflop_per_batch']:.1f} GFLOP per {sample_batch} samples")
    for tag in ("fp32", "bf16"):
        r = results[tag]
        click.echo(f"  {tag}: step {r['train_step_seconds'] * 1000:.0f} ms ({r['train_gflops']:.0f} GFLOP/s, "
                   f"{100 * r['train_share_of_fp32_peak']:.0f}% of peak); DDIM-10 {r['ddim10_samples_per_second']:.2f} samples/s "
                   f"({r['ddim10_gflops']:.0f} GFLOP/s, {100 * r['ddim10_share_of_fp32_peak']:.0f}% of peak); "
                   f"fp32 matmul peak {r['fp32_matmul_peak_gflops']:.0f} GFLOP/s")
    click.echo(f"  written to {out_file}")


if __name__ == "__main__":
    main()
