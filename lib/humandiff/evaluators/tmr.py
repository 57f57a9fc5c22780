"""The reward model for SoPo, in the style of TMR (Petrovich et al.): a text-motion retrieval model.

A transformer motion encoder (a learned summary token, sinusoidal positions, key padding mask)
and a text encoder over the caption's MiniLM sentence embedding (a residual MLP: the
evaluator reads word-piece vectors through a GRU, so the two models share no text pathway),
both into a unit-norm latent. Trained with InfoNCE at temperature 0.1 in both directions, where
a negative whose caption is too similar to the positive's (MiniLM cosine > 0.8) is left out of
the denominator. The score of a (motion, caption) pair is ``cosine / 2 + 0.5``, in [0, 1].

Differences from TMR, for CPU: no VAE branch, no motion decoder and no reconstruction / KL /
latent-matching losses (only the contrastive term, which is what the reward uses); frames are
grouped into patches of ``patch`` frames before the transformer (TMR: 1); fewer and narrower
layers by default (TMR: 6 layers, 256-d, 4 heads, ff 1024; :data:`PAPER_CONFIG`).

The training loop is the one shared with the evaluator (:mod:`humandiff.evaluators.contrastive`).

The reward model is separate from the evaluator (:mod:`humandiff.evaluators.evaluator`) and never
enters a reported metric: a policy tuned against it must be judged by the other model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from humandiff.eval.t2m import R_PRECISION_BATCH, r_precision_batch
from humandiff.evaluators.contrastive import (
    ContrastiveHistory,
    fixed_batches,
    mean_batch_loss,
    model_device,
    pad_clips,
    parameter_count,
    register_statistics,
    train_contrastive,
)
from humandiff.io import ArtifactError, load_checkpoint, restore_state, save_checkpoint
from humandiff.motion.hml3d import FEATURE_DIM
from humandiff.text.encoder import EMBEDDING_DIM
from humandiff.train.device import to_device


@dataclass(frozen=True)
class RewardConfig:
    """Sizes of the reward model; defaults are the CPU preset (TMR: latent 256, 6 layers, ff 1024, patch 1)."""

    latent_dim: int = 128
    layers: int = 3
    heads: int = 4
    ff_dim: int = 256
    dropout: float = 0.1
    patch: int = 4
    text_dim: int = EMBEDDING_DIM
    max_tokens: int = 256

    def __post_init__(self) -> None:
        for name in ("latent_dim", "layers", "heads", "ff_dim", "patch", "text_dim", "max_tokens"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"reward config: '{name}' must be > 0, got {getattr(self, name)!r}")
        if self.latent_dim % self.heads:
            raise ArtifactError(f"reward config: 'latent_dim' {self.latent_dim} must be divisible by 'heads' {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ArtifactError(f"reward config: 'dropout' must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "RewardConfig":
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ArtifactError(f"reward config: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**values)


#: TMR's published sizes (frame-level tokens).
PAPER_CONFIG = RewardConfig(latent_dim=256, layers=6, heads=4, ff_dim=1024, dropout=0.1, patch=1)


def sinusoidal_positions(count: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position encodings (count, dim)."""
    position = torch.arange(count, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(count, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class MotionTransformer(nn.Module):
    """Normalised features (B, T, 263) with validity mask (B, T) -> unit latent (B, D)."""

    def __init__(self, config: RewardConfig) -> None:
        super().__init__()
        self.patch = config.patch
        self.project = nn.Linear(FEATURE_DIM * config.patch, config.latent_dim)
        self.summary = nn.Parameter(torch.zeros(1, 1, config.latent_dim))
        self.register_buffer("positions", sinusoidal_positions(config.max_tokens + 1, config.latent_dim), persistent=False)
        layer = nn.TransformerEncoderLayer(config.latent_dim, config.heads, config.ff_dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.latent_dim)
        self.output = nn.Linear(config.latent_dim, config.latent_dim)

    def forward(self, motion: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = motion.shape
        padded = -frames % self.patch
        motion = nn.functional.pad(motion * mask[..., None], (0, 0, 0, padded))
        mask = nn.functional.pad(mask, (0, padded))
        tokens = motion.reshape(batch, -1, self.patch * FEATURE_DIM)
        token_mask = mask.reshape(batch, -1, self.patch).any(-1)
        if tokens.shape[1] + 1 > self.positions.shape[0]:
            raise ArtifactError(f"reward model: {frames} frames exceed {self.positions.shape[0] - 1} tokens of {self.patch}")
        hidden = torch.cat([self.summary.expand(batch, -1, -1), self.project(tokens)], 1)
        hidden = hidden + self.positions[: hidden.shape[1]]
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=token_mask.device), token_mask], 1)
        hidden = self.encoder(hidden, src_key_padding_mask=~keep)
        return nn.functional.normalize(self.output(self.norm(hidden[:, 0])), dim=-1)


