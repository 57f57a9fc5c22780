"""The SoPo stages' logic: params, inputs, the tau calibration run, the offline pairs and the fine-tuning loop.

Params (``params.yaml``, section ``sopo``):

- ``seed``, ``threads``, ``device``; ``options``: :class:`~humandiff.sopo.options.SoPoOptions`
  overrides shared by every run; ``runs``: run name -> its own overrides (``variant``, ``tau``,
  ``K``, ...). A stage reads only ``sopo.options`` and ``sopo.runs.<name>`` of the runs, so
  editing one run's block reruns only that run (and its evaluation).
- ``calibration``: ``captions`` training captions, ``K`` samples each, ``anchor_tau``,
  ``anchor_quantile``, ``span`` (:class:`~humandiff.sopo.calibration.TauCalibration`).
- ``offline_pairs``: ``captions`` and ``K`` of the MoDiPO-like pairs.
- ``checkpoint_every``: optimiser steps between resume checkpoints.

The online samples use the run's ``ddim_steps`` and ``sample_guidance``; the evaluation uses
``sample_mdm``'s settings, the MDM row's (:mod:`humandiff.sopo.evaluate`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from humandiff.evaluators.tmr import load_reward_model
from humandiff.io import ArtifactError, file_digest, load_torch, save_torch
from humandiff.io.stage import positive, stage_params
from humandiff.motion.dataset import MotionTextDataset, collate_motion, load_embeddings, load_mean_std, load_motion_split
from humandiff.prior.mdm import load_mdm
from humandiff.text.clauses import caption_conditions
from humandiff.sopo.algorithm import OfflinePairs, RewardScorer, SoPoRecord, ddim_sampler, score_group, sopo_step
from humandiff.sopo.calibration import PAPER_TAUS, TauCalibration, calibrate_taus
from humandiff.sopo.options import REWARD_RANGE, VARIANTS, SoPoOptions

SECTION = "sopo"
#: The section's keys and their types.
SOPO_PARAMS = {"seed": int, "threads": int, "device": str, "checkpoint_every": int, "options": dict, "runs": dict,
               "calibration": dict, "offline_pairs": dict}
#: The curves' columns (DVC plots): the loss, and the reward model's scores (a training signal only).
LOSS_COLUMNS = ("step", "loss", "dpo_share", "margin", "lr")
REWARD_COLUMNS = ("step", "reward_preferred", "reward_samples", "reward_unpreferred")


#: The inputs every SoPo stage that samples or fine-tunes reads: (flag, parameter name, default).
INPUT_OPTIONS = (("--model", "model_file", "data/mdm/model.pt"), ("--config", "config_file", "data/mdm/config.json"),
                 ("--reward", "reward_file", "data/models/reward.pt"), ("--hml-dir", "hml_dir", "data/motion/hml"),
                 ("--embeddings", "embeddings_file", "data/motion/text/embeddings.parquet"))


def input_options(command: Callable) -> Callable:
    """A click command's :data:`INPUT_OPTIONS` (the prior, the reward model, the prepared motions and captions)."""
    import click

    for flag, name, default in reversed(INPUT_OPTIONS):
        command = click.option(flag, name, default=default, show_default=True, type=click.Path())(command)
    return command


def sopo_params(params_file: str | Path) -> dict:
    """The checked ``sopo`` section."""
    p = stage_params(params_file, SECTION, SOPO_PARAMS, complete=True)
    positive(params_file, SECTION, p, "threads", "checkpoint_every")
    if not p["runs"]:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.runs' is empty")
    return p


def run_options(params_file: str | Path, p: dict, run: str) -> SoPoOptions:
    """The options of run ``run``: the paper's defaults, ``sopo.options``, then ``sopo.runs.<run>``."""
    if run not in p["runs"]:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.runs' has no run {run!r} "
                            f"(runs: {', '.join(sorted(p['runs']))}; variants: {', '.join(VARIANTS)})")
    block = p["runs"][run] or {}
    if not isinstance(block, dict):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.runs.{run}' must be a mapping, got {block!r}")
    try:
        return SoPoOptions().with_overrides({**p["options"], **block})
    except (ArtifactError, TypeError) as exc:
        raise ArtifactError(f"{params_file}: run '{SECTION}.runs.{run}': {str(exc).splitlines()[0]}") from None


