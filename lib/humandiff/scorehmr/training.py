"""Training ScoreHMR's pose denoiser (the ``train_scorehmr`` and ``scorehmr_ablation`` stages' logic).

The denoiser (:class:`~humandiff.scorehmr.model.PoseDenoiser`) learns ``p(pose | c)`` on the
rendered training set: ``c`` an image feature of the frozen perception network
(:func:`humandiff.scorehmr.data.features`: ``pooled`` or ``regression``), the pose either the exact
ground truth (``target: gt``) or a pseudo ground truth (``target: pseudo``): a single-stage SMPLify
fit to the ground-truth 2D keypoints from the regression's estimate, as SPIN's and EFT's fits
stand in for 3D labels on in-the-wild images (:func:`pseudo_ground_truth`). The generic loop
(:func:`humandiff.train.loop.train`: resumable, EMA, loss curve) runs Eq. 11.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from humandiff.io.artifacts import ArtifactError, load_npz, load_torch, save_torch
from humandiff.scorehmr.data import FEATURE_SOURCES, SetData, features, regression_start, truth_keypoints, truth_pose
from humandiff.scorehmr.model import POSE_DIM, DenoiserConfig, PoseDenoiser, denoising_loss
from humandiff.scorehmr.smplify import GaussianMixture, SMPLifyOptions, fit_gmm, smplify
from humandiff.train.loop import LoopConfig, LoopResult, train

TARGETS = ("gt", "pseudo")
#: The loss curve's columns (a DVC plot).
CURVE_COLUMNS = ("step", "loss")


@dataclass(frozen=True)
class DenoiserSettings:
    """What a params section says about the denoiser besides the loop: ``feature`` (a FEATURE_SOURCES
    name), ``target`` (``gt`` or ``pseudo``), and the architecture (``hidden_dim``: paper 1024;
    ``time_dim``; ``num_blocks``: 3). The feature's size comes from the data."""

    feature: str = "pooled"
    target: str = "gt"
    hidden_dim: int = 1024
    time_dim: int = 4 * POSE_DIM
    num_blocks: int = 3

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_SOURCES:
            raise ArtifactError(f"DenoiserSettings: parameter 'feature' must be one of {', '.join(FEATURE_SOURCES)}, "
                                f"got {self.feature!r}")
        if self.target not in TARGETS:
            raise ArtifactError(f"DenoiserSettings: parameter 'target' must be one of {', '.join(TARGETS)}, got {self.target!r}")
        DenoiserConfig(hidden_dim=self.hidden_dim, time_dim=self.time_dim, num_blocks=self.num_blocks)

    def config(self, feature_dim: int) -> DenoiserConfig:
        return DenoiserConfig(feature_dim=feature_dim, hidden_dim=self.hidden_dim, time_dim=self.time_dim,
                              num_blocks=self.num_blocks)


