"""One training step of SoPo's Algorithm 1 with its collaborators passed in, and the MoDiPO-like offline pairs.

Collaborators:

- ``policy``: the MDM prior being fine-tuned (starts as a copy of the prior); ``reference``: a
  frozen copy (eval mode, no gradient). Both ``(x_t, t, text_emb=, mask=) -> prediction``.
- ``sampler`` (:data:`OnlineSampler`): K motions per caption from a model without gradient, at the
  caption's length (the preferred clip's mask). :func:`ddim_sampler` is the prior's own 50-step
  DDIM with classifier-free guidance (:func:`humandiff.prior.mdm.generate`).
- ``reward`` (:data:`RewardFunction`): scores and the reward model's unit motion latents of
  normalised motions for their captions. :class:`RewardScorer` wraps the TMR-style
  :class:`~humandiff.evaluators.tmr.RewardModel` (it reads raw features and the 384-d sentence
  embedding, the first 384 entries of the prior's condition).
- ``optimizer``: an AdamW over the policy's parameters; its learning rate is set each step from
  :func:`humandiff.sopo.options.learning_rate`.

Randomness (the samplers' seeds, t and the noise) comes only from an explicit ``torch.Generator``.
The reward model is only ever a training signal: the records carry its scores for the curves,
never a reported metric.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from humandiff.diffusion import NoiseSchedule, TimestepSampler
from humandiff.io.artifacts import ArtifactError
from humandiff.prior.mdm import generate
from humandiff.sopo.loss import OnlineGroup, preference_loss, select_pair
from humandiff.sopo.options import SoPoOptions, learning_rate
from humandiff.train.device import on_device

#: ``(model, text_emb (B, C), mask (B, T), K, generator) -> (B, K, T, D)`` normalised, drawn without gradient.
OnlineSampler = Callable[[nn.Module, Tensor, Tensor, int, torch.Generator], Tensor]
#: ``(motions (N, T, D) normalised, mask (N, T), text_emb (N, C)) -> (rewards (N,), unit motion latents (N, E))``.
RewardFunction = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def ddim_sampler(schedule: NoiseSchedule, ddim_steps: int = 50, guidance_scale: float = 2.5, eta: float = 0.0,
                 batch_size: int = 64) -> OnlineSampler:
    """The prior's sampler as an :data:`OnlineSampler`: :func:`~humandiff.prior.mdm.generate` (DDIM,
    classifier-free guidance) for each caption repeated K times, with a seed drawn from the generator;
    the network runs where its parameters are, the noise and the DDIM updates on the CPU (as
    :class:`~humandiff.prior.sampler.PriorSampler`), the result comes back on ``text_emb``'s device."""

    def sample(model: nn.Module, text_emb: Tensor, mask: Tensor, K: int, generator: torch.Generator) -> Tensor:
        lengths = mask.sum(1).repeat_interleave(K).tolist()
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        network = on_device(model, next(model.parameters()).device)  # DDIM's bookkeeping stays on the CPU
        motions = generate(network, schedule, text_emb.cpu().repeat_interleave(K, 0), lengths, num_steps=ddim_steps,
                           guidance_scale=guidance_scale, eta=eta, seed=seed, batch_size=batch_size)
        out = torch.zeros(mask.shape[0] * K, mask.shape[1], motions[0].shape[-1])
        for i, motion in enumerate(motions):
            out[i, : len(motion)] = motion
        return out.reshape(mask.shape[0], K, *out.shape[1:]).to(text_emb.device)

    return sample


