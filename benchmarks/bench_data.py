"""Throughput of the data foundation on this machine (not a test: numbers vary with the machine).

    python benchmarks/bench_data.py [--clips 200] [--threads 2]

Prints: synth_motion clips/s (generation incl. body model posing), prepare_motion clips/s
(retarget + canonicalise + 263-d features + recover_from_ric round-trip check), and the body
model's posed forward pass in bodies/s at batch 64 and 4096 (fp32 CPU).
"""

from __future__ import annotations

import time

import click
import torch

from humandiff.body.model import DEFAULT_BODY_MODEL, load_body_model, posed_body, rest_joints
from humandiff.motion.hml3d import offsets_from_rest_joints
from humandiff.motion.prepare import features_for_clips
from humandiff.motion.synth import SynthOptions, generate_clips


def _best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option("--clips", default=400, show_default=True)
@click.option("--threads", default=2, show_default=True)
def main(clips: int, threads: int) -> None:
    torch.set_num_threads(threads)
    body = load_body_model()
    for workers in (1, 2):
        start = time.perf_counter()
        generated = generate_clips(str(DEFAULT_BODY_MODEL), SynthOptions(), 0, clips, workers)
        synth_s = time.perf_counter() - start
        frames = sum(c.length for c in generated)
        print(f"synth_motion   ({workers} worker(s)): {clips / synth_s:7.1f} clips/s ({frames / synth_s:7.0f} frames/s)")

    reference = offsets_from_rest_joints(rest_joints(body)[:22])
    ids = [str(i) for i in range(clips)]
    joints = [c.joints[:, :22] for c in generated]
    for workers in (1, 2):
        prep_s = _best_of(lambda: features_for_clips(ids, joints, reference, 0.002, workers), 2)
        print(f"prepare_motion ({workers} worker(s)): {clips / prep_s:7.1f} clips/s ({frames / prep_s:7.0f} frames/s, "
              "features + recover_from_ric check)")

    for batch in (64, 4096):
        pose = torch.randn(batch, 72) * 0.3
        betas = torch.randn(batch, 10)

        def forward() -> None:
            with torch.no_grad():
                posed_body(body, pose[:, :3], pose[:, 3:], betas, torch.zeros(batch, 3))

        seconds = _best_of(forward, 5)
        print(f"body forward   (posed_body, {threads} threads): {batch / seconds:7.0f} bodies/s at batch {batch} "
              f"({seconds * 1e3:.2f} ms/batch)")


if __name__ == "__main__":
    main()
