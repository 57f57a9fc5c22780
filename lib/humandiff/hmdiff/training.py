"""Training HMDiff's networks (the ``train_hmdiff`` stages' logic): the diffusion denoiser with image,
pose-heatmap or both contexts (Table 4) and the one-step regression Baselines A and B (Table 3).

:class:`HMDiffNet` holds the vertex network and the learned up-sampling (coarse -> middle); the
generic loop (:func:`humandiff.train.loop.train`) optimises both. Its loss per batch (B images):

- diffusion mode: :func:`humandiff.hmdiff.losses.training_loss` (diffusion + vertex + joint +
  normal + edge on ``h0_hat``, :class:`LossWeights`) on the true coarse meshes (B, V_c, 3);
- regression mode: the four geometry terms on the one-pass mesh (no diffusion term);
- both: ``upsample`` x the mean L1 distance of the up-sampled true coarse mesh to the full true mesh
  (B, V, 3) (the up-sampling learns from the truth, not from the network's estimates).

The perception network is frozen: its outputs come from ``data/extract``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from humandiff.hmdiff.data import Geometry, ImageSet
from humandiff.hmdiff.losses import TERMS, LossWeights, geometry_losses, total, training_loss
from humandiff.hmdiff.model import MeshCoordinates, MeshUpsampler, VertexDenoiser, VertexDenoiserConfig, pose_features
from humandiff.io.artifacts import ArtifactError, read_checkpoint, restore_state, save_checkpoint

#: Columns of the loss curve (a DVC plot).
CURVE_COLUMNS = ("step", "loss") + TERMS + ("upsample",)


@dataclass(frozen=True)
class ModelSpec:
    """One trained network of ``hmdiff.models``: ``context`` image | pose | both, ``mode`` diffusion |
    regression, ``stack`` copies (Baseline B; 1 otherwise)."""

    context: str = "image"
    mode: str = "diffusion"
    stack: int = 1

    @classmethod
    def from_params(cls, name: str, values: Mapping[str, Any]) -> "ModelSpec":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ArtifactError(f"parameter 'hmdiff.models.{name}': unknown key(s) {', '.join(unknown)}")
        return cls(**values)


class HMDiffNet(nn.Module):
    """The vertex network ``denoiser`` (in the diffusion's ``coordinates``, fitted on the training
    meshes before training) and the learned up-sampling ``upsampler`` (metres; see the module doc)."""

    def __init__(self, config: VertexDenoiserConfig, geometry: Geometry) -> None:
        super().__init__()
        self.config = config
        self.denoiser = VertexDenoiser(config)
        self.upsampler = MeshUpsampler(geometry.hierarchy)
        self.coordinates = MeshCoordinates(config.num_vertices)

    def regress(self, tokens: Tensor, heatmaps: Tensor, depth_maps: Tensor) -> Tensor:
        """Baselines A / B: the coarse mesh (B, V_c, 3) in metres from one pass."""
        return self.coordinates.decode(self.denoiser.regress(**self.conditioning(tokens, heatmaps, depth_maps)))

    def conditioning(self, tokens: Tensor, heatmaps: Tensor, depth_maps: Tensor) -> dict[str, Tensor | None]:
        """The denoiser's keyword inputs for B images (tokens (B, T, D), maps (B, J, h, w))."""
        context = self.config.context
        return {"image_tokens": tokens if context in ("image", "both") else None,
                "pose_features": pose_features(heatmaps, depth_maps) if context in ("pose", "both") else None}

    def forward(self, h: Tensor, t: Tensor, image_tokens: Tensor | None = None, pose_features: Tensor | None = None) -> Tensor:
        return self.denoiser(h, t, image_tokens=image_tokens, pose_features=pose_features)


