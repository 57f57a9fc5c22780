"""Cost of one SoPo step (K online samples of the policy + the reward + the policy's and the reference's
denoising passes + the update) against the same number of plain sampling steps, measured in one run.

The online sampling is the cost: a step draws ``batch x K`` motions with ``ddim`` DDIM steps and
classifier-free guidance (two network passes per DDIM step), then one forward/backward of the
policy and one forward of the reference on the pair. The baseline is plain sampling of the same
``batch x K`` motions with the same DDIM steps (humandiff.prior.mdm.generate, the one sampler);
``overhead`` is SoPo's step over that. The default preset's prior (latent 256, 4 layers, 4 frames
per token, 32 word tokens, 3 clause slots) and reward model architecture with random weights (the
speed does not depend on them); fixed lengths of 120 frames. The fp32 matmul peak is measured in
the same run, before and after (a busy shared machine shows as a lower peak).

    PYTHONPATH=lib python benchmarks/bench_sopo.py [--batch 16] [--K 4] [--ddim 10] [--steps 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_mdm import matmul_peak  # noqa: E402

from humandiff.evaluators.tmr import RewardConfig, RewardModel  # noqa: E402
from humandiff.io import save_json  # noqa: E402
from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel, generate  # noqa: E402
from humandiff.sopo.algorithm import RewardScorer, ddim_sampler, sopo_step  # noqa: E402
from humandiff.sopo.options import SoPoOptions  # noqa: E402

PRIOR = MDMConfig(latent_dim=256, num_layers=4, num_heads=4, ff_dim=512, dropout=0.0, frames_per_token=4,
                  conditioning="adaln", clause_slots=3, word_tokens=32, clip_progress=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--ddim", type=int, default=10)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--out", default="reports/bench/sopo.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    policy, reference = MotionDiffusionModel(PRIOR), MotionDiffusionModel(PRIOR)
    reference.load_state_dict(policy.state_dict())
    reference.eval().requires_grad_(False)
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    reward = RewardScorer(RewardModel(RewardConfig(latent_dim=128, layers=3, heads=4, ff_dim=256, dropout=0.0, patch=4),
                                      mean, std), mean, std)
    schedule = PRIOR.noise_schedule()
    options = SoPoOptions(K=args.K, batch_size=args.batch, ddim_steps=args.ddim, warmup_steps=0, lr=1e-5)
    g = torch.Generator().manual_seed(0)
    condition_dim = PRIOR.text_dim * (1 + PRIOR.clause_slots + PRIOR.word_tokens)
    batch = {"motion": torch.randn(args.batch, args.frames, 263, generator=g),
             "mask": torch.ones(args.batch, args.frames, dtype=torch.bool),
             "text_emb": torch.randn(args.batch, condition_dim, generator=g)}
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    sampler = ddim_sampler(schedule, args.ddim, options.sample_guidance)
    report: dict = {"batch": args.batch, "K": args.K, "ddim_steps": args.ddim, "frames": args.frames, "runs": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak_before = matmul_peak()
        started = time.perf_counter()
        for step in range(args.steps):
            sopo_step(policy, reference, batch, options=options, threshold=0.5, schedule=schedule, sampler=sampler,
                      reward=reward, optimizer=optimizer, generator=g, step=step, prediction="x0")
        step_seconds = (time.perf_counter() - started) / args.steps
        started = time.perf_counter()
        for step in range(args.steps):
            with torch.no_grad():
                generate(policy.eval(), schedule, batch["text_emb"].repeat_interleave(args.K, 0),
                         [args.frames] * (args.batch * args.K), num_steps=args.ddim, guidance_scale=options.sample_guidance,
                         seed=step, batch_size=64)
        policy.train()
        sample_seconds = (time.perf_counter() - started) / args.steps
        peak_after = matmul_peak()
        report["runs"][str(threads)] = {
            "sopo_step_seconds": round(step_seconds, 3), "plain_sampling_seconds": round(sample_seconds, 3),
            "overhead": round(step_seconds / sample_seconds, 3),
            "fp32_matmul_peak_gflops": round((peak_before + peak_after) / 2, 1)}
        r = report["runs"][str(threads)]
        print(f"{threads} thread(s): SoPo step {r['sopo_step_seconds']} s, plain sampling of the same "
              f"{args.batch * args.K} motions x {args.ddim} DDIM steps {r['plain_sampling_seconds']} s "
              f"(x{r['overhead']}); matmul peak {r['fp32_matmul_peak_gflops']} GFLOP/s", flush=True)
    if args.out:
        save_json(args.out, report)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