class RewardScorer:
    """A :data:`RewardFunction` of a :class:`~humandiff.evaluators.tmr.RewardModel`: undoes the prior's
    feature standardisation (``mean``/``std`` (D,)), reads the sentence embedding (the first
    ``text_dim`` entries of the prior's condition) and returns ``cos / 2 + 0.5`` with the motion latents."""

    def __init__(self, reward_model: nn.Module, mean: np.ndarray | Tensor, std: np.ndarray | Tensor, text_dim: int = 384) -> None:
        self.model, self.text_dim = reward_model.eval(), text_dim
        self.mean, self.std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, motions: Tensor, mask: Tensor, text_emb: Tensor) -> tuple[Tensor, Tensor]:
        raw = motions.float() * self.std.to(motions.device) + self.mean.to(motions.device)
        latent = self.model.encode_motion(raw, mask)
        text = self.model.encode_text(text_emb[:, : self.text_dim].float())
        return (latent * text).sum(-1) / 2.0 + 0.5, latent


def score_group(reward: RewardFunction, preferred: Tensor, mask: Tensor, text_emb: Tensor, samples: Tensor) -> OnlineGroup:
    """An :class:`OnlineGroup` of ``preferred`` (B, T, D) and its ``samples`` (B, K, T, D), all scored in one call."""
    B, K = samples.shape[:2]
    motions = torch.cat([preferred[:, None], samples], 1).flatten(0, 1)
    scores, latents = reward(motions, mask.repeat_interleave(K + 1, 0), text_emb.repeat_interleave(K + 1, 0))
    scores, latents = scores.reshape(B, K + 1), latents.reshape(B, K + 1, -1)
    return OnlineGroup(preferred, mask, text_emb, samples, scores[:, 1:], scores[:, 0], latents[:, 0], latents[:, 1:])


@dataclass(frozen=True)
class SoPoRecord:
    """One step of the history: ``loss``; ``dpo_share`` (rows on the DPO term); the reward model's mean
    score of the preferred motions, of all K samples and of the unpreferred ones (training signal
    only); the mean ``beta_w`` and ``similarity`` (NaN without reweighting); the mean ``margin``
    ``D(x_w) - D(x_l)`` (below 0: the policy prefers x_w more than the reference does); lr; seconds."""

    step: int
    loss: float
    dpo_share: float
    reward_preferred: float
    reward_samples: float
    reward_unpreferred: float
    beta_w: float
    similarity: float
    margin: float
    lr: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def online_group(policy: nn.Module, batch: dict, sampler: OnlineSampler, reward: RewardFunction, options: SoPoOptions,
                 generator: torch.Generator) -> OnlineGroup:
    """The step's group: for "dataset" and "online" variants K fresh samples of the policy; for
    ``dpo_offline`` the batch's stored pair (``rejected`` (B, T, D) and ``rejected_reward`` (B,), the
    reference's worst, as the one "sample")."""
    if options.pair_source == "offline":
        for key in ("rejected", "rejected_reward"):
            if key not in batch:
                raise ArtifactError(f"sopo_step: variant 'dpo_offline' needs batch field '{key}' (build_offline_pairs)")
        return OnlineGroup(batch["motion"], batch["mask"], batch["text_emb"], batch["rejected"][:, None],
                           batch["rejected_reward"][:, None], batch.get("preferred_reward"))
    with torch.no_grad():
        samples = sampler(policy, batch["text_emb"], batch["mask"], options.K, generator)
    return score_group(reward, batch["motion"], batch["mask"], batch["text_emb"], samples)