def network_config(spec: ModelSpec, architecture: Mapping[str, Any], geometry: Geometry, data: ImageSet) -> VertexDenoiserConfig:
    """The denoiser's config sized to the geometry (V_c) and the extraction (token channels, heatmap size)."""
    joints, height, width = data.heatmaps.shape[1:]
    return VertexDenoiserConfig(num_vertices=geometry.coarse_vertices, image_dim=int(data.tokens.shape[-1]),
                                image_tokens=int(data.tokens.shape[1]),
                                pose_joints=int(joints), pose_dim=2 * int(height) * int(width), context=spec.context,
                                mode=spec.mode, stack=spec.stack, **dict(architecture))


class RowDataset(torch.utils.data.Dataset):
    """Item ``i`` is row ``i`` of an :class:`ImageSet`; :meth:`collate` stacks the rows' tensors."""

    def __init__(self, data: ImageSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, rows: list[int]) -> dict[str, Tensor]:
        take = torch.as_tensor(rows, dtype=torch.long)
        d = self.data
        return {name: getattr(d, name)[take] for name in ("tokens", "heatmaps", "depth_maps", "vertices", "coarse")}


def hmdiff_loss_fn(geometry: Geometry, weights: LossWeights, upsample_weight: float):
    """``loss_fn(model, batch, generator) -> (scalar, {term: float})`` for :func:`humandiff.train.loop.train`."""

    def loss_fn(model: HMDiffNet, batch: dict[str, Tensor], generator: torch.Generator):
        net = model.module if hasattr(model, "module") else model
        kwargs = net.conditioning(batch["tokens"], batch["heatmaps"], batch["depth_maps"])
        if net.config.mode == "diffusion":
            per_sample, terms = training_loss(model, batch["coarse"], net.config.noise_schedule(), generator, geometry.faces,
                                              geometry.regressor, weights, model_kwargs=kwargs, coordinates=net.coordinates)
        else:
            terms = geometry_losses(net.regress(batch["tokens"], batch["heatmaps"], batch["depth_maps"]), batch["coarse"],
                                    geometry.faces, geometry.regressor)
            per_sample = total(terms, weights)
        terms["upsample"] = (net.upsampler(batch["coarse"])[1] - batch["vertices"]).abs().mean((1, 2))
        loss = per_sample.mean() + upsample_weight * terms["upsample"].mean()
        return loss, {name: float(value.detach().mean()) for name, value in terms.items()}

    return loss_fn


def curve_columns(history: list[dict[str, float]]) -> tuple[str, ...]:
    """The loss curve's columns a run logged (a regression baseline has no diffusion term)."""
    logged = set(history[-1]) if history else set()
    return tuple(c for c in CURVE_COLUMNS if c in ("step", "loss") or c in logged)


def save_hmdiff(path: str | Path, model: HMDiffNet, extra: dict[str, Any]) -> None:
    save_checkpoint(path, model.config.to_dict(), model.state_dict(), extra)


def load_hmdiff(path: str | Path, geometry: Geometry) -> tuple[HMDiffNet, dict[str, Any]]:
    """A trained :class:`HMDiffNet` (eval mode) and the extra fields it was saved with."""
    payload = read_checkpoint(path)
    try:
        config = VertexDenoiserConfig(**payload["config"])
    except (TypeError, ArtifactError) as exc:
        raise ArtifactError(f"{path}: field 'config' is not a vertex-network config ({str(exc).splitlines()[0]})") from None
    if config.num_vertices != geometry.coarse_vertices:
        raise ArtifactError(f"{path}: the network has {config.num_vertices} coarse vertices, the hierarchy of the "
                            f"params {geometry.coarse_vertices} (parameter 'hmdiff.hierarchy' changed: retrain)")
    model = restore_state(HMDiffNet(config, geometry), payload["state_dict"], path)
    return model, payload["extra"]


def settings_dict(*objects: Any) -> dict[str, Any]:
    """The dataclasses' fields, merged (for the resume fingerprint)."""
    merged: dict[str, Any] = {}
    for item in objects:
        merged.update(asdict(item))
    return merged
