"""Benchmark of HMDiff's inference on this machine (Table 6 in our terms): images per second.

HMDiff samples N = 25 chains per image for 40 DDIM steps with DAT (a backward pass through the
denoiser on each step DAT is on), the prediction the chains' centre up-sampled; the one-step
regressor (Baseline A) is one forward pass. Each is timed batched (``--batch`` images x N chains at
once) and at batch 1, at the architecture of params.yaml's ``hmdiff`` section, on the embedded body
model's coarse mesh, with random weights and synthetic perception outputs (speed does not depend on
the weights, except through DAT's switch-off: the DAT rows keep DAT on at every step, an upper
bound, beside a no-DAT row, the lower bound). The fp32 matmul peak is measured before and after,
in the same run (a busy shared machine shows in both).

    PYTHONPATH=lib python benchmarks/bench_hmdiff.py                 # 2 threads, params.yaml's sizes
    PYTHONPATH=lib python benchmarks/bench_hmdiff.py --batch 16 --steps 40 --samples 25
"""

from __future__ import annotations

import time

import click
import torch

from humandiff.body import DEFAULT_BODY_MODEL
from humandiff.hmdiff.dat import HMDiffOptions, dat_reverse
from humandiff.hmdiff.data import build_geometry
from humandiff.hmdiff.model import VertexDenoiserConfig, forward_macs
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import HMDiffNet
from humandiff.io import save_json

from bench_mdm import matmul_peak


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--batch", type=int, default=8, show_default=True, help="images per batched call")
@click.option("--samples", type=int, default=25, show_default=True, help="N chains per image")
@click.option("--steps", type=int, default=40, show_default=True, help="DDIM steps")
@click.option("--tokens", type=int, default=64, show_default=True, help="image tokens (the perception network's 8 x 8)")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=1, show_default=True)
@click.option("--out", "out_file", default="reports/bench/hmdiff.json", show_default=True, type=click.Path())
def main(params_file, batch, samples, steps, tokens, threads, repeats, out_file):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    p = read_params(params_file)
    geometry = build_geometry(DEFAULT_BODY_MODEL, p.hierarchy, p.fit_poses, p.seed)
    results = {"threads": threads, "samples": samples, "steps": steps, "batch": batch,
               "coarse_vertices": geometry.coarse_vertices, "architecture": p.architecture}
    models = {}
    for name, mode in (("hmdiff", "diffusion"), ("regressor", "regression")):
        config = VertexDenoiserConfig(num_vertices=geometry.coarse_vertices, image_dim=128, image_tokens=tokens, mode=mode,
                                      **p.architecture)
        models[name] = HMDiffNet(config, geometry).eval().requires_grad_(False)
    results["forward_gmacs_per_mesh"] = forward_macs(models["hmdiff"].config, tokens) / 1e9
    schedule = models["hmdiff"].config.noise_schedule()
    joints = geometry.regressor.shape[0]

    def diffusion(images: int, dat: bool):
        image_tokens = torch.randn(images, tokens, 128)
        poses = 0.3 * torch.randn(images, samples, joints, 3)
        options = HMDiffOptions(num_samples=samples, ddim_steps=steps, dat=dat, activation=False)
        with torch.no_grad():
            dat_reverse(models["hmdiff"], schedule, geometry.regressor, poses, options, generator=torch.Generator().manual_seed(0),
                        model_kwargs={"image_tokens": image_tokens}, upsample=lambda c: models["hmdiff"].upsampler(c)[1])

    def regression(images: int):
        with torch.no_grad():
            net = models["regressor"]
            net.upsampler(net.denoiser.regress(image_tokens=torch.randn(images, tokens, 128)))

    peak_before = matmul_peak()
    for label, fn in (("hmdiff_dat", lambda n: diffusion(n, True)), ("hmdiff_no_dat", lambda n: diffusion(n, False)),
                      ("regressor", regression)):
        for images in (batch, 1):
            seconds = timed(lambda: fn(images), repeats)
            results[f"{label}_batch{images}_images_per_second"] = round(images / seconds, 4)
            click.echo(f"  {label} at batch {images}: {images / seconds:.3f} images/s", err=True)
    peak_after = matmul_peak()
    results["fp32_matmul_peak_gflops"] = round((peak_before + peak_after) / 2, 1)
    results["fp32_matmul_peak_before_after"] = [round(peak_before, 1), round(peak_after, 1)]
    # share of the peak: the network's forward multiply-adds only (2 FLOPs each; DAT's backward passes
    # and the up-sampling uncounted, so the DAT rows' share is a lower bound)
    passes = {"hmdiff_dat": samples * steps, "hmdiff_no_dat": samples * steps, "regressor": 1}
    for label, count in passes.items():
        for images in (batch, 1):
            rate = results[f"{label}_batch{images}_images_per_second"]
            gflops = rate * count * 2 * results["forward_gmacs_per_mesh"]
            results[f"{label}_batch{images}_share_of_peak"] = round(gflops / results["fp32_matmul_peak_gflops"], 4)
    save_json(out_file, results)
    click.echo(f"HMDiff on {geometry.coarse_vertices} coarse vertices, N = {samples}, {steps} DDIM steps, {threads} threads; "
               f"fp32 matmul peak {results['fp32_matmul_peak_gflops']:.0f} GFLOP/s")
    for label in ("hmdiff_dat", "hmdiff_no_dat", "regressor"):
        click.echo(f"  {label}: {results[f'{label}_batch{batch}_images_per_second']:.3f} images/s at batch {batch} "
                   f"({100 * results[f'{label}_batch{batch}_share_of_peak']:.1f}% of the peak), "
                   f"{results[f'{label}_batch1_images_per_second']:.3f} at batch 1")
    click.echo(f"  written to {out_file}")


if __name__ == "__main__":
    main()