def sopo_step(policy: nn.Module, reference: nn.Module, batch: dict, *, options: SoPoOptions, threshold: float,
              schedule: NoiseSchedule, sampler: OnlineSampler, reward: RewardFunction, optimizer: torch.optim.Optimizer,
              generator: torch.Generator, step: int = 0, prediction: str | None = None) -> SoPoRecord:
    """One optimiser step of Algorithm 1 on ``batch`` (``motion`` (B, T, D) normalised, ``mask``, ``text_emb``;
    :func:`humandiff.motion.dataset.collate_motion`'s fields): K samples of the policy, their rewards,
    the pair (:func:`~humandiff.sopo.loss.select_pair`), one uniform t and one noise per pair, the
    loss (:func:`~humandiff.sopo.loss.preference_loss`), AdamW at :func:`learning_rate` ``(step)``.
    ``threshold``: tau on our reward's scale (:mod:`humandiff.sopo.calibration`); ``prediction``: what
    both models predict (default: the policy's ``config.prediction``, else "x0")."""
    start = time.perf_counter()
    module = getattr(policy, "module", policy)  # under DDP: sample with the wrapped model (no gradient, no sync)
    if prediction is None:
        prediction = getattr(getattr(module, "config", None), "prediction", "x0")
    group = online_group(module, batch, sampler, reward, options, generator)
    pair = select_pair(group, options, threshold)
    B = pair.preferred.shape[0]
    t = TimestepSampler()(schedule, B, generator).to(pair.preferred.device)
    noise = torch.randn(pair.preferred.shape, generator=generator).to(pair.preferred.device)
    result = preference_loss(policy, reference, schedule, pair, group.mask, group.text_emb, t, noise, options, prediction)
    lr = learning_rate(step, options)
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    optimizer.step()

    def mean(value: Tensor | None) -> float:
        return float("nan") if value is None else float(value.detach().float().mean())

    return SoPoRecord(step=step, loss=float(result.loss.detach()), dpo_share=mean(pair.dpo.float()),
                      reward_preferred=mean(group.preferred_reward), reward_samples=mean(group.rewards),
                      reward_unpreferred=mean(pair.unpreferred_reward), beta_w=mean(pair.beta_w),
                      similarity=mean(pair.similarity), margin=mean(result.delta_w - result.delta_l), lr=lr,
                      seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class OfflinePairs:
    """MoDiPO-like pairs drawn once from the reference: per caption the highest- and lowest-reward of
    K samples, ``chosen``/``rejected`` (N, T, D) normalised on ``mask`` (N, T), with ``text_emb``
    (N, C) and their rewards (N,). :meth:`batch` gives :func:`sopo_step`'s batch fields."""

    chosen: Tensor
    rejected: Tensor
    mask: Tensor
    text_emb: Tensor
    chosen_reward: Tensor
    rejected_reward: Tensor

    def __len__(self) -> int:
        return self.chosen.shape[0]

    def batch(self, rows: Tensor | np.ndarray | list[int]) -> dict:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return {"motion": self.chosen[rows], "mask": self.mask[rows], "text_emb": self.text_emb[rows],
                "rejected": self.rejected[rows], "rejected_reward": self.rejected_reward[rows],
                "preferred_reward": self.chosen_reward[rows]}


@torch.no_grad()
def build_offline_pairs(reference: nn.Module, text_emb: Tensor, mask: Tensor, *, sampler: OnlineSampler,
                        reward: RewardFunction, K: int, generator: torch.Generator, batch_size: int = 64) -> OfflinePairs:
    """For each caption (``text_emb`` (N, C), length given by ``mask`` (N, T)) K samples of the
    reference, scored by ``reward``; the best and the worst make the pair (MoDiPO, paper Eq. 7)."""
    if K < 2:
        raise ArtifactError(f"build_offline_pairs: parameter 'K' must be >= 2, got {K}")
    if len(text_emb) == 0 or mask.shape[0] != len(text_emb):
        raise ArtifactError(f"build_offline_pairs: {len(text_emb)} captions for {mask.shape[0]} masks")
    parts: list[tuple[Tensor, ...]] = []
    for start in range(0, len(text_emb), batch_size):
        text, m = text_emb[start : start + batch_size], mask[start : start + batch_size]
        samples = sampler(reference, text, m, K, generator)
        scores, _ = reward(samples.flatten(0, 1), m.repeat_interleave(K, 0), text.repeat_interleave(K, 0))
        scores = scores.reshape(len(text), K)
        rows = torch.arange(len(text))
        best, worst = scores.argmax(1), scores.argmin(1)
        parts.append((samples[rows, best], samples[rows, worst], scores[rows, best], scores[rows, worst]))
    chosen, rejected, chosen_reward, rejected_reward = (torch.cat(column) for column in zip(*parts))
    return OfflinePairs(chosen, rejected, mask, text_emb, chosen_reward, rejected_reward)