def calibration_settings(params_file: str | Path, p: dict) -> tuple[int, int, TauCalibration]:
    """``(captions, K, TauCalibration)`` of ``sopo.calibration``."""
    c = dict(p["calibration"])
    for key in ("captions", "K"):
        if not isinstance(c.get(key), int) or c[key] < (2 if key == "K" else 1):
            raise ArtifactError(f"{params_file}: parameter '{SECTION}.calibration.{key}' must be an integer >= "
                                f"{2 if key == 'K' else 1}, got {c.get(key)!r}")
    try:
        calibration = TauCalibration(**{k: c[k] for k in ("anchor_tau", "anchor_quantile", "span") if k in c})
    except (ArtifactError, TypeError) as exc:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.calibration': {str(exc).splitlines()[0]}") from None
    return c["captions"], c["K"], calibration


def pair_settings(params_file: str | Path, p: dict) -> tuple[int, int]:
    """``(captions, K)`` of ``sopo.offline_pairs``."""
    c = p["offline_pairs"]
    for key, low in (("captions", 1), ("K", 2)):
        if not isinstance(c.get(key), int) or c[key] < low:
            raise ArtifactError(f"{params_file}: parameter '{SECTION}.offline_pairs.{key}' must be an integer >= {low}, "
                                f"got {c.get(key)!r}")
    return c["captions"], c["K"]


@dataclass
class SoPoInputs:
    """What every SoPo stage reads: the prior (``policy`` and a frozen ``reference`` copy), its
    config, the reward scorer, the training set (normalised crops with their sentence embeddings;
    :meth:`batch` adds the prior's full conditions, encoded for the batch's captions only)."""

    policy: nn.Module
    reference: nn.Module
    config: Any
    reward: RewardScorer
    dataset: MotionTextDataset
    sentences: tuple
    embeddings_file: str
    digests: dict[str, str]

    def batch(self, items: Sequence[dict]) -> dict:
        """:func:`collate_motion` of ``items`` with ``text_emb`` the prior's conditions of their captions
        (the sentence embedding first, as the reward reads it)."""
        batch = collate_motion(items)
        batch["text_emb"] = torch.from_numpy(caption_conditions(
            batch["captions"], self.sentences, self.config.clause_slots, strict_source=self.embeddings_file,
            word_tokens=self.config.word_tokens))
        return batch


def load_inputs(model_file: str | Path, config_file: str | Path, reward_file: str | Path, hml_dir: str | Path,
                embeddings_file: str | Path, seed: int, max_frames: int = 196) -> SoPoInputs:
    """Load the prior, the reward model and the training split (every error names its file)."""
    hml = Path(hml_dir)
    policy, config = load_mdm(model_file, config_file)
    reward_model = load_reward_model(reward_file)
    mean, std = load_mean_std(hml / "mean_std.npz", "model")
    train = load_motion_split(hml / "index.parquet", hml / "features.npz", embeddings_file, "train")
    reference = copy.deepcopy(policy).eval()
    for param in reference.parameters():
        param.requires_grad_(False)
    inputs = [model_file, config_file, reward_file, hml / "index.parquet", hml / "features.npz", hml / "mean_std.npz",
              embeddings_file]
    return SoPoInputs(policy.train(), reference, config, RewardScorer(reward_model, mean, std, config.text_dim),
                      MotionTextDataset(train, mean, std, max_frames=max_frames, seed=seed),
                      load_embeddings(embeddings_file), str(embeddings_file), {str(f): file_digest(f) for f in inputs})


def batch_rows(count: int, size: int, seed: int, step: int, rank: int = 0) -> np.ndarray:
    """The dataset rows of step ``step`` (a fresh draw per step and rank: resumes and reruns repeat it)."""
    return np.random.default_rng([seed, step, rank]).choice(count, size=min(size, count), replace=False)


def step_batch(inputs: SoPoInputs, rows: Sequence[int], step: int) -> dict:
    """The batch of ``rows`` with the crops and captions of ``step``."""
    inputs.dataset.set_epoch(step)
    return inputs.batch([inputs.dataset[int(i)] for i in rows])


