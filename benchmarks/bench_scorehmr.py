"""Throughput of ScoreHMR's refinement (frames/s) on the CPU, batched over a whole set, beside the
paper's 35K 3DPW frames in 14 minutes on one GPU (about 42 frames/s).

The fit setting's loop (humandiff.scorehmr.refine: DDIM inversion to tau = 50 and guided DDIM back in
steps of 2, reprojection guidance through the body model, Adam on the camera) on ``--frames``
synthetic frames (random poses near rest, random keypoints and confidences), with the default
preset's denoiser (hidden 256, feature 160; random weights: the speed does not depend on them).
Early stopping is off, so every frame runs ``--iterations`` outer iterations; frames/s is given
for those and extrapolated to the paper's worst case of 10. The fp32 matmul peak is measured in
the same run, right before and after (a busy shared machine shows as a lower peak).

    PYTHONPATH=lib python benchmarks/bench_scorehmr.py [--frames 1000] [--iterations 2] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_mdm import matmul_peak  # noqa: E402

from humandiff.body import DEFAULT_BODY_MODEL, load_body_model  # noqa: E402
from humandiff.io import save_json  # noqa: E402
from humandiff.scorehmr.losses import Keypoints, Reprojection, combine  # noqa: E402
from humandiff.scorehmr.model import DenoiserConfig, PoseDenoiser, axis_angle_to_pose  # noqa: E402
from humandiff.scorehmr.refine import ScoreHMROptions, refine  # noqa: E402

PAPER_FPS = 35000 / (14 * 60)


def workload(frames: int, feature_dim: int, seed: int = 0):
    """Synthetic inputs of the fit setting: pose (N, 144), camera (N, 3), features (N, d), keypoints."""
    generator = torch.Generator().manual_seed(seed)
    orient = torch.tensor([torch.pi, 0.0, 0.0]).expand(frames, 3) + 0.1 * torch.randn(frames, 3, generator=generator)
    pose = axis_angle_to_pose(orient.contiguous(), 0.2 * torch.randn(frames, 69, generator=generator))
    keypoints = Keypoints(64 + 20 * torch.randn(frames, 24, 2, generator=generator), torch.rand(frames, 24, generator=generator),
                          torch.tensor([200.0, 200.0, 64.0, 64.0]).expand(frames, 4).contiguous(), 128.0)
    camera = torch.tensor([0.0, 0.0, 3.0]).expand(frames, 3).contiguous()
    return pose, camera, torch.randn(frames, feature_dim, generator=generator), keypoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--out", default="reports/bench/scorehmr.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    body_model = load_body_model(DEFAULT_BODY_MODEL)
    model = PoseDenoiser(DenoiserConfig(feature_dim=160, hidden_dim=args.hidden)).eval()
    pose, camera, feats, keypoints = workload(args.frames, 160)
    guidance = combine(repr=Reprojection(body_model, torch.zeros(1, 10), keypoints))
    options = ScoreHMROptions(max_iterations=args.iterations, stop_tolerance=0.0)
    report: dict = {"frames": args.frames, "iterations": args.iterations, "tau": options.tau, "ddim_step": options.ddim_step,
                    "hidden_dim": args.hidden, "paper_frames_per_s_gpu": round(PAPER_FPS, 1), "runs": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak_before = matmul_peak()
        started = time.perf_counter()
        result = refine(pose, model, guidance, options, schedule=model.config.noise_schedule(), features=feats, camera=camera)
        seconds = time.perf_counter() - started
        peak_after = matmul_peak()
        per_iteration = float(result.seconds.mean())
        report["runs"][str(threads)] = {
            "seconds": round(seconds, 2), "seconds_per_iteration": round(per_iteration, 3),
            "frames_per_s": round(args.frames / seconds, 1),
            "frames_per_s_at_10_iterations": round(args.frames / (10 * per_iteration), 1),
            "fp32_matmul_peak_gflops": round((peak_before + peak_after) / 2, 1)}
        r = report["runs"][str(threads)]
        print(f"{threads} thread(s): {r['frames_per_s']} frames/s at {args.iterations} iterations, "
              f"{r['frames_per_s_at_10_iterations']} at 10 (paper, GPU: {PAPER_FPS:.0f}); "
              f"matmul peak {r['fp32_matmul_peak_gflops']} GFLOP/s", flush=True)
    if args.out:
        save_json(args.out, report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