class SentenceEncoder(nn.Module):
    """MiniLM sentence embeddings (B, 384) -> unit latent (B, D) through a residual MLP."""

    def __init__(self, config: RewardConfig) -> None:
        super().__init__()
        self.input = nn.Linear(config.text_dim, config.latent_dim)
        self.block = nn.Sequential(nn.LayerNorm(config.latent_dim), nn.Linear(config.latent_dim, config.ff_dim),
                                   nn.GELU(), nn.Dropout(config.dropout), nn.Linear(config.ff_dim, config.latent_dim))
        self.output = nn.Linear(config.latent_dim, config.latent_dim)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.input(embeddings)
        hidden = hidden + self.block(hidden)
        return nn.functional.normalize(self.output(hidden), dim=-1)


class RewardModel(nn.Module):
    """TMR-style retrieval model whose score serves as SoPo's reward.

    ``mean``/``std`` (263,) are the generative models' feature statistics (``mean_std.npz``):
    raw (denormalised) HumanML3D features go in.
    """

    def __init__(self, config: RewardConfig, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        register_statistics(self, mean, std, ("mean", "std"), "reward mean/std")
        self.motion_encoder = MotionTransformer(config)
        self.text_encoder = SentenceEncoder(config)

    def encode_motion(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw features (B, T, 263) and mask (B, T) bool (True = real frame) -> unit latents (B, D)."""
        if features.ndim != 3 or features.shape[-1] != FEATURE_DIM:
            raise ArtifactError(f"reward: motion features have shape {tuple(features.shape)}, "
                                f"expected (B, T, {FEATURE_DIM})")
        if mask.shape != features.shape[:2] or mask.dtype != torch.bool:
            raise ArtifactError(f"reward: mask has shape {tuple(mask.shape)} dtype {mask.dtype}, "
                                f"expected bool {tuple(features.shape[:2])}")
        if not mask.any(1).all():
            raise ArtifactError("reward: a motion has no valid frame in its mask")
        return self.motion_encoder((features - self.mean) / self.std, mask)

    def encode_text(self, caption_embeddings: torch.Tensor) -> torch.Tensor:
        """MiniLM sentence embeddings (B, 384) -> unit latents (B, D)."""
        if caption_embeddings.ndim != 2 or caption_embeddings.shape[-1] != self.config.text_dim:
            raise ArtifactError(f"reward: caption embeddings have shape {tuple(caption_embeddings.shape)}, "
                                f"expected (B, {self.config.text_dim})")
        return self.text_encoder(caption_embeddings)

    def reward(self, motion_features: torch.Tensor, mask: torch.Tensor, caption_embeddings: torch.Tensor) -> torch.Tensor:
        """Scores (B,) in [0, 1]: cosine(motion latent, text latent) / 2 + 0.5 of raw features (B, T, 263),
        mask (B, T) bool and MiniLM caption embeddings (B, 384). Differentiable; no_grad is the caller's choice."""
        if motion_features.shape[0] != caption_embeddings.shape[0]:
            raise ArtifactError(f"reward: {motion_features.shape[0]} motions but {caption_embeddings.shape[0]} captions")
        motion = self.encode_motion(motion_features, mask)
        text = self.encode_text(caption_embeddings)
        return (motion * text).sum(-1) / 2.0 + 0.5

    forward = reward


def filtered_info_nce(text: torch.Tensor, motion: torch.Tensor, caption_embeddings: torch.Tensor,
                      temperature: float = 0.1, threshold: float = 0.8) -> torch.Tensor:
    """Symmetric InfoNCE over unit latents (B, D) with cosine logits / temperature; off-diagonal pairs whose
    caption embeddings (B, 384, unit norm) have cosine > ``threshold`` are removed from the denominators."""
    logits = text @ motion.T / temperature
    captions = nn.functional.normalize(caption_embeddings, dim=-1)
    too_similar = (captions @ captions.T) > threshold
    too_similar.fill_diagonal_(False)
    logits = logits.masked_fill(too_similar, float("-inf"))
    target = torch.arange(len(text), device=text.device)
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))


# --------------------------------------------------------------------------- training


