"""The loss of SoPo's Algorithm 1 (Eq. S15 / S28) for one batch, and its Table-3 variants as options.

Conventions, written once:

- Pair: ``x_w`` (preferred) and ``x_l`` (unpreferred) share the caption ``c``, the length and the
  mask. For the SoPo family ``x_w`` is the training clip and ``x_l`` the lowest-reward of the K
  online samples (Eq. 10); for ``dpo_online`` both are the policy's (highest and lowest reward);
  for ``dpo_offline`` both were drawn once from the reference (:func:`humandiff.sopo.algorithm.build_offline_pairs`).
- Error: ``L(m, x) = `` the per-sample denoising error of model ``m`` on ``x`` at ``(t, noise)``,
  :func:`humandiff.prior.mdm.denoising_loss` (a mean over real frames' elements) in the model's
  own parameterisation. Our prior predicts x0; the paper writes ``||eps - eps_m(x_t, t)||^2`` for a
  noise predictor. For one estimate the two differ by a weight per t,
  ``||eps - eps_hat||^2 = (ab_t / (1 - ab_t)) ||x0 - x0_hat||^2`` (:func:`humandiff.diffusion.loss.error_weight`),
  so ``error_space="eps"`` multiplies each sample's error by that SNR weight and is the paper's loss
  exactly (up to the sum-versus-mean over elements, a constant folded into ``dpo_scale``);
  ``"x0"`` (default) keeps the x0 error, i.e. the paper's loss with ``w_t`` replaced by
  ``w_t (1 - ab_t) / ab_t``: on MDM's 1000-step cosine schedule the SNR weight runs from 2.4e4
  (t = 0) through 1 (t = T/2) and 0.024 (t = 0.9 T) to 2e-9 (t = T - 1), so in eps space the top
  levels, where a clip's content (and so whether it shows the caption) is decided, would carry no signal.
- Diffusion-DPO: one ``t`` and one ``noise`` per pair, the same for the policy and reference
  terms and for ``x_w`` and ``x_l``; ``D(x) = L(policy, x) - L(reference, x)`` (the paper's
  ``L(theta, ref, x_t)``), the reference under ``no_grad``.
- Per sample: ``-log sigmoid(-s (beta_w D(x_w) - beta D(x_l)))`` where the DPO term applies,
  ``-log sigmoid(-s beta_w D(x_w))`` (preferred only) otherwise, with ``s = dpo_scale`` (the
  paper's ``T w_t``). The batch loss is the mean. Where the paper's Alg. 1 line 7 can be read as
  ``beta_w (D_w - beta D_l)``, we follow Eq. S28 / S31, ``beta_w h(x_w) - beta h(x_l)``.
- ``beta_w = beta (C - S(x_w))`` with ``S(x_w) = min_k cos(e(x_w), e(x^k))`` over the K online
  samples, ``e`` the reward model's unit motion latent. Why that space: the paper reweights
  because "similar samples have similar preferences", i.e. S stands in for the reward gap, and
  the reward model's latent is the space in which the reward is a cosine; cosines of raw 263-d
  features are dominated by the root and pose offsets shared by every clip (and need equal
  lengths), not by what the motion shows. Without reweighting ``beta_w = beta``.
- Switch: with the filter, the DPO term applies where ``r(x_l, c) < threshold`` (``threshold``:
  tau on our reward's scale, :mod:`humandiff.sopo.calibration`); without it, everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from humandiff.diffusion import NoiseSchedule, Prediction
from humandiff.diffusion.loss import error_weight
from humandiff.io.artifacts import ArtifactError
from humandiff.prior.mdm import denoising_loss
from humandiff.sopo.options import SoPoOptions


@dataclass(frozen=True)
class OnlineGroup:
    """One batch of captions with their preferred motions and K scored samples (normalised features).

    ``preferred`` (B, T, D), ``mask`` (B, T) bool, ``text_emb`` (B, C) the prior's condition,
    ``samples`` (B, K, T, D) on the same mask, ``rewards`` (B, K); ``preferred_reward`` (B,) and the
    reward model's unit motion latents ``preferred_embedding`` (B, E), ``sample_embeddings`` (B, K, E)
    where known (the latents are needed for the reweighting).
    """

    preferred: Tensor
    mask: Tensor
    text_emb: Tensor
    samples: Tensor
    rewards: Tensor
    preferred_reward: Tensor | None = None
    preferred_embedding: Tensor | None = None
    sample_embeddings: Tensor | None = None

    def __post_init__(self) -> None:
        B, T = self.preferred.shape[:2]
        if self.mask.shape != (B, T) or self.mask.dtype != torch.bool:
            raise ArtifactError(f"OnlineGroup: field 'mask' must be bool ({B}, {T}), "
                                f"got {self.mask.dtype} {tuple(self.mask.shape)}")
        if self.text_emb.shape[0] != B:
            raise ArtifactError(f"OnlineGroup: field 'text_emb' has {self.text_emb.shape[0]} rows for {B} motions")
        if self.samples.dim() != self.preferred.dim() + 1 or self.samples.shape[0] != B \
                or self.samples.shape[2:] != self.preferred.shape[1:]:
            raise ArtifactError(f"OnlineGroup: field 'samples' must be (B, K, {', '.join(map(str, self.preferred.shape[1:]))}), "
                                f"got {tuple(self.samples.shape)}")
        if self.rewards.shape != self.samples.shape[:2]:
            raise ArtifactError(f"OnlineGroup: field 'rewards' must be {tuple(self.samples.shape[:2])}, "
                                f"got {tuple(self.rewards.shape)}")
        if (self.preferred_embedding is None) != (self.sample_embeddings is None):
            raise ArtifactError("OnlineGroup: fields 'preferred_embedding' and 'sample_embeddings' come together")
        if self.sample_embeddings is not None and (self.sample_embeddings.shape[:2] != self.samples.shape[:2]
                                                   or self.preferred_embedding.shape != (B, self.sample_embeddings.shape[-1])):
            raise ArtifactError(f"OnlineGroup: embeddings have shapes {tuple(self.preferred_embedding.shape)} and "
                                f"{tuple(self.sample_embeddings.shape)}, expected (B, E) and (B, K, E)")

    @property
    def K(self) -> int:
        return self.samples.shape[1]


@dataclass(frozen=True)
class Pair:
    """The pair the loss trains on, per row: ``preferred``, ``unpreferred`` (B, T, D), their
    ``unpreferred_reward`` (B,), the weights ``beta_w`` (B,), the similarity ``similarity`` (B,)
    (None without reweighting) and ``dpo`` (B,) bool, True where the DPO term applies."""

    preferred: Tensor
    unpreferred: Tensor
    unpreferred_reward: Tensor
    beta_w: Tensor
    similarity: Tensor | None
    dpo: Tensor


def lowest_reward(group: OnlineGroup) -> tuple[Tensor, Tensor]:
    """The lowest-reward sample of each row (B, T, D) and its reward (B,) (Eq. 10; ties: the first)."""
    index = group.rewards.argmin(1)
    rows = torch.arange(group.samples.shape[0], device=index.device)
    return group.samples[rows, index], group.rewards[rows, index]


def smallest_similarity(preferred_embedding: Tensor, sample_embeddings: Tensor) -> Tensor:
    """``S(x_w) = min_k cos(e_w, e_k)`` (B,) of latents (B, E) and (B, K, E) (normalised here)."""
    w = F.normalize(preferred_embedding.float(), dim=-1)
    k = F.normalize(sample_embeddings.float(), dim=-1)
    return (k * w[:, None]).sum(-1).min(1).values


def select_pair(group: OnlineGroup, options: SoPoOptions, threshold: float) -> Pair:
    """The variant's pair, weights and switch for ``group`` (module doc); ``threshold`` on our reward's scale."""
    unpreferred, r_l = lowest_reward(group)
    preferred = group.preferred
    if options.pair_source == "online":
        rows = torch.arange(group.samples.shape[0], device=group.rewards.device)
        preferred = group.samples[rows, group.rewards.argmax(1)]
    similarity = None
    beta_w = torch.full_like(r_l, options.beta, dtype=torch.float32)
    if options.reweight:
        if group.sample_embeddings is None:
            raise ArtifactError(f"select_pair: variant '{options.variant}' reweights x_w and needs the reward model's "
                                "motion latents (fields 'preferred_embedding', 'sample_embeddings')")
        similarity = smallest_similarity(group.preferred_embedding, group.sample_embeddings)
        beta_w = options.beta * (options.C - similarity)
    dpo = r_l < threshold if options.filtered else torch.ones_like(r_l, dtype=torch.bool)
    return Pair(preferred, unpreferred, r_l, beta_w.detach(), similarity, dpo)


@dataclass(frozen=True)
class PreferenceLoss:
    """The batch ``loss`` (scalar) and per row: ``per_sample`` (B,), ``delta_w``/``delta_l`` (B,)
    (``D(x) = L(policy, x) - L(reference, x)`` in ``error_space``) and ``inside`` (B,) the argument
    of ``-log sigmoid(-s inside)``."""

    loss: Tensor
    per_sample: Tensor
    delta_w: Tensor
    delta_l: Tensor
    inside: Tensor


def denoising_errors(model: Callable[..., Tensor], schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor,
                     text_emb: Tensor, mask: Tensor, prediction: Prediction, error_space: str) -> Tensor:
    """Per-sample error (B,) of ``model`` (its ``prediction`` parameterisation) read in ``error_space``."""
    error, _ = denoising_loss(model, schedule, x0, t, noise, text_emb=text_emb, mask=mask, prediction=prediction)
    return error * error_weight(schedule, t, prediction, error_space).to(error)


def preference_loss(policy: Callable[..., Tensor], reference: Callable[..., Tensor], schedule: NoiseSchedule,
                    pair: Pair, mask: Tensor, text_emb: Tensor, t: Tensor, noise: Tensor, options: SoPoOptions,
                    prediction: Prediction = "x0") -> PreferenceLoss:
    """Eq. S15 / S28 for ``pair`` at timesteps ``t`` (B,) and ``noise`` (B, T, D), one of each per pair (module doc).

    ``policy``/``reference``: ``(x_t, t, text_emb=, mask=) -> prediction`` (``prediction``: both models').
    """
    if t.shape != pair.beta_w.shape or noise.shape != pair.preferred.shape:
        raise ArtifactError(f"preference_loss: 't' {tuple(t.shape)} and 'noise' {tuple(noise.shape)} must be one per pair, "
                            f"expected ({pair.preferred.shape[0]},) and {tuple(pair.preferred.shape)}")
    x = torch.cat([pair.preferred, pair.unpreferred])
    args = (schedule, x, t.repeat(2), noise.repeat(2, *([1] * (noise.dim() - 1))), text_emb.repeat(2, 1), mask.repeat(2, 1),
            prediction, options.error_space)
    policy_error = denoising_errors(policy, *args)
    with torch.no_grad():
        reference_error = denoising_errors(reference, *args)
    delta_w, delta_l = (policy_error - reference_error).chunk(2)
    beta_w = pair.beta_w.to(delta_w)
    inside = beta_w * delta_w - torch.where(pair.dpo, options.beta * delta_l, torch.zeros_like(delta_l))
    per_sample = -F.logsigmoid(-options.dpo_scale * inside)
    return PreferenceLoss(per_sample.mean(), per_sample, delta_w, delta_l, inside)