class PoseFeatureDataset(Dataset):
    """Pairs (pose (144,), feature (d,)) for the loop; ``collate`` stacks them into ``{"pose", "features"}``."""

    def __init__(self, poses: Tensor, feats: Tensor) -> None:
        if poses.shape[0] != feats.shape[0] or poses.shape[1:] != (POSE_DIM,) or feats.dim() != 2:
            raise ArtifactError(f"PoseFeatureDataset: poses {tuple(poses.shape)} and features {tuple(feats.shape)} do not pair")
        self.poses, self.features = poses.float(), feats.float()

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> dict[str, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {"pose": self.poses[index], "features": self.features[index]}


def denoiser_loss_fn(schedule):
    """The loop's ``loss_fn(net, batch, generator) -> (loss, {"loss"})``: Eq. 11 averaged over the batch."""

    def loss_fn(net: nn.Module, batch: dict[str, Tensor], generator: torch.Generator):
        pose = batch["pose"]
        loss = denoising_loss(net, pose, batch["features"].to(pose.device), schedule, generator).mean()
        return loss, {"loss": float(loss.detach())}

    return loss_fn


def new_denoiser(settings: DenoiserSettings, feats: Tensor, seed: int) -> PoseDenoiser:
    """A freshly initialised denoiser (seeded) whose feature standardisation is fitted to ``feats`` (N, d)."""
    torch.manual_seed(seed)
    model = PoseDenoiser(settings.config(int(feats.shape[1])))
    model.set_feature_stats(feats.float())
    return model


# ------------------------------------------------------------------------------------ targets
def train_gmm(train: SetData, num_components: int, seed: int) -> GaussianMixture:
    """SMPLify's pose prior: a mixture over the training set's true axis-angle body poses (N, 69)."""
    return fit_gmm(train.truth["body_pose"].astype(np.float64), num_components, seed=seed)


def pseudo_ground_truth(body_model, prior: GaussianMixture, train: SetData, options: SMPLifyOptions,
                        chunk: int = 2048) -> Tensor:
    """Pseudo ground-truth poses (N, 144): SMPLify (``options``) fitted to the ground-truth 2D joints
    (visible ones, confidence 1) from the regression's estimate, ``chunk`` images at a time."""
    start, keypoints = regression_start(train), truth_keypoints(train)
    poses = []
    for lo in range(0, len(train), chunk):
        hi = min(lo + chunk, len(train))
        part = type(keypoints)(keypoints.joints[lo:hi], keypoints.confidence[lo:hi], keypoints.intrinsics[lo:hi],
                               keypoints.image_size[lo:hi])
        fit = smplify(body_model, prior, part, start["pose"][lo:hi], start["betas"][lo:hi], start["camera"][lo:hi], options)
        poses.append(fit.pose)
    return torch.cat(poses)


def load_pseudo_poses(path: str | Path, image_ids: np.ndarray) -> Tensor:
    """The pseudo ground truth of ``scorehmr_targets`` (``pose`` (N, 144)), checked against the training ids."""
    arrays = load_npz(path, {"image_id": (-1,), "pose": (-1, POSE_DIM)})
    if list(arrays["image_id"]) != [str(i) for i in image_ids]:
        raise ArtifactError(f"{path}: its image ids differ from the training set's (rerun scorehmr_targets)")
    return torch.from_numpy(arrays["pose"].astype(np.float32))


# ------------------------------------------------------------------------------------ files
def save_denoiser(path: str | Path, model: PoseDenoiser, extra: dict[str, Any]) -> None:
    """The EMA weights, the architecture and ``extra`` (feature source, target, steps)."""
    save_torch(path, {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                      "config": model.config.to_dict(), "extra": extra})


def load_denoiser(path: str | Path) -> tuple[PoseDenoiser, dict[str, Any]]:
    """The denoiser of :func:`save_denoiser` in eval mode, and its ``extra``."""
    payload = load_torch(path)
    if not isinstance(payload, dict) or not {"state", "config", "extra"} <= set(payload):
        raise ArtifactError(f"{path}: not a ScoreHMR denoiser (expected keys state, config, extra)")
    try:
        model = PoseDenoiser(DenoiserConfig(**payload["config"]))
        model.load_state_dict(payload["state"])
    except (TypeError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: the weights do not fit the stored architecture ({str(exc).splitlines()[0]})") from None
    return model.eval(), dict(payload["extra"])


def settings_dict(settings: DenoiserSettings) -> dict[str, Any]:
    return asdict(settings)


# ------------------------------------------------------------------------------------ a run
def training_pairs(train: SetData, settings: DenoiserSettings, pseudo_file: str | Path | None) -> PoseFeatureDataset:
    """The (pose, feature) pairs of ``settings``: true poses, or the pseudo ground truth of ``pseudo_file``."""
    if settings.target == "pseudo":
        if pseudo_file is None:
            raise ArtifactError("training_pairs: target 'pseudo' needs the pseudo ground-truth file")
        poses = load_pseudo_poses(pseudo_file, train.extraction["image_id"])
    else:
        poses = truth_pose(train)
    return PoseFeatureDataset(poses, torch.from_numpy(features(train, settings.feature)))


def fit_denoiser(dataset: PoseFeatureDataset, settings: DenoiserSettings, loop: LoopConfig, *, checkpoint_file: str | Path | None,
                 fingerprint: dict[str, Any], stop_at: int | None = None, desc: str = "train_scorehmr",
                 device: torch.device | str | None = None) -> LoopResult:
    """Train a new denoiser on ``dataset`` with the generic loop (``loop``: a LoopConfig); returns the
    loop's result (``result.ema``: the weights to sample with, on the CPU once moved back)."""
    model = new_denoiser(settings, dataset.features, loop.seed)
    return train(model, dataset, dataset.collate, denoiser_loss_fn(model.config.noise_schedule()), loop,
                 checkpoint_file=checkpoint_file, fingerprint={**fingerprint, **settings_dict(settings)},
                 stop_at=stop_at, desc=desc, device=device)
