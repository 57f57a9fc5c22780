"""Benchmark of DNO on this machine: one optimisation step against the model's own cost, and memory.

Reports, for a batch of ``--batch-size`` motions of ``--frames`` frames through the MDM-style prior
(sizes of params.yaml's ``train_mdm`` section, or the default preset's):

- seconds per DNO step (DDIM-``--ddim-steps`` solve, pose criterion on all joints, backward to the
  noise, normalised gradient, Adam), without and with gradient checkpointing;
- seconds of ``ddim_steps`` forward+backward passes of the model on the same batch measured in the
  same run (backward to the input only, weights frozen, as in DNO), and the ratio step / passes
  (about 1 when the solver and criterion add nothing; checkpointing adds about one forward per call);
- the peak resident memory one DNO step adds, without and with checkpointing, each measured in a
  fresh process (``VmHWM`` of /proc/self/status after the step minus before it; torch's CPU
  allocator is invisible to tracemalloc, and ``ru_maxrss`` is inherited from the parent on Linux).

A step's time is the optimiser's own per-step record (``DNOResult.step_seconds``); every figure is
the minimum over interleaved repeats, the least disturbed estimate on a shared machine.

The cost model for the DNO stages follows: seconds ~= steps x batches x (seconds per step at the
batch's size and length); one step ~= ``ddim_steps`` forward+backward passes.

    python benchmarks/bench_dno.py
    python benchmarks/bench_dno.py --latent-dim 512 --num-layers 8 --ff-dim 1024 --frames 196
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.io import save_json
from humandiff.dno.criteria import motion_criterion, pose_loss
from humandiff.dno.optimize import DNOOptions, ddim_solver, optimize_noise
from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel, count_parameters, guided_denoiser

from prior_params import train_mdm_params


def model_sizes(params_file: str, overrides: dict) -> dict:
    """MDMConfig fields of the params file's train_mdm section (dropout off: DNO runs the prior in eval), with overrides."""
    sizes = MDMConfig.from_section(train_mdm_params(params_file)).to_dict()
    sizes.update({k: v for k, v in overrides.items() if v is not None})
    return dict(sizes, dropout=0.0)


def build(sizes: dict, batch: int, frames: int, seed: int = 0):
    """The prior (eval, frozen), its schedule, a pose criterion on all joints and a start noise."""
    torch.manual_seed(seed)
    config = MDMConfig(**sizes)
    model = MotionDiffusionModel(config).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randn(batch, frames, 22, 3, generator=generator) * 0.1
    observed = torch.ones(batch, frames, 22, 3)
    criterion = motion_criterion(np.zeros(263, np.float32), np.full(263, 0.1, np.float32),
                                 {"pose": (1.0, lambda j: pose_loss(j, targets, observed))})
    z0 = torch.randn(batch, frames, 263, generator=generator)
    return model, config.noise_schedule(), criterion, z0


def peak_rss_mib() -> float:
    """Peak resident memory (MiB) of this process image (VmHWM; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0
    raise OSError("/proc/self/status has no VmHWM (not Linux?)")


def memory_probe(args: tuple) -> float:
    """In a fresh process: MiB of peak RSS one DNO step adds (``checkpoint`` on or off)."""
    sizes, batch, frames, ddim_steps, threads, checkpoint = args
    torch.set_num_threads(threads)
    model, schedule, criterion, z0 = build(sizes, batch, frames)
    solver = ddim_solver(guided_denoiser(model, None), schedule, ddim_steps, checkpoint=checkpoint)
    options = DNOOptions.for_task("refine", steps=1, lambda_decorr=0.0)
    with torch.no_grad():
        solver(z0)  # allocator warm-up at the step's sizes, without a graph
    before = peak_rss_mib()
    optimize_noise(z0, solver, criterion, options)
    return peak_rss_mib() - before


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--latent-dim", type=int, default=None)
@click.option("--num-layers", type=int, default=None)
@click.option("--ff-dim", type=int, default=None)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--frames", type=int, default=120, show_default=True)
@click.option("--ddim-steps", type=int, default=10, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--out", "out_file", default="reports/bench/dno.json", show_default=True, type=click.Path())
def main(params_file, latent_dim, num_layers, ff_dim, batch_size, frames, ddim_steps, threads, repeats, out_file):
    torch.set_num_threads(threads)
    sizes = model_sizes(params_file, {"latent_dim": latent_dim, "num_layers": num_layers, "ff_dim": ff_dim})
    model, schedule, criterion, z0 = build(sizes, batch_size, frames)
    denoiser = guided_denoiser(model, None)
    options = DNOOptions.for_task("refine", steps=2)  # the faster of two steps (allocator warm by the second)
    t = torch.full((batch_size,), 500)

    def passes() -> float:
        start = time.perf_counter()
        for _ in range(ddim_steps):
            x = z0.clone().requires_grad_(True)
            torch.autograd.grad(denoiser(x, t).square().sum(), x)
        return time.perf_counter() - start

    def steps(checkpoint: bool) -> float:
        solver = ddim_solver(denoiser, schedule, ddim_steps, checkpoint=checkpoint)
        return float(optimize_noise(z0, solver, criterion, options).step_seconds.min())

    results = {"model": sizes, "parameters": count_parameters(model), "batch_size": batch_size, "frames": frames,
               "ddim_steps": ddim_steps, "threads": threads}
    context = multiprocessing.get_context("spawn")
    for checkpoint in (False, True):  # first, while this process is small (a spawned child starts from its image)
        with context.Pool(1, maxtasksperchild=1) as pool:
            results[f"peak_mib_{'checkpoint' if checkpoint else 'plain'}"] = pool.apply(
                memory_probe, ((sizes, batch_size, frames, ddim_steps, threads, checkpoint),))
    # interleaved and the minimum kept: on a shared machine the least disturbed run is the best estimate
    passes(), steps(False)  # warm-up
    timings: dict[str, list[float]] = {"passes": [], "plain": [], "checkpoint": []}
    for _ in range(repeats):
        timings["passes"].append(passes())
        timings["plain"].append(steps(False))
        timings["checkpoint"].append(steps(True))
    results["passes_seconds"] = min(timings["passes"])
    results["step_seconds"] = min(timings["plain"])
    results["step_checkpoint_seconds"] = min(timings["checkpoint"])
    results["timings"] = timings
    results["step_over_passes"] = results["step_seconds"] / results["passes_seconds"]
    results["checkpoint_over_passes"] = results["step_checkpoint_seconds"] / results["passes_seconds"]
    save_json(out_file, results)
    click.echo(f"MDM {results['parameters'] / 1e6:.2f} M parameters, batch {batch_size} x {frames} frames, "
               f"DDIM-{ddim_steps}, {threads} threads")
    click.echo(f"  {ddim_steps} forward+backward passes: {results['passes_seconds']:.2f} s")
    click.echo(f"  DNO step: {results['step_seconds']:.2f} s ({results['step_over_passes']:.2f}x the passes); "
               f"checkpointed: {results['step_checkpoint_seconds']:.2f} s ({results['checkpoint_over_passes']:.2f}x)")
    click.echo(f"  peak memory of a step: {results['peak_mib_plain']:.0f} MiB plain, "
               f"{results['peak_mib_checkpoint']:.0f} MiB checkpointed")
    click.echo(f"  written to {out_file}")


if __name__ == "__main__":
    main()
