"""HMDiff's vertex denoiser ``g(h_k, k, f_I)`` (Sec. 4.3), its baselines, and the mesh up-sampling.

Conventions, written once:

- ``h`` (B, V, 3): the coarse mesh (the coarsest level of :class:`humandiff.body.hierarchy.MeshHierarchy`,
  431 vertices on SMPL) in the diffusion's coordinates; the model never reshapes it.
- The diffusion's coordinates (:class:`MeshCoordinates`): ``h = (mesh - offset) / scale`` with
  ``offset`` (V, 3) the training set's mean coarse mesh and ``scale`` the spread of its residuals
  (metres; 0.17 m on the default preset). Without it unit noise is ~3x the body's own spread
  at every level and the clean estimate is far worse at low noise (docs/hmdiff.md). Losses,
  gaps and metrics are taken on decoded meshes (metres) or, for DAT, with the poses encoded alike.
- Tokens: vertex ``v`` at step ``k`` is ``[E_ID(v) (64) || E_d(k) (61) || h[v] (3)]`` = 128 numbers.
  ``E_ID`` is a linear layer of the one-hot vertex ID (an embedding table), ``E_d`` the sinusoids of
  :func:`humandiff.prior.mdm.sinusoidal_embedding` (62 computed, the last dropped).
- Layers (pre-norm residual, GELU feed-forward after each attention)::

      x <- x + SelfAttn(LN(x));           x <- x + FF(LN(x))      # vertex self-attention
      x <- x + CrossAttn(LN(x), LN(c));   x <- x + FF(LN(x))      # vertex-image cross-attention
      out = Linear(LN(x)) -> (B, V, 3)

  ``c`` (B, T, 128): the context tokens, a linear map of the perception network's spatial tokens
  (``tokens`` (B, 64, 128) of :mod:`humandiff.perception.extraction`, the paper's f_I of 49 x 128),
  of per-joint pose-heatmap tokens (Table 4's "pose feature": each joint's xy and depth maps
  flattened, :func:`pose_features`), or of both concatenated along the token axis. Each context
  token gets a learned embedding of where it comes from (its image cell, or its joint), added
  after the linear map: attention is blind to the order of its context, so without it the network
  sees a bag of cells and of unnamed joints (a pooled-token regressor reaches 186 mm coarse-joint
  error, a position-aware one 152 mm, against 232 mm for the mean mesh; docs/hmdiff.md).
- Diffusion (``mode="diffusion"``): the output estimates the noise (``prediction="eps"``, Eq. 7)
  under the linear schedule with K = 200 (:func:`humandiff.diffusion.linear_schedule`).
- Baselines (Table 3), the same file and tokens, ``mode="regression"``: the network maps the
  input ``h`` (zeros: the vertex IDs carry the template) at step 0 directly to the mesh in one
  forward pass. Baseline A is ``stack=1``; Baseline B stacks ``stack`` copies (own weights), each
  refining the previous copy's mesh, to about HMDiff's compute (see :func:`forward_macs`).
- Up-sampling (:class:`MeshUpsampler`): a learned linear map coarse -> middle level (initialised
  to the fixed barycentric up-sampling), then the hierarchy's fixed up-sampling middle -> full.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humandiff.body.hierarchy import MeshHierarchy
from humandiff.diffusion import NoiseSchedule, as_timesteps, make_schedule
from humandiff.io.artifacts import ArtifactError
from humandiff.prior.mdm import sinusoidal_embedding

Context = Literal["image", "pose", "both"]
Mode = Literal["diffusion", "regression"]
#: What the network's output estimates in diffusion mode (Eq. 7: g predicts the noise).
PREDICTION = "eps"


@dataclass(frozen=True)
class VertexDenoiserConfig:
    """Architecture of :class:`VertexDenoiser` (defaults: the paper's, Sec. 4.3 and 5).

    ``num_vertices``: the coarse mesh's V; ``id_dim`` 64 + ``step_dim`` 61 + 3 = the token width 128;
    ``heads`` of both attentions; ``ff_dim`` of the feed-forwards; ``image_dim`` / ``image_tokens``:
    channels and count of the image tokens (ours 128 x 64, an 8 x 8 grid; the paper's 128 x 49); ``pose_joints`` / ``pose_dim``: joints and numbers per joint of the pose features
    (2 h w for h x w heatmaps); ``context``: which of them condition the model; ``mode`` /
    ``stack``: see the module doc; ``num_timesteps`` K = 200 with a ``schedule`` ``"linear"``.
    """

    num_vertices: int
    id_dim: int = 64
    step_dim: int = 61
    heads: int = 4
    ff_dim: int = 256
    image_dim: int = 128
    image_tokens: int = 64
    pose_joints: int = 24
    pose_dim: int = 2 * 32 * 32
    context: Context = "image"
    mode: Mode = "diffusion"
    stack: int = 1
    num_timesteps: int = 200
    schedule: str = "linear"

    def __post_init__(self) -> None:
        for name in ("num_vertices", "id_dim", "step_dim", "heads", "ff_dim", "image_dim", "image_tokens", "pose_joints", "pose_dim",
                     "stack", "num_timesteps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"VertexDenoiserConfig: field '{name}' must be a positive integer, got {value!r}")
        if self.context not in ("image", "pose", "both"):
            raise ArtifactError(f"VertexDenoiserConfig: field 'context' must be 'image', 'pose' or 'both', got {self.context!r}")
        if self.mode not in ("diffusion", "regression"):
            raise ArtifactError(f"VertexDenoiserConfig: field 'mode' must be 'diffusion' or 'regression', got {self.mode!r}")
        if self.mode == "diffusion" and self.stack != 1:
            raise ArtifactError(f"VertexDenoiserConfig: field 'stack' must be 1 in diffusion mode, got {self.stack}")
        if self.width % self.heads:
            raise ArtifactError(f"VertexDenoiserConfig: the token width {self.width} is not divisible by 'heads' {self.heads}")
        if self.schedule not in ("linear", "cosine"):
            raise ArtifactError(f"VertexDenoiserConfig: field 'schedule' must be 'linear' or 'cosine', got {self.schedule!r}")

    @property
    def width(self) -> int:
        """The token width ``id_dim + step_dim + 3`` (128 with the paper's numbers)."""
        return self.id_dim + self.step_dim + 3

    def noise_schedule(self) -> NoiseSchedule:
        return make_schedule(self.schedule, self.num_timesteps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def step_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal step embedding ``E_d`` (B, dim) of integer steps ``t`` (B,) (an odd ``dim`` drops the last cosine)."""
    return sinusoidal_embedding(t, dim + dim % 2)[..., :dim]


def pose_features(heatmaps: Tensor, depth_maps: Tensor) -> Tensor:
    """Per-joint pose features (B, J, 2 h w): each joint's xy distribution and depth map (B, J, h, w) flattened."""
    if heatmaps.shape != depth_maps.shape or heatmaps.dim() != 4:
        raise ArtifactError(f"pose_features: heatmaps {tuple(heatmaps.shape)} and depth maps {tuple(depth_maps.shape)} "
                            "must both be (B, J, h, w)")
    return torch.cat([heatmaps.flatten(2), depth_maps.flatten(2)], -1)


class _Attention(nn.Module):
    """Multi-head attention ``(x (B, L, d), context (B, T, d)) -> (B, L, d)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        batch, length, width = x.shape
        q = self.query(x).reshape(batch, length, self.heads, -1).transpose(1, 2)
        k, v = self.key_value(context).reshape(batch, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, width))


class _Residual(nn.Module):
    """``x <- x + Attn(LN(x), LN(context) or LN(x)); x <- x + FF(LN(x))`` (see the module doc)."""

    def __init__(self, width: int, heads: int, ff_dim: int, cross: bool) -> None:
        super().__init__()
        self.cross = cross
        self.norm = nn.LayerNorm(width)
        self.context_norm = nn.LayerNorm(width) if cross else None
        self.attention = _Attention(width, heads)
        self.ff_norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, ff_dim), nn.GELU(), nn.Linear(ff_dim, width))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.norm(x)
        x = x + self.attention(h, self.context_norm(context) if self.cross else h)
        return x + self.ff(self.ff_norm(x))


class _Network(nn.Module):
    """One copy of the network: tokens, self-attention, cross-attention, linear output."""

    def __init__(self, config: VertexDenoiserConfig) -> None:
        super().__init__()
        self.config = config
        self.vertex_id = nn.Embedding(config.num_vertices, config.id_dim)  # = a linear layer of the one-hot ID
        self.self_attention = _Residual(config.width, config.heads, config.ff_dim, cross=False)
        self.cross_attention = _Residual(config.width, config.heads, config.ff_dim, cross=True)
        self.out_norm = nn.LayerNorm(config.width)
        self.output = nn.Linear(config.width, 3)

    def forward(self, h: Tensor, t: Tensor, context: Tensor) -> Tensor:
        batch, count, _ = h.shape
        ids = self.vertex_id.weight.to(h.dtype)[None].expand(batch, -1, -1)
        steps = step_embedding(t, self.config.step_dim).to(h.dtype)[:, None].expand(-1, count, -1)
        x = torch.cat([ids, steps, h], -1)
        x = self.cross_attention(self.self_attention(x), context)
        return self.output(self.out_norm(x))


class VertexDenoiser(nn.Module):
    """``g(h (B, V, 3), t (B,) long, image_tokens (B, T, D) | None, pose_features (B, J, P) | None) -> (B, V, 3)``.

    Diffusion mode: the noise estimate; call it through the core with ``prediction="eps"`` and
    ``model_kwargs={"image_tokens": ..., "pose_features": ...}``. Regression mode: :meth:`regress`.
    """

    def __init__(self, config: VertexDenoiserConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        image, pose = config.context in ("image", "both"), config.context in ("pose", "both")
        self.image_proj = nn.Linear(config.image_dim, width) if image else None
        self.pose_proj = nn.Linear(config.pose_dim, width) if pose else None
        # where each context token comes from (an image cell, a joint): see the module doc
        self.image_position = nn.Parameter(0.02 * torch.randn(config.image_tokens, width)) if image else None
        self.pose_position = nn.Parameter(0.02 * torch.randn(config.pose_joints, width)) if pose else None
        self.networks = nn.ModuleList(_Network(config) for _ in range(config.stack))

    def context_tokens(self, image_tokens: Tensor | None, pose_features: Tensor | None, batch: int) -> Tensor:
        """The context ``c`` (B, T, 128) the cross-attention reads (see the module doc)."""
        cfg, parts = self.config, []
        if self.image_proj is not None:
            if image_tokens is None or tuple(image_tokens.shape) != (batch, cfg.image_tokens, cfg.image_dim):
                shape = None if image_tokens is None else tuple(image_tokens.shape)
                raise ArtifactError(f"VertexDenoiser: 'image_tokens' has shape {shape}, "
                                    f"expected ({batch}, {cfg.image_tokens}, {cfg.image_dim})")
            parts.append(self.image_proj(image_tokens.to(self.image_proj.weight.dtype)) + self.image_position)
        if self.pose_proj is not None:
            if pose_features is None or tuple(pose_features.shape) != (batch, cfg.pose_joints, cfg.pose_dim):
                shape = None if pose_features is None else tuple(pose_features.shape)
                raise ArtifactError(f"VertexDenoiser: 'pose_features' has shape {shape}, "
                                    f"expected ({batch}, {cfg.pose_joints}, {cfg.pose_dim})")
            parts.append(self.pose_proj(pose_features.to(self.pose_proj.weight.dtype)) + self.pose_position)
        return torch.cat(parts, 1)

    def forward(self, h: Tensor, t: Tensor, image_tokens: Tensor | None = None,
                pose_features: Tensor | None = None) -> Tensor:
        if self.config.mode != "diffusion":
            raise ArtifactError("VertexDenoiser: a regression baseline has no denoising step; call regress()")
        self._check_mesh(h)
        context = self.context_tokens(image_tokens, pose_features, h.shape[0]).to(h.dtype)
        return self.networks[0](h, as_timesteps(t, h), context)

    def regress(self, image_tokens: Tensor | None = None, pose_features: Tensor | None = None) -> Tensor:
        """Baselines A / B: the mesh (B, V, 3) in one forward pass through the ``stack`` copies."""
        if self.config.mode != "regression":
            raise ArtifactError("VertexDenoiser: regress() needs mode 'regression'")
        reference = image_tokens if image_tokens is not None else pose_features
        if reference is None:
            raise ArtifactError("VertexDenoiser: regress() needs 'image_tokens' or 'pose_features'")
        batch = reference.shape[0]
        dtype = self.networks[0].output.weight.dtype
        context = self.context_tokens(image_tokens, pose_features, batch).to(dtype)
        mesh = torch.zeros(batch, self.config.num_vertices, 3, dtype=dtype, device=context.device)
        steps = torch.zeros(batch, dtype=torch.long, device=context.device)
        for network in self.networks:
            mesh = network(mesh, steps, context) if network is self.networks[0] else mesh + network(mesh, steps, context)
        return mesh

    def _check_mesh(self, h: Tensor) -> None:
        if h.dim() != 3 or h.shape[1:] != (self.config.num_vertices, 3):
            raise ArtifactError(f"VertexDenoiser: 'h' has shape {tuple(h.shape)}, expected (B, {self.config.num_vertices}, 3)")


def forward_macs(config: VertexDenoiserConfig, context_tokens: int) -> int:
    """Multiply-accumulates of one forward pass on one mesh (all ``stack`` copies), for sizing Baseline B.

    HMDiff costs about ``N * steps`` of them per image (plus a backward pass on DAT's steps).
    """
    v, d, f, t = config.num_vertices, config.width, config.ff_dim, context_tokens
    self_attention = v * d * 4 * d + 2 * v * v * d
    cross_attention = v * d * 2 * d + t * d * 2 * d + 2 * v * t * d
    feed_forward = 2 * (2 * v * d * f)
    return config.stack * (self_attention + cross_attention + feed_forward + v * d * 3)


class MeshCoordinates(nn.Module):
    """The diffusion's coordinates of the coarse mesh: ``encode(mesh) = (mesh - offset) / scale``.

    ``offset`` (V, 3) and ``scale`` () are buffers (saved with the model), the identity until
    :meth:`fit` sets them from training meshes (B, V, 3) in metres.
    """

    def __init__(self, num_vertices: int) -> None:
        super().__init__()
        self.register_buffer("offset", torch.zeros(num_vertices, 3))
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def fit(self, meshes: Tensor) -> "MeshCoordinates":
        if meshes.dim() != 3 or meshes.shape[1:] != self.offset.shape or len(meshes) < 2:
            raise ArtifactError(f"MeshCoordinates.fit: meshes {tuple(meshes.shape)}, expected (B >= 2, {self.offset.shape[0]}, 3)")
        offset = meshes.double().mean(0)
        self.offset.copy_(offset)
        self.scale.copy_((meshes.double() - offset).std().clamp_min(1e-6))
        return self

    def encode(self, mesh: Tensor) -> Tensor:
        """Metres (..., V, 3) -> diffusion coordinates."""
        return (mesh - self.offset.to(mesh)) / self.scale.to(mesh)

    def decode(self, h: Tensor) -> Tensor:
        """Diffusion coordinates (..., V, 3) -> metres."""
        return h * self.scale.to(h) + self.offset.to(h)

    def encode_joints(self, joints: Tensor, regressor: Tensor) -> Tensor:
        """Joints (..., J, 3) in metres -> the frame of ``f(h)``: ``(joints - f(offset)) / scale``, so that
        ``f(decode(h)) - joints = scale * (f(h) - encode_joints(joints))`` for the linear ``f`` (J, V)."""
        origin = regressor.to(self.offset) @ self.offset
        return (joints - origin.to(joints)) / self.scale.to(joints)


class MeshUpsampler(nn.Module):
    """Coarse mesh (B, V_c, 3) -> ``(middle (B, V_m, 3), full (B, V_0, 3))``.

    ``V_c`` is ``hierarchy``'s coarsest level, ``V_m`` its level ``middle_level`` (1). The coarse
    -> middle map is a learned ``V_m x V_c`` matrix, initialised to the fixed barycentric
    up-sampling; middle -> full is the hierarchy's fixed up-sampling.
    """

    def __init__(self, hierarchy: MeshHierarchy, middle_level: int = 1) -> None:
        super().__init__()
        if not 1 <= middle_level < hierarchy.num_levels:
            raise ArtifactError(f"MeshUpsampler: 'middle_level' must lie in [1, {hierarchy.num_levels}), got {middle_level}")
        self.hierarchy, self.middle_level = hierarchy, middle_level
        coarse = hierarchy.num_levels - 1
        fixed = torch.eye(hierarchy.sizes[coarse], dtype=torch.float64)
        for level in range(coarse, middle_level, -1):
            fixed = torch.as_tensor(hierarchy.up_matrix(level).toarray()) @ fixed
        self.weight = nn.Parameter(fixed.float())  # (V_m, V_c)

    def forward(self, coarse: Tensor) -> tuple[Tensor, Tensor]:
        middle = torch.einsum("mc,bcx->bmx", self.weight.to(coarse.dtype), coarse)
        return middle, self.hierarchy.up(middle, from_level=self.middle_level, to_level=0)