def caption_groups(inputs: SoPoInputs, captions: int, K: int, ddim_steps: int, guidance: float, seed: int,
                   log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """K samples of the reference for ``captions`` training captions (rows spread over the set, their
    first caption and leading crop), scored by the reward: ``rows`` (N,), ``rewards`` (N, K)."""
    rows = np.linspace(0, len(inputs.dataset) - 1, min(captions, len(inputs.dataset))).round().astype(int)
    sampler, generator = ddim_sampler(inputs.config.noise_schedule(), ddim_steps, guidance), torch.Generator().manual_seed(seed)
    rewards = []
    for start in range(0, len(rows), 64):
        batch = inputs.batch([_leading(inputs.dataset, int(i)) for i in rows[start : start + 64]])
        with torch.no_grad():
            samples = sampler(inputs.reference, batch["text_emb"], batch["mask"], K, generator)
        group = score_group(inputs.reward, batch["motion"], batch["mask"], batch["text_emb"], samples)
        rewards.append(group.rewards.numpy())
        log(f"calibration: {min(start + 64, len(rows))} of {len(rows)} captions")
    return {"rows": rows, "rewards": np.concatenate(rewards).astype(np.float64)}


def _leading(dataset: MotionTextDataset, i: int) -> dict:
    """Item ``i`` with its first caption and its leading crop (the validation item)."""
    random, dataset.random = dataset.random, False
    try:
        return dataset[i]
    finally:
        dataset.random = random


def calibration_payload(rewards: np.ndarray, calibration: TauCalibration, K: int, ddim_steps: int) -> dict:
    """The calibration JSON: the map paper tau -> quantile -> our threshold, and the rewards' summary."""
    table = calibrate_taus(rewards, PAPER_TAUS, calibration)
    minima = rewards.min(1)
    return {"K": K, "captions": int(rewards.shape[0]), "ddim_steps": ddim_steps,
            "anchor_tau": calibration.anchor_tau, "anchor_quantile": calibration.anchor_quantile, "span": calibration.span,
            "reward_mean": float(rewards.mean()), "group_min_mean": float(minima.mean()),
            "group_min_range": [float(minima.min()), float(minima.max())],
            "taus": {f"{tau:.2f}": value for tau, value in table.items()}}


def read_calibration(path: str | Path) -> dict:
    """The calibration JSON (``sopo_calibrate``), checked."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        taus = payload["taus"]
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"{path}: not a SoPo calibration (missing field 'taus')") from None
    return payload


def threshold_for(calibration: dict, tau: float, K: int, calibration_file: str | Path, params_file: str | Path,
                  run: str) -> float:
    """Our threshold for the run's paper ``tau``: the calibrated map (K of the calibration run's groups
    are the run's, else the threshold is interpolated all the same and the report says so)."""
    low, high = REWARD_RANGE
    if not low < tau < high:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.runs.{run}.tau' must lie inside the reward's range "
                            f"({low}, {high}), got {tau}")
    table = sorted((float(k), v["threshold"]) for k, v in calibration["taus"].items())
    taus, values = zip(*table)
    if not taus[0] - 1e-9 <= tau <= taus[-1] + 1e-9:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.runs.{run}.tau' {tau} lies outside the calibrated "
                            f"sweep {taus[0]}-{taus[-1]} of {calibration_file}")
    return float(np.interp(tau, taus, values))


def build_pairs(inputs: SoPoInputs, captions: int, K: int, options: SoPoOptions, seed: int) -> dict[str, np.ndarray]:
    """MoDiPO-like pairs as arrays (``rows`` (N,), ``chosen``/``rejected`` (N, T, D), ``mask``, ``text_emb``,
    rewards): the reference's best and worst of K for ``captions`` training clips' first captions."""
    from humandiff.sopo.algorithm import build_offline_pairs

    rows = np.linspace(0, len(inputs.dataset) - 1, min(captions, len(inputs.dataset))).round().astype(int)
    batch = inputs.batch([_leading(inputs.dataset, int(i)) for i in rows])
    pairs = build_offline_pairs(inputs.reference, batch["text_emb"], batch["mask"],
                                sampler=ddim_sampler(inputs.config.noise_schedule(), options.ddim_steps,
                                                     options.sample_guidance),
                                reward=inputs.reward, K=K, generator=torch.Generator().manual_seed(seed))
    return {"rows": rows.astype(np.int64), "chosen": pairs.chosen.numpy(), "rejected": pairs.rejected.numpy(),
            "mask": pairs.mask.numpy(), "text_emb": pairs.text_emb.numpy(),
            "chosen_reward": pairs.chosen_reward.numpy(), "rejected_reward": pairs.rejected_reward.numpy()}


def offline_pairs(arrays: dict[str, np.ndarray]) -> OfflinePairs:
    """:class:`OfflinePairs` from :func:`build_pairs`'s arrays (as read back from the NPZ)."""
    return OfflinePairs(*(torch.from_numpy(np.asarray(arrays[k])) for k in
                          ("chosen", "rejected", "mask", "text_emb", "chosen_reward", "rejected_reward")))


@dataclass
class FineTuneResult:
    policy: nn.Module
    history: list[dict]
    step: int
    resumed_from: int | None
    seconds: float