@dataclass
class CaptionedMotions:
    """Clips (T_i, 263) raw features with the MiniLM embeddings of their captions (n_i, 384) each."""

    clips: list[np.ndarray]
    caption_embeddings: list[np.ndarray]

    def __post_init__(self) -> None:
        if len(self.clips) != len(self.caption_embeddings):
            raise ArtifactError(f"captioned motions: {len(self.clips)} clips but "
                                f"{len(self.caption_embeddings)} caption sets")
        for index, (clip, emb) in enumerate(zip(self.clips, self.caption_embeddings)):
            if clip.ndim != 2 or clip.shape[1] != FEATURE_DIM or len(clip) == 0:
                raise ArtifactError(f"captioned motions: clip {index} has shape {clip.shape}, expected (T>0, {FEATURE_DIM})")
            if emb.ndim != 2 or len(emb) == 0 or emb.shape[1] != EMBEDDING_DIM:
                raise ArtifactError(f"captioned motions: clip {index} caption embeddings have shape {emb.shape}, "
                                    f"expected (n>0, {EMBEDDING_DIM})")

    @classmethod
    def from_split(cls, split) -> CaptionedMotions:
        """The clips of a :class:`~humandiff.motion.dataset.MotionSplit` read with an embedding file,
        with the MiniLM embeddings of their captions."""
        return cls([split.clip(k) for k in range(len(split))], [split.embeddings[rows] for rows in split.caption_rows])

    def __len__(self) -> int:
        return len(self.clips)

    def sample_captions(self, rng: np.random.Generator) -> np.ndarray:
        """One caption embedding per clip (N, 384), drawn uniformly among the clip's captions."""
        return np.stack([emb[rng.integers(len(emb))] for emb in self.caption_embeddings]).astype(np.float32)


@dataclass(frozen=True)
class RewardTraining:
    """Training options (TMR: AdamW lr 1e-4, batch 32, temperature 0.1, filter threshold 0.8)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    temperature: float = 0.1
    negative_threshold: float = 0.8
    grad_clip: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "lr", "temperature", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"reward training: '{name}' must be > 0, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise ArtifactError("reward training: 'batch_size' must be >= 2 (negatives come from the batch)")
        if not -1.0 <= self.negative_threshold <= 1.0:
            raise ArtifactError(f"reward training: 'negative_threshold' must be in [-1, 1], got {self.negative_threshold}")


@dataclass
class RewardHistory(ContrastiveHistory):
    """Per-epoch curves and the chosen epoch (1-based)."""

    val_top1: list[float] = field(default_factory=list)
    val_top3: list[float] = field(default_factory=list)


def _padded(clips: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    features, lengths = pad_clips(clips)
    return features, torch.arange(features.shape[1])[None, :] < lengths[:, None]


def _collate(data: CaptionedMotions, chosen: np.ndarray, captions: np.ndarray,
             rng: np.random.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """One batch: raw features (B, T, 263), mask (B, T) and caption embeddings (B, 384) from ``captions`` (N, 384)."""
    features, mask = _padded([data.clips[i] for i in chosen])
    return features, mask, torch.from_numpy(captions[chosen])


def _batch_loss(model: RewardModel, features: torch.Tensor, mask: torch.Tensor, caption_batch: torch.Tensor,
                options: RewardTraining) -> torch.Tensor:
    """The filtered InfoNCE of one collated batch."""
    return filtered_info_nce(model.encode_text(caption_batch), model.encode_motion(features, mask), caption_batch,
                             options.temperature, options.negative_threshold)


@torch.no_grad()
def embed_pairs(model: RewardModel, clips: Sequence[np.ndarray], caption_embeddings: np.ndarray,
                batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Unit latents of motions (N, D) and of their captions (N, D), float64."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    motions, texts = [], []
    for start in range(0, len(clips), batch_size):
        features, mask = to_device(_padded(clips[start : start + batch_size]), device)
        captions = torch.from_numpy(caption_embeddings[start : start + batch_size]).to(device)
        motions.append(model.encode_motion(features, mask).double().cpu().numpy())
        texts.append(model.encode_text(captions).double().cpu().numpy())
    model.train(was_training)
    return np.concatenate(motions), np.concatenate(texts)


def retrieval_scores(model: RewardModel, data: CaptionedMotions, rng: np.random.Generator,
                     replications: int = 5, batch: int = R_PRECISION_BATCH) -> dict[str, float]:
    """Text -> motion retrieval in shuffled batches of ``batch`` (ranked by cosine), averaged over
    ``replications`` caption draws, plus the mean reward of matched and of mismatched pairs."""
    if len(data) < batch:
        raise ArtifactError(f"reward retrieval: needs >= {batch} clips, got {len(data)}")
    hits, positive, negative = [], [], []
    for _ in range(replications):
        captions = data.sample_captions(rng)
        motion, text = embed_pairs(model, data.clips, captions)
        order = rng.permutation(len(data))
        for chunk in order[: len(order) // batch * batch].reshape(-1, batch):
            # Unit vectors: ranking by Euclidean distance is ranking by cosine.
            hits.append(r_precision_batch(text[chunk], motion[chunk], 3))
            cosine = text[chunk] @ motion[chunk].T
            positive.append(np.diag(cosine).mean() / 2 + 0.5)
            negative.append((cosine.sum() - np.trace(cosine)) / (batch * (batch - 1)) / 2 + 0.5)
    top = np.mean(hits, axis=0)
    return {"top1": float(top[0]), "top2": float(top[1]), "top3": float(top[2]),
            "matched_reward": float(np.mean(positive)), "mismatched_reward": float(np.mean(negative))}


def contrastive_loss(model: RewardModel, data: CaptionedMotions, options: RewardTraining, batch_size: int = 64) -> float:
    """Mean filtered InfoNCE of ``data`` in fixed batches (index order) with each clip's first caption."""
    first = np.stack([embeddings[0] for embeddings in data.caption_embeddings]).astype(np.float32)
    return mean_batch_loss(model, data, fixed_batches(len(data), batch_size), first, None, _collate,
                           functools.partial(_batch_loss, options=options))


