"""A text-to-motion diffusion prior in the style of MDM (Tevet et al., 2023).

A transformer encoder over the frames of normalised 263-d HumanML3D features. The denoising
timestep and the caption's 384-d sentence embedding are embedded, summed and enter as one extra
token in front of the frames; sinusoidal positions are added to every token; padded frames are
hidden from attention by a key padding mask. The network predicts the clean motion ``x0`` (as MDM;
``MDMConfig.prediction`` may make it the noise instead, which training and sampling both read).

``frames_per_token = P > 1`` (not in MDM, which uses 1) lets one token carry P consecutive frames:
attention and feed-forward cost drop about P-fold, which is what makes a useful prior trainable
in minutes on two CPU cores (HumanML3D already crops in units of 4 frames, and 4x temporal
downsampling is what token-based text-to-motion models use on this data). Tokens overlap: a
strided convolution (window 2P, stride P) reads each token's P frames plus P/2 on either side,
and a transposed one writes 2P frames per token, overlap-added, so neighbouring tokens blend at
their boundary, where plain per-token linear maps leave a visible step every P frames.
Classifier-free guidance: training zeroes the caption embedding of a share of the batch
(``cond_drop``), so the zero embedding is the "no text" condition at sampling time.

Two departures from MDM, both options (the trials behind each are in docs/prior.md): captions
are standardised by the training captions' per-dimension mean and std (sentence embeddings share
one large common direction, so the raw input barely tells captions apart), and ``conditioning =
"adaln"`` adds DiT's adaptive layer norm (adaLN-Zero), which puts the condition into every block
instead of one token the frames must learn to attend to. Two more are training and input
options: :func:`training_timesteps` can draw a share of each batch from the top noise levels,
where a long redundant clip's content is decided, and ``clause_slots`` adds one embedding per
action clause of the caption after the sentence embedding (:mod:`humandiff.text.clauses`).
A fifth, ``word_tokens``, lets every adaLN block read the caption's word pieces by
cross-attention (one encoder layer over the words, keys and values shared by all blocks), so the
order and the objects of several actions need not survive mean pooling.

Besides the network this module holds the training loss (per sample, for reuse by preference
fine-tuning; the denoising term and the timesteps are the diffusion core's,
:mod:`humandiff.diffusion.loss`), optional geometric losses on joints recovered with
``recover_from_ric``, a sampler (DDIM + classifier-free guidance over the shared diffusion core) and
load/save helpers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from humandiff.diffusion import (
    Denoiser,
    NoiseSchedule,
    Prediction,
    TimestepSampler,
    classifier_free_guidance,
    ddim_sample,
    make_schedule,
    masked_mean,
    prediction_loss,
    q_sample,
    x0_from_prediction,
)
from humandiff.io.artifacts import ArtifactError, check_finite, load_torch, save_json, save_torch
from humandiff.motion.hml3d import recover_from_ric

#: Foot joints whose contact labels sit in features[259:263] (left 7, 10; right 8, 11).
FOOT_CONTACT_JOINTS = (7, 10, 8, 11)
CONTACT_SLICE = slice(259, 263)
#: How the condition (timestep + caption) enters the transformer: "token", MDM's one extra input
#: token; "adaln", that token plus DiT's adaptive layer norm (adaLN-Zero) in every block.
CONDITIONING = ("token", "adaln")
#: What the network may predict: what the core's samplers take (MDM: "x0").
PREDICTION: tuple[str, ...] = get_args(Prediction)


@dataclass(frozen=True)
class MDMConfig:
    """Architecture and diffusion settings; defaults are the MDM paper's (FACTS.md section 4)."""

    feature_dim: int = 263
    text_dim: int = 384
    latent_dim: int = 512
    num_layers: int = 8
    num_heads: int = 4
    ff_dim: int = 1024
    dropout: float = 0.1
    frames_per_token: int = 1
    diffusion_steps: int = 1000
    schedule: str = "cosine"
    cond_drop: float = 0.1
    conditioning: str = "token"
    #: action clauses embedded after the sentence (humandiff.text.clauses); 0 is MDM's sentence alone
    clause_slots: int = 0
    #: caption word pieces the frames read by cross-attention in every block (adaln only); 0: none, as MDM
    word_tokens: int = 0
    #: each frame token also carries its place in its clip (k / valid tokens, 0..1); False: the absolute index
    #: alone, as MDM. A several-action caption's clauses fall at fractions of the clip, not at fixed frames
    clip_progress: bool = False
    #: what the network predicts, read by training and sampling: "x0", the clean motion (MDM), or "eps", the noise
    prediction: str = "x0"

    @property
    def summary_dim(self) -> int:
        """Size of the pooled part of the condition: the sentence embedding and one embedding per clause slot."""
        return self.text_dim * (1 + self.clause_slots)

    @property
    def condition_dim(self) -> int:
        """Size of the caption condition: the pooled part followed by ``word_tokens`` word-piece vectors."""
        return self.summary_dim + self.text_dim * self.word_tokens

    def __post_init__(self) -> None:
        for name in ("feature_dim", "text_dim", "latent_dim", "num_layers", "num_heads", "ff_dim", "frames_per_token",
                     "diffusion_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"MDMConfig: parameter '{name}' must be a positive integer, got {value!r}")
        if not isinstance(self.clause_slots, int) or isinstance(self.clause_slots, bool):
            raise ArtifactError(f"MDMConfig: parameter 'clause_slots' must be an integer, got {self.clause_slots!r}")
        if self.clause_slots < 0:
            raise ArtifactError(f"MDMConfig: parameter 'clause_slots' must be >= 0, got {self.clause_slots!r}")
        if self.conditioning not in CONDITIONING:
            raise ArtifactError(f"MDMConfig: parameter 'conditioning' must be one of {', '.join(CONDITIONING)}, "
                                f"got {self.conditioning!r}")
        if not isinstance(self.word_tokens, int) or isinstance(self.word_tokens, bool) or self.word_tokens < 0 \
                or self.word_tokens == 1:
            # one slot would hold the [CLS] marker alone (humandiff.text.clauses.word_slots)
            raise ArtifactError(f"MDMConfig: parameter 'word_tokens' must be 0 or >= 2, got {self.word_tokens!r}")
        if self.word_tokens and self.conditioning != "adaln":
            raise ArtifactError("MDMConfig: parameter 'word_tokens' > 0 needs conditioning 'adaln' "
                                "(the cross-attention lives in its blocks)")
        if self.latent_dim % self.num_heads or self.latent_dim % 2:
            raise ArtifactError(
                f"MDMConfig: parameter 'latent_dim'={self.latent_dim} must be even and divisible by 'num_heads'={self.num_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ArtifactError(f"MDMConfig: parameter 'dropout' must lie in [0, 1), got {self.dropout}")
        if not 0.0 <= self.cond_drop <= 1.0:
            raise ArtifactError(f"MDMConfig: parameter 'cond_drop' must lie in [0, 1], got {self.cond_drop}")
        if self.frames_per_token > 1 and self.frames_per_token % 2:
            raise ArtifactError(f"MDMConfig: parameter 'frames_per_token' must be 1 or even, got {self.frames_per_token}")
        if self.schedule not in ("cosine", "linear"):
            raise ArtifactError(f"MDMConfig: parameter 'schedule' must be 'cosine' or 'linear', got {self.schedule!r}")
        if self.prediction not in PREDICTION:
            raise ArtifactError(f"MDMConfig: parameter 'prediction' must be one of {', '.join(PREDICTION)}, "
                                f"got {self.prediction!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], ignore_unknown: bool = False) -> "MDMConfig":
        """Config from a mapping (e.g. config.json); unknown keys are an error unless ``ignore_unknown``,
        absent ones take their defaults (a config.json older than a field loads as before it)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown and not ignore_unknown:
            raise ArtifactError(f"MDMConfig: unknown parameter(s) {', '.join(unknown)}")
        return cls(**{key: value for key, value in values.items() if key in known})

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> "MDMConfig":
        """Config from a ``train_mdm`` params section: its keys that name config fields; the others
        (training settings) are left to the training loop."""
        return cls.from_dict(section, ignore_unknown=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def noise_schedule(self) -> NoiseSchedule:
        return make_schedule(self.schedule, self.diffusion_steps)


def sinusoidal_embedding(positions: Tensor, dim: int) -> Tensor:
    """Transformer sinusoids (..., dim) of integer or real ``positions`` (...): sin on even, cos on odd dims."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=positions.device) * 2.0 / dim)
    angles = positions.to(torch.float32)[..., None] * frequencies
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(-2)


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by the condition (DiT's adaLN-Zero).

    ``(x (B, L, d), cond (B, d), padding (B, L) True on padded tokens or None) -> (B, L, d)``.
    The condition sets a shift and scale for each norm and a gate on each residual branch; the
    modulation starts at zero, so every block starts as the identity. Unlike a condition token,
    which the frames must learn to attend to, this puts the caption into every layer directly.
    """

    def __init__(self, d: int, num_heads: int, ff_dim: int, dropout: float, cross_attention: bool = False) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm_attention = nn.LayerNorm(d, elementwise_affine=False)
        self.qkv = nn.Linear(d, 3 * d)
        self.attention_out = nn.Linear(d, d)
        self.cross: nn.ModuleDict | None = None
        if cross_attention:
            self.cross = nn.ModuleDict({"norm": nn.LayerNorm(d), "q": nn.Linear(d, d), "out": nn.Linear(d, d)})
            # zero output: the block starts as it would be without the words
            nn.init.zeros_(self.cross["out"].weight)
            nn.init.zeros_(self.cross["out"].bias)
        self.norm_ff = nn.LayerNorm(d, elementwise_affine=False)
        self.ff = nn.Sequential(nn.Linear(d, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d))
        self.modulation = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, cond: Tensor, padding: Tensor | None, words: Tensor | None = None,
                word_padding: Tensor | None = None) -> Tensor:
        """``words`` (2, B, heads, W, d / heads): the caption words' keys and values, read by cross-attention when
        the block has it; ``word_padding`` (B, W) True on absent words."""
        B, L, d = x.shape
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = self.modulation(F.silu(cond))[:, None].chunk(6, -1)
        h = self.norm_attention(x) * (1 + scale_a) + shift_a
        q, k, v = self.qkv(h).reshape(B, L, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attend = None if padding is None else ~padding[:, None, None, :]
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0)
        x = x + gate_a * F.dropout(self.attention_out(h.transpose(1, 2).reshape(B, L, d)), self.dropout, self.training)
        if self.cross is not None:
            if words is None:
                raise ArtifactError("AdaLNBlock: built with cross-attention but called without words")
            q = self.cross["q"](self.cross["norm"](x)).reshape(B, L, self.num_heads, d // self.num_heads).transpose(1, 2)
            k, v = words
            attend = None if word_padding is None else ~word_padding[:, None, None, :]
            h = F.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0)
            x = x + F.dropout(self.cross["out"](h.transpose(1, 2).reshape(B, L, d)), self.dropout, self.training)
        h = self.norm_ff(x) * (1 + scale_f) + shift_f
        return x + gate_f * F.dropout(self.ff(h), self.dropout, self.training)


class MotionDiffusionModel(nn.Module):
    """MDM-style denoiser: ``(x_t (B, T, 263), t (B,), text_emb (B, C), mask (B, T)) -> x0_hat (B, T, 263)``
    (or ``eps_hat`` with ``config.prediction = "eps"``).

    ``C = config.condition_dim``: the 384-d sentence embedding, followed by ``clause_slots``
    clause embeddings when the config has them (:mod:`humandiff.text.clauses`), then ``word_tokens``
    384-d word-piece vectors (zeros after the caption's end) when it has those.

    ``mask`` is True on real frames (all frames when ``None``); outputs on padded frames are 0
    and valid frames never attend to padded ones, so padding cannot change them. ``text_emb =
    None`` (or zeros) is the unconditional model. With ``frames_per_token = P``, token k covers
    frames ``[kP, (k+1)P)`` and overlaps P/2 frames into each neighbour; padded frames are zeroed
    on input and padded tokens on output, so a clip's frames come out the same whatever padding
    surrounds it.
    """

    def __init__(self, config: MDMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.latent_dim
        P = config.frames_per_token
        if P == 1:
            self.input_proj: nn.Module = nn.Linear(config.feature_dim, d)
        else:
            self.input_proj = nn.Conv1d(config.feature_dim, d, kernel_size=2 * P, stride=P, padding=P // 2)
        self.text_proj = nn.Linear(config.summary_dim, d)
        # caption statistics of the training corpus (identity until set_text_statistics): sentence
        # embeddings share a large common direction, so standardising them makes the part that
        # tells captions apart the input; the "no text" zero vector maps to a fixed point of its own
        self.register_buffer("text_mean", torch.zeros(config.summary_dim))
        self.register_buffer("text_std", torch.ones(config.summary_dim))
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        if config.clip_progress:
            # zero-initialised: training starts from the absolute-position model and adds what helps
            self.progress_proj = nn.Linear(d, d)
            nn.init.zeros_(self.progress_proj.weight)
            nn.init.zeros_(self.progress_proj.bias)
        if config.word_tokens:
            # word pieces in context: one encoder layer over the caption's words, plus a learned "no
            # word" entry that every frame can always attend to (a dropped caption has no words); one
            # set of keys and values serves every block, which keeps the words' cost near one layer's
            self.word_proj = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, d))
            self.word_null = nn.Parameter(torch.zeros(1, 1, d))
            self.word_encoder = nn.TransformerEncoderLayer(d, config.num_heads, config.ff_dim, config.dropout,
                                                           activation="gelu", batch_first=True, norm_first=True)
            self.word_kv = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d))
        if config.conditioning == "adaln":
            self.blocks = nn.ModuleList(AdaLNBlock(d, config.num_heads, config.ff_dim, config.dropout,
                                                   cross_attention=config.word_tokens > 0)
                                        for _ in range(config.num_layers))
            self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
            self.final_modulation = nn.Linear(d, 2 * d)
            nn.init.zeros_(self.final_modulation.weight)
            nn.init.zeros_(self.final_modulation.bias)
        else:
            layer = nn.TransformerEncoderLayer(d, config.num_heads, config.ff_dim, config.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            # pre-norm layers with a final norm: stable without a long warm-up, which short CPU runs lack
            self.encoder = nn.TransformerEncoder(layer, config.num_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        if P == 1:
            self.output_proj: nn.Module = nn.Linear(d, config.feature_dim)
        else:
            self.output_proj = nn.ConvTranspose1d(d, config.feature_dim, kernel_size=2 * P, stride=P, padding=P // 2)

    def condition(self, t: Tensor, text_emb: Tensor | None) -> Tensor:
        """The condition token (B, d): embedded timestep plus projected caption embedding."""
        token = self.time_mlp(sinusoidal_embedding(t, self.config.latent_dim).to(self.text_proj.weight.dtype))
        if text_emb is None:
            text_emb = torch.zeros(t.shape[0], self.config.summary_dim, dtype=token.dtype, device=token.device)
        summary = text_emb[:, : self.config.summary_dim]
        return token + self.text_proj((summary - self.text_mean) / self.text_std)

    def words(self, text_emb: Tensor | None, batch_size: int) -> tuple[Tensor, Tensor]:
        """The caption words' keys and values (2, B, heads, 1 + W', d / heads) and padding (B, 1 + W'), True on absent words.

        Entry 0 is the learned "no word" entry; word ``w`` is the 384-d vector in slot ``w`` of the
        condition after the pooled part, absent where that slot is all zeros (padding, dropped
        caption). ``W'`` is the longest caption of the batch: the slots after it are absent everywhere.
        """
        W, dim, d, heads = self.config.word_tokens, self.config.text_dim, self.config.latent_dim, self.config.num_heads
        if text_emb is None:
            vectors = self.word_null.new_zeros(batch_size, 0, dim)
        else:
            vectors = text_emb[:, self.config.summary_dim :].reshape(batch_size, W, dim).to(self.word_null.dtype)
            present = (vectors.abs().sum(-1) > 0).any(0).nonzero()
            vectors = vectors[:, : int(present.max()) + 1 if len(present) else 0]
        absent = vectors.abs().sum(-1) == 0
        positions = sinusoidal_embedding(torch.arange(vectors.shape[1], device=vectors.device), d).to(vectors.dtype)
        hidden = torch.cat([self.word_null.expand(batch_size, 1, -1), self.word_proj(vectors) + positions], 1)
        padding = torch.cat([absent.new_zeros(batch_size, 1), absent], 1)
        hidden = self.word_encoder(hidden, src_key_padding_mask=padding)
        keys_values = self.word_kv(hidden).reshape(batch_size, hidden.shape[1], 2, heads, d // heads)
        return keys_values.permute(2, 0, 3, 1, 4), padding

    @torch.no_grad()
    def set_text_statistics(self, embeddings: Tensor) -> None:
        """Standardise captions by the per-dimension mean and std of the pooled part of ``embeddings`` (N, condition_dim)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.config.condition_dim or len(embeddings) < 2:
            raise ArtifactError(f"set_text_statistics: embeddings must have shape (N >= 2, {self.config.condition_dim}), "
                                f"got {tuple(embeddings.shape)}")
        summary = embeddings[:, : self.config.summary_dim].float()
        self.text_mean.copy_(summary.mean(0))
        self.text_std.copy_(summary.std(0).clamp(min=1e-4))

    def forward(self, x_t: Tensor, t: Tensor, text_emb: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        B, T, feature_dim = x_t.shape
        if feature_dim != self.config.feature_dim:
            raise ArtifactError(f"MotionDiffusionModel: x_t has {feature_dim} features, expected {self.config.feature_dim}")
        if t.shape != (B,):
            raise ArtifactError(f"MotionDiffusionModel: t has shape {tuple(t.shape)}, expected ({B},)")
        if text_emb is not None and text_emb.shape != (B, self.config.condition_dim):
            raise ArtifactError(f"MotionDiffusionModel: text_emb has shape {tuple(text_emb.shape)}, "
                                f"expected ({B}, {self.config.condition_dim})")
        if mask is not None and mask.shape != (B, T):
            raise ArtifactError(f"MotionDiffusionModel: mask has shape {tuple(mask.shape)}, expected ({B}, {T})")
        P = self.config.frames_per_token
        n_tokens = -(-T // P)
        frames = x_t if mask is None else x_t * mask[..., None].to(x_t.dtype)
        frames = F.pad(frames, (0, 0, 0, n_tokens * P - T))
        embedded = self.input_proj(frames) if P == 1 else self.input_proj(frames.transpose(1, 2)).transpose(1, 2)
        cond = self.condition(t, text_emb)
        tokens = torch.cat([cond[:, None], embedded], 1)
        tokens = tokens + sinusoidal_embedding(torch.arange(n_tokens + 1, device=x_t.device), self.config.latent_dim).to(tokens.dtype)
        padding, token_valid = None, None
        if mask is not None:
            token_valid = F.pad(mask.bool(), (0, n_tokens * P - T)).reshape(B, n_tokens, P).any(-1)
            padding = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=x_t.device), ~token_valid], 1)
        if self.config.clip_progress:
            tokens = torch.cat([tokens[:, :1], tokens[:, 1:] + self.progress(token_valid, B, n_tokens).to(tokens.dtype)], 1)
        words = self.words(text_emb, B) if self.config.word_tokens else None
        hidden = self.transform(tokens, cond, padding, words)[:, 1:]
        if P == 1:
            out = self.output_proj(hidden)
        else:
            if token_valid is not None:
                # a padded token must add nothing to the real frames it overlaps
                hidden = hidden * token_valid[..., None].to(hidden.dtype)
            out = self.output_proj(hidden.transpose(1, 2)).transpose(1, 2)[:, :T]
        return out if mask is None else out * mask[..., None].to(out.dtype)

    def progress(self, token_valid: Tensor | None, batch_size: int, n_tokens: int) -> Tensor:
        """Each frame token's place in its clip (B, n_tokens, d): sinusoids of k / (valid tokens), scaled to
        0..100, through ``progress_proj``; ``token_valid`` (B, n_tokens) True on real tokens (None: all)."""
        device = self.progress_proj.weight.device
        if token_valid is None:
            valid_tokens = torch.full((batch_size, 1), float(n_tokens), device=device)
        else:
            valid_tokens = token_valid.sum(1, keepdim=True).to(torch.float32).clamp(min=1)
        place = torch.arange(n_tokens, device=device, dtype=torch.float32)[None] / valid_tokens
        return self.progress_proj(sinusoidal_embedding(place * 100.0, self.config.latent_dim).to(self.progress_proj.weight.dtype))

    def transform(self, tokens: Tensor, cond: Tensor, padding: Tensor | None,
                  words: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The transformer over ``tokens`` (B, L, d) with condition ``cond`` (B, d); ``padding`` (B, L) True on
        pads; ``words``: :meth:`words`' output, for the blocks' cross-attention."""
        if self.config.conditioning == "token":
            return self.encoder(tokens, src_key_padding_mask=padding)
        word_states, word_padding = words if words is not None else (None, None)
        for block in self.blocks:
            tokens = block(tokens, cond, padding, word_states, word_padding)
        shift, scale = self.final_modulation(F.silu(cond))[:, None].chunk(2, -1)
        return self.final_norm(tokens) * (1 + scale) + shift


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Losses


@dataclass(frozen=True)
class GeometryWeights:
    """Weights of MDM's optional geometric losses on joints recovered from denormalised features.

    ``joints``: squared joint position error; ``velocity``: squared error of joint velocities;
    ``foot_contact``: squared velocity of the predicted feet on frames where the real motion's
    contact labels say the foot is planted. ``mean``/``std`` (263,) undo the normalisation.

    ``signal_weighted`` (not in MDM, which weighs every level alike) scales each sample's geometric
    losses by alpha_bar_t, the share of signal in its x_t. Why: at the top levels, where a sample's
    content is decided, the clean estimate is a blur of the motions the caption allows, and a foot
    loss there pulls towards standing still instead of towards the caption; contact is shaped at
    the low levels, which keep their full weight.
    """

    mean: Tensor
    std: Tensor
    joints: float = 0.0
    velocity: float = 0.0
    foot_contact: float = 0.0
    signal_weighted: bool = False

    @property
    def active(self) -> bool:
        return self.joints > 0 or self.velocity > 0 or self.foot_contact > 0


def geometry_losses(pred: Tensor, target: Tensor, mask: Tensor, weights: GeometryWeights) -> dict[str, Tensor]:
    """Per-sample geometric losses (B,) for normalised features ``pred``/``target`` (B, T, 263)."""
    mean, std = weights.mean.to(pred), weights.std.to(pred)
    joints_pred = recover_from_ric(pred * std + mean)
    joints_true = recover_from_ric(target * std + mean)
    pair_mask = mask[:, 1:] & mask[:, :-1]
    losses: dict[str, Tensor] = {}
    if weights.joints > 0:
        losses["joints"] = masked_mean((joints_pred - joints_true).square(), mask)
    if weights.velocity > 0:
        velocity_error = joints_pred.diff(dim=1) - joints_true.diff(dim=1)
        losses["velocity"] = masked_mean(velocity_error.square(), pair_mask)
    if weights.foot_contact > 0:
        contact = ((target[..., CONTACT_SLICE] * std[CONTACT_SLICE] + mean[CONTACT_SLICE]) > 0.5)[:, :-1]
        foot_velocity = joints_pred[:, :, list(FOOT_CONTACT_JOINTS)].diff(dim=1)
        planted = foot_velocity.square() * contact[..., None].to(pred.dtype)
        losses["foot_contact"] = masked_mean(planted, pair_mask)
    return losses


def denoising_loss(
    model: Callable[..., Tensor],
    schedule: NoiseSchedule,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    *,
    text_emb: Tensor | None,
    mask: Tensor,
    geometry: GeometryWeights | None = None,
    prediction: Prediction = MDMConfig.prediction,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-sample loss (B,) of the denoiser on ``x0`` (B, T, 263) at timesteps ``t`` (B,).

    ``prediction`` is what the model predicts (its config's). The core's denoising loss
    (:func:`humandiff.diffusion.prediction_loss`, a mean squared error over real frames) plus the
    weighted geometric losses of the clean estimate; returns the total and its parts (each (B,)).
    ``noise`` (B, T, 263) makes it deterministic, so a reference and a fine-tuned model can be
    scored on the same draw (preference fine-tuning). With ``"eps"`` the clean estimate divides by
    sqrt(alpha_bar_t), so the geometric losses of the top levels are loud unless ``signal_weighted``.
    """
    x_t = q_sample(schedule, x0, t, noise)
    pred = model(x_t, t, text_emb=text_emb, mask=mask).float()
    parts = {"mse": prediction_loss(schedule, pred, x0, noise, t, prediction, mask=mask)}
    total = parts["mse"]
    if geometry is not None and geometry.active:
        level_weight = schedule.alphas_cumprod.to(pred.device)[t].float() if geometry.signal_weighted else 1.0
        x0_hat = x0_from_prediction(schedule, x_t, t, pred, prediction)
        for name, value in geometry_losses(x0_hat, x0, mask, geometry).items():
            parts[name] = value
            total = total + getattr(geometry, name) * level_weight * value
    return total, parts


def training_timesteps(
    schedule: NoiseSchedule,
    batch_size: int,
    generator: torch.Generator,
    high_noise_share: float = 0.0,
    high_noise_fraction: float = 0.1,
) -> Tensor:
    """Training timesteps (B,) int64 of the core's :class:`humandiff.diffusion.TimestepSampler`: uniform
    in [0, T), except a ``high_noise_share`` of the batch from the top ``high_noise_fraction`` of the levels.

    Why here: a clip is a long, smooth, redundant signal, so x_t gives the motion away down to very
    low signal-to-noise ratios; on this corpus the one-call x0 estimate from t = 0.95 T already
    scores the caption's motion as well as the final sample does, and uniform sampling visits
    those levels one batch row in ten or twenty.
    """
    return TimestepSampler(high_noise_share, high_noise_fraction)(schedule, batch_size, generator)


def training_loss(
    model: Callable[..., Tensor],
    batch: dict,
    generator: torch.Generator,
    *,
    schedule: NoiseSchedule,
    cond_drop: float,
    geometry: GeometryWeights | None = None,
    high_noise_share: float = 0.0,
    high_noise_fraction: float = 0.1,
    prediction: Prediction = MDMConfig.prediction,
) -> tuple[Tensor, dict[str, float]]:
    """Scalar training loss for a collated batch (see :func:`humandiff.motion.dataset.collate_motion`).

    Timesteps come from :func:`training_timesteps` (uniform in [0, T) by default); ``cond_drop``
    of the samples get a zero caption embedding (classifier-free guidance); ``prediction`` is the
    model config's. All randomness comes from ``generator``, drawn on its own device (a CPU
    generator serves every device, so a CUDA run draws the numbers a CPU run does) and moved to the
    batch's.
    """
    if "text_emb" not in batch:
        raise ArtifactError("training_loss: the batch has no field 'text_emb' (load the split with its embeddings file)")
    x0, mask, text = batch["motion"], batch["mask"], batch["text_emb"]
    B = x0.shape[0]
    t = training_timesteps(schedule, B, generator, high_noise_share, high_noise_fraction).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    keep = (torch.rand(B, generator=generator) >= cond_drop).to(text.device, text.dtype)
    total, parts = denoising_loss(model, schedule, x0, t, noise, text_emb=text * keep[:, None], mask=mask, geometry=geometry,
                                  prediction=prediction)
    return total.mean(), {name: float(value.detach().mean()) for name, value in parts.items()}


# ---------------------------------------------------------------------------------------------
# Sampling


def guided_denoiser(model: nn.Module, text_emb: Tensor | None, guidance_scale: float = 2.5) -> Denoiser:
    """A denoiser ``(x_t, t, mask=...) -> prediction`` (x0_hat as MDM) with the caption and classifier-free guidance bound.

    ``text_emb`` (B, condition_dim) or ``None`` (unconditional, as DNO runs the prior). ``guidance_scale``
    1 gives the plain conditional model; MDM samples with 2.5.
    """
    if text_emb is None:
        return lambda x_t, t, **kw: model(x_t, t, text_emb=None, **kw)
    if guidance_scale == 1.0:
        return lambda x_t, t, **kw: model(x_t, t, text_emb=text_emb, **kw)
    return classifier_free_guidance(model, guidance_scale, {"text_emb": text_emb}, {"text_emb": torch.zeros_like(text_emb)})


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` under ``seed``: samples do not depend on batching or order."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def sample_set_seed(seed: int, sample_set: int) -> int:
    """Seed of independent sample set ``sample_set`` drawn for the same captions: set 0 is ``seed`` itself."""
    return seed if sample_set == 0 else sample_seed(seed, sample_set)


@torch.no_grad()
def generate(
    model: nn.Module,
    schedule: NoiseSchedule,
    text_emb: Tensor | None,
    lengths: Sequence[int],
    *,
    num_steps: int = 50,
    guidance_scale: float = 2.5,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> list[Tensor]:
    """Sample one normalised motion (T_i, 263) per caption condition ``text_emb`` (K, condition_dim) and length.

    DDIM with ``num_steps`` trailing-spaced steps and classifier-free guidance. Sample ``i``'s
    initial (and per-step, for ``eta > 0``) noise comes from its own generator seeded with
    :func:`sample_seed`, so results do not depend on ``batch_size``; clips of similar length are
    batched together to save padding. With ``frames_per_token = P`` a motion is generated at its
    length rounded up to a multiple of P (the lengths the model was trained on) and cut.
    """
    lengths = [int(n) for n in lengths]
    if text_emb is not None and text_emb.shape[0] != len(lengths):
        raise ArtifactError(f"generate: {text_emb.shape[0]} caption embeddings for {len(lengths)} lengths")
    if not lengths or min(lengths) < 1:
        raise ArtifactError("generate: parameter 'lengths' must be non-empty and positive")
    if batch_size < 1:
        raise ArtifactError(f"generate: parameter 'batch_size' must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    feature_dim, P = model.config.feature_dim, model.config.frames_per_token
    full = [-(-n // P) * P for n in lengths]
    order = np.argsort(-np.asarray(lengths), kind="stable")
    results: list[Tensor | None] = [None] * len(lengths)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    stochastic_steps = num_steps - 1 if eta > 0 else 0
    for chunk in tqdm(chunks, desc="sample", disable=not progress):
        t_max = max(full[i] for i in chunk)
        x_T = torch.zeros(len(chunk), t_max, feature_dim)
        step_noise = torch.zeros(stochastic_steps, len(chunk), t_max, feature_dim) if stochastic_steps else None
        for b, i in enumerate(chunk):
            generator = torch.Generator().manual_seed(sample_seed(seed, i))
            x_T[b, : full[i]] = torch.randn(full[i], feature_dim, generator=generator)
            if step_noise is not None:
                step_noise[:, b, : full[i]] = torch.randn(stochastic_steps, full[i], feature_dim, generator=generator)
        mask = torch.arange(t_max)[None, :] < torch.tensor([full[i] for i in chunk])[:, None]
        emb = None if text_emb is None else text_emb[torch.as_tensor(chunk)].float()
        denoiser = guided_denoiser(model, emb, guidance_scale)
        out = ddim_sample(denoiser, x_T, schedule, num_steps=num_steps, prediction=model.config.prediction, eta=eta,
                          noise=step_noise, model_kwargs={"mask": mask})
        for b, i in enumerate(chunk):
            results[i] = out[b, : lengths[i]].clone()
    model.train(was_training)
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Files


def save_mdm(model_file: str | Path, config_file: str | Path, state_dict: dict[str, Tensor], config: MDMConfig) -> None:
    """Write the weights (a state dict, :func:`humandiff.io.save_torch`) and the config (JSON), each atomically."""
    save_torch(model_file, state_dict)
    save_json(config_file, config.to_dict())


def load_mdm(model_file: str | Path, config_file: str | Path) -> tuple[MotionDiffusionModel, MDMConfig]:
    """The model in eval mode and its config, from :func:`save_mdm`'s files."""
    config_file, model_file = Path(config_file), Path(model_file)
    if not config_file.is_file():
        raise ArtifactError(f"{config_file}: file not found")
    state = load_torch(model_file)
    check_finite(model_file, {"state_dict": state} if isinstance(state, dict) else {}, writing=False)
    try:
        config = MDMConfig.from_dict(json.loads(config_file.read_text()))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{config_file}: not valid JSON ({exc})") from None
    model = MotionDiffusionModel(config)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        message = str(exc).splitlines()[0]
        raise ArtifactError(f"{model_file}: weights do not fit {config_file} ({message})") from None
    model.eval()
    return model, config
