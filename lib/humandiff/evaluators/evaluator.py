"""The text-to-motion evaluator (Guo et al.'s matching model): motion and text encoders into one space.

Motion encoder: two strided 1-D convolutions (x4 temporal downsampling) over the 259 feature
dims left after dropping the 4 foot contacts, normalised with the evaluator's own mean/std
(``eval_mean``/``eval_std``), then a bidirectional GRU whose final states go through an MLP.
Text encoder: a bidirectional GRU over fixed word-piece vectors (:mod:`humandiff.text.tokens`),
then an MLP. Both land in one Euclidean space where R-precision, MM-Dist, FID, Diversity and
MultiModality are measured (:mod:`humandiff.eval.t2m`).

Training follows Guo et al.'s contrastive matching objective: the margin loss
``d(pos)^2 + relu(margin - d(neg))^2`` on Euclidean distances, here with every other pair of the
batch as a negative (Guo et al. use one shifted pair) and pairs sharing a caption excluded. An
InfoNCE variant on negative distances is available (``loss="info_nce"``; ``infonce``, the old
spelling, is accepted too). The training loop is the one shared with the reward model
(:mod:`humandiff.evaluators.contrastive`).

This model is used only to measure; the SoPo reward is a separate model (:mod:`humandiff.evaluators.tmr`).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from humandiff.eval.t2m import R_PRECISION_BATCH, r_precision_replications
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
from humandiff.motion.hml3d import CONTACTS, FEATURE_DIM
from humandiff.text.tokens import WORD_DIM, TokenTable, minilm_token_table

#: Feature dims the evaluator reads: everything but the 4 foot contacts (the last 4 dims).
EVAL_DIMS = [d for d in range(FEATURE_DIM) if d not in set(range(FEATURE_DIM)[CONTACTS])]
#: Temporal downsampling of the motion encoder (two stride-2 convolutions).
DOWNSAMPLE = 4


@dataclass(frozen=True)
class EvaluatorConfig:
    """Sizes of the evaluator (Guo et al.: 512 conv channels, GRU 1024/512, 512-d embedding)."""

    conv_channels: int = 256
    motion_hidden: int = 256
    text_hidden: int = 256
    embed_dim: int = 256
    word_dim: int = WORD_DIM
    dropout: float = 0.1
    #: Word pieces kept per caption (the tokenisation the text encoder was trained with).
    max_tokens: int = 32

    def __post_init__(self) -> None:
        for name in ("conv_channels", "motion_hidden", "text_hidden", "embed_dim", "word_dim", "max_tokens"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"evaluator config: '{name}' must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ArtifactError(f"evaluator config: 'dropout' must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "EvaluatorConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ArtifactError(f"evaluator config: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**values)


def _head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, out_dim))


def _bigru_final(gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenated last forward and backward hidden states (B, 2H) of a bi-GRU over padded (B, T, H)."""
    packed = pack_padded_sequence(inputs, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
    _, hidden = gru(packed)  # (2, B, H), already in the input's batch order
    return torch.cat([hidden[0], hidden[1]], dim=-1)


class MotionEncoder(nn.Module):
    """Normalised motion without contacts (B, T, 259) and lengths (B,) -> embedding (B, E)."""

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        c = config
        self.conv1 = nn.Sequential(nn.Conv1d(len(EVAL_DIMS), c.conv_channels, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Dropout(c.dropout))
        self.conv2 = nn.Sequential(nn.Conv1d(c.conv_channels, c.conv_channels, 4, 2, 1), nn.LeakyReLU(0.2),
                                   nn.Dropout(c.dropout))
        self.input = nn.Linear(c.conv_channels, c.motion_hidden)
        self.gru = nn.GRU(c.motion_hidden, c.motion_hidden, batch_first=True, bidirectional=True)
        self.output = _head(2 * c.motion_hidden, c.motion_hidden, c.embed_dim)

    def forward(self, motion: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(motion.transpose(1, 2))  # (B, C, T // 2)
        # Zeroing the half-rate steps past each clip's end makes a clip's embedding independent of
        # how long the other clips of its batch are (the second conv would read them).
        half = (torch.arange(hidden.shape[2], device=hidden.device)[None, :]
                < torch.div(lengths, 2, rounding_mode="floor")[:, None])
        hidden = self.conv2(hidden * half[:, None, :]).transpose(1, 2)  # (B, T // 4, C)
        down = torch.div(lengths, DOWNSAMPLE, rounding_mode="floor").clamp(min=1, max=hidden.shape[1])
        return self.output(_bigru_final(self.gru, self.input(hidden), down))


class TextEncoder(nn.Module):
    """Word vectors (B, L, 384) and lengths (B,) -> embedding (B, E)."""

    def __init__(self, config: EvaluatorConfig) -> None:
        super().__init__()
        c = config
        self.input = nn.Linear(c.word_dim, c.text_hidden)
        self.gru = nn.GRU(c.text_hidden, c.text_hidden, batch_first=True, bidirectional=True)
        self.output = _head(2 * c.text_hidden, c.text_hidden, c.embed_dim)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.output(_bigru_final(self.gru, self.input(words), lengths))


class MatchingEvaluator(nn.Module):
    """Guo et al.'s text/motion matching model with its feature normalisation as buffers.

    ``eval_mean``/``eval_std`` (263,) are the evaluator statistics of ``mean_std.npz``: raw
    (denormalised) HumanML3D features go in, normalisation happens here.
    """

    def __init__(self, config: EvaluatorConfig, eval_mean: np.ndarray | None = None,
                 eval_std: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config
        register_statistics(self, eval_mean, eval_std, ("eval_mean", "eval_std"), "eval_mean/eval_std")
        self.motion_encoder = MotionEncoder(config)
        self.text_encoder = TextEncoder(config)

    def prepare_motion(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features (B, T, 263) -> normalised features without contacts (B, T, 259)."""
        if features.ndim != 3 or features.shape[-1] != FEATURE_DIM:
            raise ArtifactError(f"motion features have shape {tuple(features.shape)}, expected (B, T, {FEATURE_DIM})")
        normalised = (features - self.eval_mean) / self.eval_std
        return normalised[..., EVAL_DIMS]

    def encode_motion(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Raw features (B, T, 263), zero-padded after ``lengths`` (B,) -> embeddings (B, E)."""
        if features.shape[1] < DOWNSAMPLE:
            raise ArtifactError(f"motion features have {features.shape[1]} frames, need >= {DOWNSAMPLE}")
        valid = torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None]
        motion = self.prepare_motion(features) * valid[..., None]
        return self.motion_encoder(motion, lengths)

    def encode_text(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Word vectors (B, L, 384) and lengths (B,) -> embeddings (B, E)."""
        if words.ndim != 3 or words.shape[-1] != self.config.word_dim:
            raise ArtifactError(f"word vectors have shape {tuple(words.shape)}, expected (B, L, {self.config.word_dim})")
        return self.text_encoder(words, lengths)

    @torch.no_grad()
    def embed_motions(self, clips: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Embeddings (N, E) float64 of raw clips (T_i, 263), each cropped to a multiple of 4 frames."""
        device = model_device(self)
        was_training = self.training
        self.eval()
        out = []
        for start in range(0, len(clips), batch_size):
            chunk = [clip[: len(clip) // DOWNSAMPLE * DOWNSAMPLE] for clip in clips[start : start + batch_size]]
            features, lengths = pad_clips(chunk)
            out.append(self.encode_motion(features.to(device), lengths.to(device)).double().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out, 0) if out else np.zeros((0, self.config.embed_dim))

    @torch.no_grad()
    def embed_texts(self, table: TokenTable, rows: np.ndarray | Sequence[int], batch_size: int = 256) -> np.ndarray:
        """Embeddings (N, E) float64 of token-table rows (N,)."""
        device = model_device(self)
        was_training = self.training
        self.eval()
        rows = np.asarray(rows, dtype=np.int64)
        out = []
        for start in range(0, len(rows), batch_size):
            words, lengths = table.embed(rows[start : start + batch_size])
            out.append(self.encode_text(words.to(device), lengths.to(device)).double().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out, 0) if out else np.zeros((0, self.config.embed_dim))


# --------------------------------------------------------------------------- batches


def random_crop(clip: np.ndarray, rng: np.random.Generator, unit: int = DOWNSAMPLE) -> np.ndarray:
    """Guo et al.'s loader crop of a clip (T, D): a multiple of ``unit`` frames (one unit shorter with
    probability 1/3) at a uniformly random start."""
    length = len(clip) // unit * unit
    if rng.random() < 1.0 / 3.0 and length - unit >= unit:
        length -= unit
    length = max(length, min(unit, len(clip)))
    start = int(rng.integers(0, len(clip) - length + 1))
    return clip[start : start + length]


@dataclass
class CaptionedClips:
    """Clips in memory with their captions as token-table rows.

    clips: raw HumanML3D features (T_i, 263) float32; caption_rows: per clip, its captions' rows (n_i >= 1,).
    """

    clips: list[np.ndarray]
    caption_rows: list[np.ndarray]

    def __post_init__(self) -> None:
        if len(self.clips) != len(self.caption_rows):
            raise ArtifactError(f"captioned clips: {len(self.clips)} clips but {len(self.caption_rows)} caption lists")
        for index, (clip, rows) in enumerate(zip(self.clips, self.caption_rows)):
            if clip.ndim != 2 or clip.shape[1] != FEATURE_DIM or len(clip) < DOWNSAMPLE:
                raise ArtifactError(f"captioned clips: clip {index} has shape {clip.shape}, "
                                    f"expected (T>={DOWNSAMPLE}, {FEATURE_DIM})")
            if len(rows) == 0:
                raise ArtifactError(f"captioned clips: clip {index} has no caption")

    @classmethod
    def from_split(cls, split, table: TokenTable) -> CaptionedClips:
        """The clips of a :class:`~humandiff.motion.dataset.MotionSplit` with their captions as ``table``'s rows."""
        return cls([split.clip(k) for k in range(len(split))], [table.rows(split.captions(k)) for k in range(len(split))])

    def __len__(self) -> int:
        return len(self.clips)

    def sample_captions(self, rng: np.random.Generator) -> np.ndarray:
        """One caption row per clip (N,), drawn uniformly among the clip's captions."""
        return np.array([rows[rng.integers(len(rows))] for rows in self.caption_rows], dtype=np.int64)


def splits_token_table(splits: Sequence, max_tokens: int) -> TokenTable:
    """The MiniLM token table of every caption of ``splits`` (:class:`~humandiff.motion.dataset.MotionSplit`),
    in split, clip and caption order."""
    captions = [c for split in splits for k in range(len(split)) for c in split.captions(k)]
    return minilm_token_table(captions, max_tokens)


# --------------------------------------------------------------------------- losses


def euclidean_distances(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pairwise Euclidean distances (N, M) of (N, E) and (M, E), with a finite gradient at 0."""
    squared = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    return squared.clamp(min=eps).sqrt()


def _negative_mask(caption_rows: torch.Tensor) -> torch.Tensor:
    """(B, B) True where pair (i, j) is a valid negative: different captions (hence j != i)."""
    return caption_rows[:, None] != caption_rows[None, :]


def margin_matching_loss(text: torch.Tensor, motion: torch.Tensor, caption_rows: torch.Tensor,
                         margin: float = 10.0) -> torch.Tensor:
    """Guo et al.'s contrastive loss on (B, E) embeddings: mean d(t_i, m_i)^2 over positives plus
    mean relu(margin - d(t_i, m_j))^2 over all pairs whose captions (B,) differ."""
    distances = euclidean_distances(text, motion)
    positive = distances.diagonal().pow(2).mean()
    negatives = _negative_mask(caption_rows)
    if not negatives.any():
        return positive
    negative = torch.relu(margin - distances[negatives]).pow(2).mean()
    return positive + negative


def info_nce_matching_loss(text: torch.Tensor, motion: torch.Tensor, caption_rows: torch.Tensor,
                           temperature: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE on logits -d(t_i, m_j) / temperature over (B, E) embeddings; pairs with
    the same caption (other than the diagonal) are left out of the denominators."""
    logits = -euclidean_distances(text, motion) / temperature
    keep = _negative_mask(caption_rows) | torch.eye(len(text), dtype=torch.bool, device=text.device)
    logits = logits.masked_fill(~keep, float("-inf"))
    target = torch.arange(len(text), device=text.device)
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))


# --------------------------------------------------------------------------- training


#: Accepted values of ``EvaluatorTraining.loss``: ``infonce`` is the old spelling of ``info_nce``.
LOSSES = ("margin", "info_nce", "infonce")


@dataclass(frozen=True)
class EvaluatorTraining:
    """Training options (Guo et al.: Adam lr 1e-4, batch 32, margin 10, one shifted negative)."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "margin"
    margin: float = 10.0
    temperature: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0
    val_replications: int = 5

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ArtifactError(f"evaluator training: 'loss' must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "lr", "margin", "temperature", "grad_clip", "val_replications"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"evaluator training: '{name}' must be > 0, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise ArtifactError("evaluator training: 'batch_size' must be >= 2 (negatives come from the batch)")


@dataclass
class EvaluatorHistory(ContrastiveHistory):
    """Per-epoch curves (val R-precision NaN for a val split under 32 clips) and the chosen epoch (1-based)."""

    val_top1: list[float] = field(default_factory=list)
    val_top2: list[float] = field(default_factory=list)
    val_top3: list[float] = field(default_factory=list)
    val_mm_dist: list[float] = field(default_factory=list)


def matching_loss(model: MatchingEvaluator, features: torch.Tensor, lengths: torch.Tensor, words: torch.Tensor,
                  word_lengths: torch.Tensor, caption_rows: torch.Tensor, options: EvaluatorTraining) -> torch.Tensor:
    """The configured contrastive loss of one batch: raw features (B, T, 263), word vectors (B, L, 384)."""
    text = model.encode_text(words, word_lengths)
    motion = model.encode_motion(features, lengths)
    if options.loss == "margin":
        return margin_matching_loss(text, motion, caption_rows, options.margin)
    return info_nce_matching_loss(text, motion, caption_rows, options.temperature)


def _collate(data: CaptionedClips, chosen: np.ndarray, captions: np.ndarray, rng: np.random.Generator, *,
             table: TokenTable, crop: bool) -> tuple[torch.Tensor, ...]:
    """One batch: raw features (B, T, 263), lengths (B,), word vectors (B, L, 384), word lengths (B,),
    caption rows (B,). ``crop``: Guo et al.'s random crops, else each clip's leading multiple of 4 frames."""
    clips = [random_crop(data.clips[i], rng) if crop else data.clips[i][: len(data.clips[i]) // DOWNSAMPLE * DOWNSAMPLE]
             for i in chosen]
    features, lengths = pad_clips(clips)
    words, word_lengths = table.embed(captions[chosen])
    return features, lengths, words, word_lengths, torch.from_numpy(captions[chosen])


def val_batch(clips: int) -> int:
    """The val split's R-precision batch: the protocol's 32, or all ``clips`` of a smaller split (a
    smaller batch makes retrieval easier: chance top-3 is 3 / batch, and the report says so)."""
    return min(R_PRECISION_BATCH, clips)


def validate(model: MatchingEvaluator, data: CaptionedClips, table: TokenTable, options: EvaluatorTraining,
             ) -> dict[str, float]:
    """Val loss, and R-precision top-1/2/3 and MM-Dist (``val_replications`` draws of captions) in
    batches of :func:`val_batch` clips: 32, or the whole split when it is smaller. Leaves the model
    in train mode."""
    model.eval()
    rng = np.random.default_rng([options.seed, 1])
    captions = data.sample_captions(rng)
    loss = mean_batch_loss(model, data, fixed_batches(len(data), options.batch_size), captions, rng,
                           functools.partial(_collate, table=table, crop=False),
                           functools.partial(matching_loss, options=options))
    motion = model.embed_motions(data.clips)
    texts = [model.embed_texts(table, data.sample_captions(rng)) for _ in range(options.val_replications)]
    summary = r_precision_replications(texts, motion, rng, val_batch(len(data)))
    model.train()
    return {"loss": loss, **summary}


def train_evaluator(model: MatchingEvaluator, train: CaptionedClips, val: CaptionedClips, table: TokenTable,
                    options: EvaluatorTraining, progress: bool = True) -> EvaluatorHistory:
    """Train with Adam; keep the epoch with the lowest val loss (as Guo et al.), scoring val R-precision
    on the way (:func:`humandiff.evaluators.contrastive.train_contrastive`, on the model's device).
    Returns the curves; ``model`` ends with the chosen weights, in eval mode."""
    return train_contrastive(model, train, val, options, EvaluatorHistory(), name="evaluator",
                             optimizer=torch.optim.Adam, collate=functools.partial(_collate, table=table, crop=True),
                             loss=functools.partial(matching_loss, options=options),
                             validate=lambda m: validate(m, val, table, options), progress=progress)


# --------------------------------------------------------------------------- report


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: not measured -> null."""
    return float(value) if np.isfinite(value) else None


def evaluator_metrics(history: EvaluatorHistory, options: EvaluatorTraining, model: MatchingEvaluator,
                      table: TokenTable, train_clips: int, val_clips: int, seconds: float) -> dict:
    """reports/metrics/evaluator.json: the chosen epoch's val loss and R-precision / MM-Dist (in
    batches of :func:`val_batch` ``(val_clips)``; ``chance_top3`` = 3 / batch), the sizes of the data
    and the model, and the training time."""
    best = history.best_epoch - 1
    return {
        "loss": options.loss,
        "best_epoch": history.best_epoch,
        "epochs": options.epochs,
        "val_loss": history.val_loss[best],
        **{f"val_{name}": finite_or_none(getattr(history, f"val_{name}")[best])
           for name in ("top1", "top2", "top3", "mm_dist")},
        "chance_top3": 3 / val_batch(val_clips),
        "train_clips": train_clips,
        "val_clips": val_clips,
        "parameters": parameter_count(model),
        "vocabulary": int(len(table.vectors) - 1),
        "train_seconds": round(seconds, 1),
    }


def evaluator_summary(history: EvaluatorHistory, val_clips: int) -> str:
    """One line: the chosen epoch, its val loss, top-3 (against chance) and MM-Dist, and the batch
    they were measured in when the val split is smaller than the protocol's 32."""
    best = history.best_epoch - 1
    batch = val_batch(val_clips)
    smaller = "" if batch == R_PRECISION_BATCH else (
        f" (in one batch of all {batch} val clips: the split is smaller than the protocol's {R_PRECISION_BATCH})")
    return (f"evaluator: best epoch {history.best_epoch} (val loss {history.val_loss[best]:.4f}), "
            f"val top-3 {history.val_top3[best]:.3f} (chance {3 / batch:.3f}), MM-Dist {history.val_mm_dist[best]:.3f}"
            + smaller)


# --------------------------------------------------------------------------- checkpoints


def save_evaluator(path: str | Path, model: MatchingEvaluator) -> None:
    """``torch.save`` of {"config": dict, "state_dict": tensors}, written atomically."""
    save_checkpoint(path, asdict(model.config), model.state_dict())


def load_evaluator(path: str | Path) -> MatchingEvaluator:
    """The evaluator saved by :func:`save_evaluator`, in eval mode (``weights_only=True``)."""
    config, state = load_checkpoint(path)
    return restore_state(MatchingEvaluator(EvaluatorConfig.from_dict(config)), state, path)