def validate(model: RewardModel, data: CaptionedMotions, options: RewardTraining) -> dict[str, float]:
    """Val loss, and retrieval top-1/top-3 over 2 caption draws (NaN for a split under 32 clips)."""
    loss = contrastive_loss(model, data, options)
    if len(data) >= R_PRECISION_BATCH:
        scores = retrieval_scores(model, data, np.random.default_rng([options.seed, 1]), replications=2)
    else:
        scores = {"top1": float("nan"), "top3": float("nan")}
    return {"loss": loss, "top1": scores["top1"], "top3": scores["top3"]}


def train_reward(model: RewardModel, train: CaptionedMotions, val: CaptionedMotions, options: RewardTraining,
                 progress: bool = True) -> RewardHistory:
    """Train with AdamW and the filtered InfoNCE; keep the epoch with the lowest val loss, scoring val
    retrieval on the way (NaN for a val split under 32 clips); the loop is
    :func:`humandiff.evaluators.contrastive.train_contrastive`, on the model's device."""
    return train_contrastive(model, train, val, options, RewardHistory(), name="reward", optimizer=torch.optim.AdamW,
                             collate=_collate, loss=functools.partial(_batch_loss, options=options),
                             validate=lambda m: validate(m, val, options), progress=progress)


# --------------------------------------------------------------------------- report


def reward_metrics(test: dict[str, float], history: RewardHistory, options: RewardTraining, model: RewardModel,
                   train_clips: int, test_clips: int, replications: int, seconds: float) -> dict:
    """reports/metrics/reward.json: test retrieval (:func:`retrieval_scores` over ``replications``
    caption draws), the chosen epoch, the sizes of the data and the model, and the training time."""
    return {
        "test_top1": test["top1"], "test_top2": test["top2"], "test_top3": test["top3"],
        "test_matched_reward": test["matched_reward"], "test_mismatched_reward": test["mismatched_reward"],
        "chance_top3": 3 / R_PRECISION_BATCH,
        "retrieval": f"text -> motion among shuffled batches of {R_PRECISION_BATCH}, cosine ranking, "
                     f"{replications} caption draws",
        "best_epoch": history.best_epoch, "epochs": options.epochs,
        "val_loss": history.val_loss[history.best_epoch - 1],
        "train_clips": train_clips, "test_clips": test_clips,
        "parameters": parameter_count(model),
        "train_seconds": round(seconds, 1),
    }


def reward_summary(history: RewardHistory, test: dict[str, float]) -> str:
    """One line: the chosen epoch, test top-3 (against chance) and the mean matched / mismatched reward."""
    return (f"reward: best epoch {history.best_epoch}, test top-3 {test['top3']:.3f} "
            f"(chance {3 / R_PRECISION_BATCH:.3f}), matched {test['matched_reward']:.3f} "
            f"vs mismatched {test['mismatched_reward']:.3f}")


# --------------------------------------------------------------------------- checkpoints


def save_reward_model(path: str | Path, model: RewardModel) -> None:
    """``torch.save`` of {"config": dict, "state_dict": tensors}, written atomically."""
    save_checkpoint(path, asdict(model.config), model.state_dict())


def load_reward_model(path: str | Path) -> RewardModel:
    """The reward model saved by :func:`save_reward_model`, in eval mode (``weights_only=True``)."""
    config, state = load_checkpoint(path)
    return restore_state(RewardModel(RewardConfig.from_dict(config)), state, path)
