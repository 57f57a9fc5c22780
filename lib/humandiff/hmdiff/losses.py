"""HMDiff's training objective (Sec. 4.4): the diffusion loss plus four mesh-geometry losses on the
clean estimate ``h0_hat`` (Eq. 7), as Pose2Mesh's (Choi et al. 2020, the paper's [7]).

Conventions, written once: meshes ``(B, V, 3)`` on one topology ``faces`` (F, 3); joints via the
coarse joint regressor ``f`` (J, V); every term is per sample ``(B,)`` and is 0 when the estimate
equals the truth:

- diffusion: :func:`humandiff.diffusion.prediction_loss` of the network's output (noise prediction,
  the mean squared error over the V x 3 numbers). The paper writes it as
  ``||(h_{k-1} - h_k) - g(h_k, k, f_I)||^2``; the noise target is the same regression up to a
  per-step scale, and is what Eq. 7 assumes g predicts.
- vertex ``L_v``: mean L1 distance of the vertices' coordinates;
- joint ``L_j``: mean L1 distance of ``f(h0_hat)`` to the target joints (``f(truth)`` unless given);
- surface normal ``L_n``: mean over faces and their three edges of ``|<e_hat / ||e_hat||, n>|``,
  ``n`` the true face's unit normal, ``e_hat`` the estimate's edge;
- surface edge ``L_e``: mean over faces and edges of ``| ||e_hat|| - ||e|| |``.

The weights are Pose2Mesh's (``L_v + L_j + 0.1 L_n + 20 L_e``): the paper defers them to its
supplementary, which we do not have.

``LossWeights.alpha_bar`` (default on; not in the paper, which leaves the terms unweighted over
``k``): the four geometry terms of a sample drawn at level ``k`` are multiplied by ``alpha_bar_k``,
its signal fraction. ``h0_hat = (h_k - sqrt(1 - alpha_bar) eps_hat) / sqrt(alpha_bar)`` multiplies
the noise-prediction error by up to 182 at k = 199 of the linear K = 200 schedule, so unweighted, the
noisiest samples dominate the (clipped) gradient and the low-noise levels, where the image matters,
learn little (docs/hmdiff.md "Default-preset diagnosis": the weighting halved the coarse-joint error
of a 300-step training). The logged terms are the unweighted ones; only the total is weighted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from humandiff.diffusion import NoiseSchedule, TimestepSampler, prediction_loss, q_sample, x0_from_prediction
from humandiff.io.artifacts import ArtifactError

TERMS: tuple[str, ...] = ("diffusion", "vertex", "joint", "normal", "edge")


@dataclass(frozen=True)
class LossWeights:
    """``L_total = diffusion L_Diff + w(k) (vertex L_v + joint L_j + normal L_n + edge L_e)``, ``w(k) =
    alpha_bar_k`` with ``alpha_bar`` true, 1 without (see the module doc)."""

    diffusion: float = 1.0
    vertex: float = 1.0
    joint: float = 1.0
    normal: float = 0.1
    edge: float = 20.0
    alpha_bar: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.alpha_bar, bool):
            raise ArtifactError(f"LossWeights: parameter 'alpha_bar' must be true or false, got {self.alpha_bar!r}")
        for f in fields(self):
            if f.name == "alpha_bar":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ArtifactError(f"LossWeights: parameter '{f.name}' must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _edges(mesh: Tensor, faces: Tensor) -> Tensor:
    """Face edges (B, F, 3, 3): ``v1 - v0``, ``v2 - v1``, ``v0 - v2``."""
    corners = mesh[:, faces]  # (B, F, 3, 3)
    return corners.roll(-1, dims=2) - corners


def vertex_loss(estimate: Tensor, truth: Tensor) -> Tensor:
    """``L_v`` (B,): mean absolute coordinate error of meshes (B, V, 3)."""
    return (estimate - truth).abs().flatten(1).mean(1)


def joint_loss(estimate: Tensor, target_joints: Tensor, regressor: Tensor) -> Tensor:
    """``L_j`` (B,): mean absolute error of ``f(estimate)`` (B, J, 3) against ``target_joints`` (B, J, 3)."""
    joints = torch.einsum("jv,bvc->bjc", regressor.to(estimate.dtype), estimate)
    return (joints - target_joints.to(estimate.dtype)).abs().flatten(1).mean(1)


def normal_loss(estimate: Tensor, truth: Tensor, faces: Tensor) -> Tensor:
    """``L_n`` (B,): the estimate's edges against the true faces' unit normals."""
    true_edges = _edges(truth, faces)
    normal = torch.nn.functional.normalize(torch.cross(true_edges[:, :, 0], -true_edges[:, :, 2], dim=-1), dim=-1)
    edges = torch.nn.functional.normalize(_edges(estimate, faces), dim=-1)
    return (edges * normal[:, :, None]).sum(-1).abs().flatten(1).mean(1)


def edge_loss(estimate: Tensor, truth: Tensor, faces: Tensor) -> Tensor:
    """``L_e`` (B,): absolute differences of edge lengths."""
    return (_edges(estimate, faces).norm(dim=-1) - _edges(truth, faces).norm(dim=-1)).abs().flatten(1).mean(1)


def geometry_losses(estimate: Tensor, truth: Tensor, faces: Tensor, regressor: Tensor,
                    target_joints: Tensor | None = None) -> dict[str, Tensor]:
    """The four geometry terms (B,) each, for meshes (B, V, 3); ``target_joints`` default ``f(truth)``."""
    if estimate.shape != truth.shape or estimate.dim() != 3 or estimate.shape[-1] != 3:
        raise ArtifactError(f"hmdiff losses: estimate {tuple(estimate.shape)} and truth {tuple(truth.shape)} "
                            "must both be (B, V, 3)")
    faces = torch.as_tensor(faces, dtype=torch.long, device=estimate.device)
    regressor = torch.as_tensor(regressor, device=estimate.device)
    if target_joints is None:
        target_joints = torch.einsum("jv,bvc->bjc", regressor.to(truth.dtype), truth)
    return {
        "vertex": vertex_loss(estimate, truth),
        "joint": joint_loss(estimate, target_joints, regressor),
        "normal": normal_loss(estimate, truth, faces),
        "edge": edge_loss(estimate, truth, faces),
    }


def total(terms: dict[str, Tensor], weights: LossWeights) -> Tensor:
    """``sum_name weight[name] * terms[name]`` (B,) (no per-level weighting: see :func:`training_loss`)."""
    return sum(getattr(weights, name) * value for name, value in terms.items())


def training_loss(model, mesh: Tensor, schedule: NoiseSchedule, generator: torch.Generator, faces: Tensor,
                  regressor: Tensor, weights: LossWeights = LossWeights(), *, model_kwargs: dict[str, Any] | None = None,
                  target_joints: Tensor | None = None, sampler: TimestepSampler = TimestepSampler(),
                  prediction: str = "eps", coordinates=None) -> tuple[Tensor, dict[str, Tensor]]:
    """One batch of HMDiff's objective: ``(total (B,), {term: (B,)})``.

    ``mesh`` (B, V, 3) the true coarse meshes in metres; ``coordinates`` (a
    :class:`humandiff.hmdiff.model.MeshCoordinates`, None: the identity) maps them to the diffusion's
    ``h_0``. Draws ``k`` (``sampler``) and the noise from ``generator``, runs ``model(h_k, k,
    **model_kwargs)``, turns its output into ``h0_hat`` and adds the geometry terms on it (decoded
    to metres), multiplied per sample by ``alpha_bar_k`` when ``weights.alpha_bar`` (the returned
    terms are unweighted).
    """
    encode = coordinates.encode if coordinates is not None else (lambda m: m)
    decode = coordinates.decode if coordinates is not None else (lambda h: h)
    clean = encode(mesh)
    t = sampler(schedule, mesh.shape[0], generator, device=mesh.device)
    noise = torch.randn(mesh.shape, generator=generator, dtype=mesh.dtype).to(mesh.device)
    noisy = q_sample(schedule, clean, t, noise)
    output = model(noisy, t, **(model_kwargs or {}))
    terms = {"diffusion": prediction_loss(schedule, output, clean, noise, t, prediction)}
    geometry = geometry_losses(decode(x0_from_prediction(schedule, noisy, t, output, prediction)), mesh, faces, regressor,
                               target_joints)
    terms.update(geometry)
    level_weight = schedule.alphas_cumprod.to(mesh.device, mesh.dtype)[t] if weights.alpha_bar else 1.0
    return total({"diffusion": terms["diffusion"]}, weights) + level_weight * total(geometry, weights), terms
