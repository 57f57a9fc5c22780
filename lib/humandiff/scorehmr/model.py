"""ScoreHMR's pose denoiser ``eps_phi(x_t, t, c)`` (Sec. 4.2, Fig. 5) and the pose vector it diffuses.

The diffused vector is the SMPL pose alone (the paper's default; shape is not diffused, the betas
come from the regression): 24 joints x 6D rotation, the first two COLUMNS of each camera-frame
rotation matrix (:mod:`humandiff.geometry.rotations`), flattened joint-major to
``x (B, 144) = [6D of joint 0 (global orientation), 6D of joint 1, ...]``.

Architecture (Fig. 5 of the supplementary), with ``D = 144`` the residual width and ``d`` the
image feature's size::

    h1 = Linear(D -> D)(x_t)
    e  = MLP(psi(t)):  sinusoids (D) -> Linear(D -> E) -> GELU -> Linear(E -> E)
    block i (3 of them):
        (t_s, t_b) = Linear(E -> 2D)(SiLU(e))            # FiLM from the timestep
        h_t  = h * (1 + t_s) + t_b                        # scale about 1, so zero init is identity
        h   <- h_t + GELU(Linear(H -> D)(LN(GELU(Linear(D + d -> H)(LN([h_t || c]))))))
    eps = Linear(D -> D)(h)

The paper writes the scale as ``t_s h + t_b``; the ``1 + t_s`` form (the reference code's) is the
same map with ``t_s`` re-centred, so a freshly initialised FiLM leaves ``h`` unchanged. The image
feature ``c`` is concatenated into every block, as the paper. ``H`` is ``hidden_dim``
(1024 in the paper, a CPU-sized 256 by default) and ``E`` is ``time_dim`` (``4 D = 576`` in the
reference). The model predicts the noise (``prediction="eps"``) under the cosine schedule,
``T = 1000`` (:func:`humandiff.diffusion.cosine_schedule`); the weights used for sampling are an
EMA (rate :data:`EMA_DECAY`, :mod:`humandiff.train.ema`).

Image features may be standardised inside the model: :meth:`PoseDenoiser.set_feature_stats`
stores a mean and std (buffers, saved with the weights) that ``forward`` applies to ``c`` (the
reference standardises its backbone features the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from humandiff.diffusion import NoiseSchedule, TimestepSampler, as_timesteps, make_schedule, prediction_loss, q_sample
from humandiff.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)
from humandiff.io.artifacts import ArtifactError
from humandiff.prior.mdm import sinusoidal_embedding

NUM_JOINTS = 24
ROTATION_DIM = 6
#: 24 joints x 6D: the diffused vector's size.
POSE_DIM = NUM_JOINTS * ROTATION_DIM
#: EMA rate of the weights used for sampling (FACTS.md section 6).
EMA_DECAY = 0.995
#: What the network's output estimates (the samplers' and the training loss's ``prediction``).
PREDICTION = "eps"


# ------------------------------------------------------------------------------------ pose vectors
def rotations_to_pose(rotations: Tensor) -> Tensor:
    """Rotation matrices (B, 24, 3, 3) -> the diffused pose vector (B, 144)."""
    if rotations.dim() != 4 or rotations.shape[1:] != (NUM_JOINTS, 3, 3):
        raise ArtifactError(f"rotations_to_pose: parameter 'rotations' has shape {tuple(rotations.shape)}, "
                            f"expected (B, {NUM_JOINTS}, 3, 3)")
    return matrix_to_rotation_6d(rotations).reshape(rotations.shape[0], POSE_DIM)


def pose_to_rotations(pose: Tensor) -> Tensor:
    """Pose vectors (B, 144) -> rotation matrices (B, 24, 3, 3) (Gram-Schmidt, so any vector maps to rotations)."""
    _check_pose(pose, "pose_to_rotations")
    return rotation_6d_to_matrix(pose.reshape(pose.shape[0], NUM_JOINTS, ROTATION_DIM))


def axis_angle_to_pose(global_orient: Tensor, body_pose: Tensor) -> Tensor:
    """Axis-angle ``global_orient`` (B, 3) and ``body_pose`` (B, 69) -> pose vectors (B, 144)."""
    batch = global_orient.shape[0]
    if global_orient.shape != (batch, 3) or body_pose.shape != (batch, 3 * (NUM_JOINTS - 1)):
        raise ArtifactError(f"axis_angle_to_pose: expected global_orient (B, 3) and body_pose (B, 69), got "
                            f"{tuple(global_orient.shape)} and {tuple(body_pose.shape)}")
    axis_angle = torch.cat([global_orient, body_pose], 1).reshape(batch, NUM_JOINTS, 3)
    return rotations_to_pose(axis_angle_to_matrix(axis_angle))


def pose_to_axis_angle(pose: Tensor) -> tuple[Tensor, Tensor]:
    """Pose vectors (B, 144) -> axis-angle ``(global_orient (B, 3), body_pose (B, 69))``, angles in [0, pi]."""
    axis_angle = matrix_to_axis_angle(pose_to_rotations(pose))
    return axis_angle[:, 0], axis_angle[:, 1:].reshape(pose.shape[0], -1)


def _check_pose(pose: Tensor, where: str) -> None:
    if not isinstance(pose, Tensor) or pose.dim() != 2 or pose.shape[1] != POSE_DIM:
        shape = tuple(pose.shape) if isinstance(pose, Tensor) else type(pose).__name__
        raise ArtifactError(f"{where}: parameter 'pose' has shape {shape}, expected (B, {POSE_DIM})")


# ------------------------------------------------------------------------------------ the network
@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of :class:`PoseDenoiser` and its diffusion.

    ``feature_dim``: size of the image feature ``c`` (the perception network's pooled feature is
    160; ProHMR's 2048, PARE's pose feature 3072 in the paper); ``hidden_dim``: width ``H`` of each
    block's hidden layer (paper 1024); ``time_dim``: width ``E`` of the timestep embedding
    (reference ``4 x 144``); ``num_blocks``: 3 as the paper; ``num_timesteps`` / ``schedule``:
    T = 1000, cosine.
    """

    feature_dim: int = 160
    hidden_dim: int = 256
    time_dim: int = 4 * POSE_DIM
    num_blocks: int = 3
    num_timesteps: int = 1000
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("feature_dim", "hidden_dim", "time_dim", "num_blocks", "num_timesteps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"DenoiserConfig: field '{name}' must be a positive integer, got {value!r}")
        if self.schedule not in ("cosine", "linear"):
            raise ArtifactError(f"DenoiserConfig: field 'schedule' must be 'cosine' or 'linear', got {self.schedule!r}")

    def noise_schedule(self) -> NoiseSchedule:
        return make_schedule(self.schedule, self.num_timesteps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DenoiserBlock(nn.Module):
    """One residual block: FiLM from the timestep embedding, then ``[h_t || c]`` through a two-layer MLP.

    ``(h (B, D), e (B, E), c (B, d)) -> (B, D)``; see the module doc for the formula.
    """

    def __init__(self, width: int, hidden_dim: int, time_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * width))
        self.norm_in = nn.LayerNorm(width + feature_dim)
        self.linear_in = nn.Linear(width + feature_dim, hidden_dim)
        self.norm_hidden = nn.LayerNorm(hidden_dim)
        self.linear_out = nn.Linear(hidden_dim, width)
        self.act = nn.GELU()

    def forward(self, h: Tensor, time_embedding: Tensor, feature: Tensor) -> Tensor:
        scale, shift = self.film(time_embedding).chunk(2, dim=1)
        h_t = h * (1.0 + scale) + shift
        hidden = self.act(self.linear_in(self.norm_in(torch.cat([h_t, feature], 1))))
        return h_t + self.act(self.linear_out(self.norm_hidden(hidden)))


class PoseDenoiser(nn.Module):
    """``eps_phi(x_t (B, 144), t (B,) long, features (B, d)) -> eps_hat (B, 144)``.

    Call it through the core with ``model_kwargs={"features": c}`` and ``prediction="eps"``.
    """

    def __init__(self, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        self.config = config or DenoiserConfig()
        cfg = self.config
        self.input = nn.Linear(POSE_DIM, POSE_DIM)
        self.time_mlp = nn.Sequential(nn.Linear(POSE_DIM, cfg.time_dim), nn.GELU(), nn.Linear(cfg.time_dim, cfg.time_dim))
        self.blocks = nn.ModuleList(
            DenoiserBlock(POSE_DIM, cfg.hidden_dim, cfg.time_dim, cfg.feature_dim) for _ in range(cfg.num_blocks)
        )
        self.output = nn.Linear(POSE_DIM, POSE_DIM)
        self.register_buffer("feature_mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("feature_std", torch.ones(cfg.feature_dim))

    @torch.no_grad()
    def set_feature_stats(self, features: Tensor, min_std: float = 1e-6) -> None:
        """Store the mean and std (clamped at ``min_std``) of training features (N, d) for standardisation."""
        if features.dim() != 2 or features.shape[1] != self.config.feature_dim or features.shape[0] < 2:
            raise ArtifactError(f"PoseDenoiser: parameter 'features' has shape {tuple(features.shape)}, "
                                f"expected (N >= 2, {self.config.feature_dim})")
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0).clamp(min=min_std))

    def forward(self, x_t: Tensor, t: Tensor, features: Tensor) -> Tensor:
        batch = x_t.shape[0]
        if x_t.dim() != 2 or x_t.shape[1] != POSE_DIM:
            raise ArtifactError(f"PoseDenoiser: 'x_t' has shape {tuple(x_t.shape)}, expected (B, {POSE_DIM})")
        if features.shape != (batch, self.config.feature_dim):
            raise ArtifactError(f"PoseDenoiser: 'features' has shape {tuple(features.shape)}, "
                                f"expected ({batch}, {self.config.feature_dim})")
        t = as_timesteps(t, x_t)
        time_embedding = self.time_mlp(sinusoidal_embedding(t, POSE_DIM).to(x_t.dtype))
        c = ((features - self.feature_mean) / self.feature_std).to(x_t.dtype)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, time_embedding, c)
        return self.output(h)


def denoising_loss(
    model: PoseDenoiser,
    pose: Tensor,
    features: Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator,
    sampler: TimestepSampler = TimestepSampler(),
) -> Tensor:
    """Eq. 11 per sample (B,): ``||eps_phi(x_t, t, c) - eps||^2`` (mean over the 144 numbers) at a
    uniform ``t`` and ``eps ~ N(0, I)`` drawn from ``generator``; ``pose`` (B, 144), ``features`` (B, d)."""
    _check_pose(pose, "denoising_loss")
    t = sampler(schedule, pose.shape[0], generator, device=pose.device)
    noise = torch.randn(pose.shape, generator=generator, dtype=pose.dtype, device=pose.device)
    output = model(q_sample(schedule, pose, t, noise), t, features=features)
    return prediction_loss(schedule, output, pose, noise, t, PREDICTION)
