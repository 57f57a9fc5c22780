"""Throughput of the data foundation on this machine (not a test: numbers vary with the machine).

    python benchmarks/bench_data.py [--clips 200] [--threads 2]

Prints: synth_motion clips/s (generation incl. body model posing), prepare_motion clips/s
(retarget + canonicalise + 263-d features + recover_from_ric round-trip check), and the body
model's posed forward pass in bodies/s at batch 64 and 4096 (fp32 CPU).
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from humandiff.body.model import load_body_model, posed_body, rest_joints
from humandiff.motion.hml3d import joints_to_features, offsets_from_rest_joints, recover_from_ric
from humandiff.motion.synth import SynthGenerator, SynthOptions


def _best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option("--clips", default=200, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(clips: int, threads: int) -> None:
    torch.set_num_threads(threads)
    body = load_body_model()
    generator = SynthGenerator(body, SynthOptions())

    start = time.perf_counter()
    generated = [generator.generate(np.random.default_rng([0, i])) for i in range(clips)]
    synth_s = time.perf_counter() - start
    frames = sum(c.length for c in generated)
    print(f"synth_motion:   {clips / synth_s:8.1f} clips/s  ({frames / synth_s:8.0f} frames/s, {clips} clips, {synth_s:.1f} s)")

    reference = offsets_from_rest_joints(rest_joints(body)[:22])

    def prepare() -> None:
        for clip in generated:
            features, canonical = joints_to_features(clip.joints[:, :22], reference)
            with torch.no_grad():
                recover_from_ric(torch.from_numpy(features).double())

    prep_s = _best_of(prepare, 2)
    print(f"prepare_motion: {clips / prep_s:8.1f} clips/s  ({frames / prep_s:8.0f} frames/s)")

    for batch in (64, 4096):
        pose = torch.randn(batch, 72) * 0.3
        betas = torch.randn(batch, 10)

        def forward() -> None:
            with torch.no_grad():
                posed_body(body, pose[:, :3], pose[:, 3:], betas, torch.zeros(batch, 3))

        seconds = _best_of(forward, 5)
        print(f"body forward:   {batch / seconds:8.0f} bodies/s at batch {batch} ({seconds * 1e3:.2f} ms/batch)")


if __name__ == "__main__":
    main()