def fine_tune(inputs: SoPoInputs, options: SoPoOptions, threshold: float, seed: int, *,
              pairs: OfflinePairs | None = None, checkpoint_file: str | Path | None = None,
              fingerprint: dict | None = None, checkpoint_every: int = 10, stop_at: int | None = None,
              rank: int = 0, world_size: int = 1, progress: bool = True, desc: str = "sopo") -> FineTuneResult:
    """Algorithm 1 for ``options.steps`` optimiser steps from the prior (resumable from ``checkpoint_file``).

    Each step draws its rows and its generator from ``(seed, step, rank)``, so a resumed run repeats
    the uninterrupted one. Under torchrun (``world_size`` > 1, the process group joined) each rank
    takes ``batch_size / world_size`` rows and the gradients are averaged by DDP.
    """
    from tqdm import tqdm

    policy = inputs.policy
    network: nn.Module = policy
    if world_size > 1:
        network = nn.parallel.DistributedDataParallel(policy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    history: list[dict] = []
    start, resumed_from, seconds = 0, None, 0.0
    state = _resume_state(checkpoint_file, fingerprint)
    if state is not None:
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        history, start, seconds = list(state["history"]), int(state["step"]), float(state["seconds"])
        resumed_from = start
    schedule, per_rank = inputs.config.noise_schedule(), max(options.batch_size // world_size, 1)
    sampler = ddim_sampler(schedule, options.ddim_steps, options.sample_guidance)
    end = options.steps if stop_at is None else min(stop_at, options.steps)
    bar = tqdm(total=options.steps, initial=start, desc=desc, disable=not progress or rank != 0)
    for step in range(start, end):
        if pairs is not None:
            batch = pairs.batch(batch_rows(len(pairs), per_rank, seed, step, rank))
            batch = _trim(batch)
        else:
            batch = step_batch(inputs, batch_rows(len(inputs.dataset), per_rank, seed, step, rank), step)
        generator = torch.Generator().manual_seed(int(np.random.default_rng([seed, step, rank, 1]).integers(2**62)))
        record: SoPoRecord = sopo_step(network, inputs.reference, batch, options=options, threshold=threshold,
                                       schedule=schedule, sampler=sampler, reward=inputs.reward, optimizer=optimizer,
                                       generator=generator, step=step, prediction=inputs.config.prediction)
        history.append({k: v for k, v in record.to_dict().items() if k != "seconds"})
        seconds += record.seconds
        bar.update(1)
        bar.set_postfix(loss=f"{record.loss:.4f}", dpo=f"{record.dpo_share:.2f}", r=f"{record.reward_samples:.3f}")
        done = step + 1
        if checkpoint_file is not None and rank == 0 and (done % checkpoint_every == 0 or done == end):
            save_torch(checkpoint_file, {"policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                                         "history": history, "step": done, "seconds": seconds,
                                         "fingerprint": json.dumps(fingerprint, sort_keys=True)})
    bar.close()
    return FineTuneResult(policy.eval(), history, max(end, start), resumed_from, seconds)


def _trim(batch: dict) -> dict:
    """An offline batch cut to its longest real frame (the pairs are stored at the set's longest)."""
    frames = int(batch["mask"].sum(1).max())
    return {k: (v[:, :frames] if k in ("motion", "mask", "rejected") else v) for k, v in batch.items()}


def _resume_state(checkpoint_file: str | Path | None, fingerprint: dict | None) -> dict | None:
    """The checkpoint's state if it exists, reads and was written for the same ``fingerprint``; else None."""
    if checkpoint_file is None or not Path(checkpoint_file).is_file():
        return None
    try:
        state = load_torch(checkpoint_file)
    except ArtifactError:
        return None  # a truncated or foreign file is not resumable: start over
    if not isinstance(state, dict) or state.get("fingerprint") != json.dumps(fingerprint, sort_keys=True):
        return None
    return state


def curve_rows(history: Sequence[dict]) -> list[dict]:
    """The curve's rows (NaN-free: a missing reward is written as -1)."""
    return [{c: (row[c] if np.isfinite(row[c]) else -1.0) for c in row} for row in history]


def run_record(run: str, options: SoPoOptions, threshold: float, calibration: dict, result: FineTuneResult) -> dict:
    """The run's record (no timing): its options, our threshold for its tau, and the training signal's summary."""
    history = result.history
    last = history[-max(1, len(history) // 5):]  # the last fifth of the steps

    def mean(key: str, rows: Sequence[dict]) -> float | None:
        values = [row[key] for row in rows if np.isfinite(row[key])]
        return float(np.mean(values)) if values else None

    return {"run": run, "options": options.to_dict(), "threshold": threshold,
            "calibration_K": calibration.get("K"), "steps": result.step,
            "dpo_share": mean("dpo_share", history), "final_loss": mean("loss", last),
            "reward_samples_first": mean("reward_samples", history[: max(1, len(history) // 5)]),
            "reward_samples_last": mean("reward_samples", last), "resumed_from": result.resumed_from}
