"""The perception network: a small residual CNN with three jointly trained heads.

Given an RGB image (B, 3, S, S) with values in [0, 1] it predicts

- **xy heatmaps** (B, J, h, w), h = w = S / 4: per-joint logits whose softmax over the map is a
  distribution of the joint's pixel position (the "xy heatmap" E_xy of HMDiff's pose head);
- **depth maps** (B, J, h, w): per-joint location maps whose value at each pixel is the joint's
  depth relative to the pelvis, in metres along the camera axis (HMDiff's "depth heatmap" E_z).
  With the xy distribution they make a 3D pose distribution: draw a pixel from the softmax, read
  the depth there (:func:`sample_pose_distribution`);
- an **HMR-style SMPL regression** (Kanazawa et al.): iterative error feedback from the mean
  parameters to 6D rotations for the 24 joints in the camera frame (B, 24, 6), betas (B, 10) and a
  weak-perspective camera (s, tx, ty), turned into a perspective translation by
  :func:`weak_to_translation` with the image's focal length (ScoreHMR's convention, after HMR 2.0).
  It reads the pooled feature, a coarse 8 x 8 layout of the feature map and the pose head's own
  (detached) keypoint estimate; in training half of the images give it noised ground-truth
  keypoints instead (:func:`teacher_evidence`);
- the **pooled image feature** (B, C) and **spatial feature tokens** (B, 64, D) from the 8 x 8
  stride-16 feature map, the conditioning of ScoreHMR's and HMDiff's denoisers.

Pixel convention: integer coordinates are pixel centres (see :mod:`humandiff.render.camera`); a
heatmap cell (i, j) covers image pixels [4 j - 0.5, 4 j + 3.5), so its centre is at image
coordinate 4 j + 1.5 (:func:`heatmap_to_image`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from humandiff.body.model import posed_joints
from humandiff.geometry.rotations import matrix_to_axis_angle, matrix_to_rotation_6d, rotation_6d_to_matrix
from humandiff.io.artifacts import ArtifactError, read_checkpoint, restore_state, save_checkpoint

NUM_JOINTS = 24
NUM_BETAS = 10
#: Each SMPL joint's left/right twin (itself for the joints on the midline).
SMPL_MIRROR = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22)
HEATMAP_STRIDE = 4
#: Narrower stems run in the contiguous layout whatever layout the caller chose (see forward).
MIN_CHANNELS_LAST_STEM = 16
#: 180 degrees about x: an upright body (y up) seen by an OpenCV camera (y down) at zero azimuth.
UPRIGHT_IN_CAMERA = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))


@dataclass(frozen=True)
class PerceptionConfig:
    """Architecture. ``widths``: channels of the stem (stride 2) and of the four stages (strides
    4, 8, 16, 16 with dilation 2); ``blocks``: residual blocks per stage; ``head_width``:
    channels of the upsampling pose head; ``token_dim``: channels of the 64 spatial tokens."""

    image_size: int = 128
    widths: tuple[int, ...] = (24, 32, 64, 128, 160)
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    head_width: int = 32
    token_dim: int = 128
    regressor_width: int = 512
    layout_channels: int = 16
    ief_iterations: int = 3
    num_joints: int = NUM_JOINTS
    num_betas: int = NUM_BETAS
    init_scale: float = 0.9  # weak-perspective scale of a body filling ~80% of the image

    def __post_init__(self) -> None:
        if len(self.widths) != 5 or len(self.blocks) != 4:
            raise ArtifactError(f"PerceptionConfig: 'widths' needs 5 entries and 'blocks' 4, got {self.widths}, {self.blocks}")
        if any(int(v) < 1 for v in (*self.widths, *self.blocks, self.head_width, self.token_dim, self.regressor_width,
                                    self.layout_channels, self.ief_iterations, self.num_joints, self.num_betas)):
            raise ArtifactError("PerceptionConfig: every width, block count and size must be a positive integer")
        if self.image_size % 16 != 0 or self.image_size < 32:
            raise ArtifactError(f"PerceptionConfig: 'image_size' must be a multiple of 16 and >= 32, got {self.image_size}")
        if not self.init_scale > 0:
            raise ArtifactError(f"PerceptionConfig: 'init_scale' must be > 0, got {self.init_scale}")
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        object.__setattr__(self, "blocks", tuple(int(v) for v in self.blocks))

    @property
    def heatmap_size(self) -> int:
        return self.image_size // HEATMAP_STRIDE

    @property
    def token_grid(self) -> int:
        return self.image_size // 16

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["widths"], values["blocks"] = list(self.widths), list(self.blocks)
        return values


# ---------------------------------------------------------------------------------- backbone
class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut: (B, C_in, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))
        # Zero-init the last BN scale: each block starts as (nearly) the identity, which trains faster.
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _stage(in_channels: int, out_channels: int, count: int, stride: int, dilation: int = 1) -> nn.Sequential:
    layers = [ResidualBlock(in_channels, out_channels, stride, dilation)]
    layers += [ResidualBlock(out_channels, out_channels, 1, dilation) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class PerceptionNet(nn.Module):
    """Backbone + pose head (xy heatmaps, depth maps) + HMR regressor; see the module docstring."""

    def __init__(self, config: PerceptionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else PerceptionConfig()
        w = config.widths
        self.stem = _conv_bn_relu(3, w[0], stride=2)  # S/2
        self.layer1 = _stage(w[0], w[1], config.blocks[0], 2)  # S/4: the heatmap resolution
        self.layer2 = _stage(w[1], w[2], config.blocks[1], 2)  # S/8
        self.layer3 = _stage(w[2], w[3], config.blocks[2], 2)  # S/16: the token grid
        # The last stage keeps S/16 and widens the receptive field with dilation instead.
        self.layer4 = _stage(w[3], w[4], config.blocks[3], 1, dilation=2)

        # Pose head: two upsampling steps with skip connections back to stride 4 (a light U-Net;
        # HMDiff's head is three deconvolutions over a 7x7 map, ours starts from 8x8 with skips).
        h = config.head_width
        self.reduce = nn.Sequential(nn.Conv2d(w[4], w[2], 1, bias=False), nn.BatchNorm2d(w[2]), nn.ReLU(inplace=True))
        self.up1 = _conv_bn_relu(2 * w[2], 2 * h)
        self.up2 = _conv_bn_relu(2 * h + w[1], h)
        self.refine = _conv_bn_relu(h, h)
        self.heatmap_out = nn.Conv2d(h, config.num_joints, 1)
        self.depth_out = nn.Conv2d(h, config.num_joints, 1)

        self.token_proj = nn.Conv2d(w[4], config.token_dim, 1)

        # HMR regressor with iterative error feedback from the mean parameters. Its input is the
        # pooled feature plus a coarse flattened copy of the token map: average pooling alone
        # throws away where things are, which a network this small cannot afford. Reading the
        # tokens also trains them (they condition HMDiff's cross-attention).
        params = config.num_joints * 6 + config.num_betas + 3
        self.layout = nn.Sequential(nn.Conv2d(config.token_dim, config.layout_channels, 1, bias=False),
                                    nn.BatchNorm2d(config.layout_channels), nn.ReLU(inplace=True))
        # It also reads the pose head's own estimate (soft-argmax xy, integral depth; detached): with
        # left/right-labelled joints the body's orientation becomes geometry, which a small regressor
        # learns from far fewer examples than orientation from appearance alone (an appearance-only
        # regressor stays at the mean pose far longer). HybrIK and Pose2Mesh
        # likewise build the mesh on top of keypoint evidence.
        regressor_in = w[4] + config.layout_channels * config.token_grid**2 + 3 * config.num_joints + params
        self.regressor = nn.Sequential(
            nn.Linear(regressor_in, config.regressor_width), nn.ReLU(inplace=True),
            nn.Linear(config.regressor_width, config.regressor_width), nn.ReLU(inplace=True),
            nn.Linear(config.regressor_width, params),
        )
        # Small last layer: the first iterations stay near the mean, as in HMR.
        nn.init.normal_(self.regressor[-1].weight, std=1e-3)
        nn.init.zeros_(self.regressor[-1].bias)
        init_rot = torch.eye(3).repeat(config.num_joints, 1, 1)
        init_rot[0] = torch.tensor(UPRIGHT_IN_CAMERA)
        init = torch.cat([matrix_to_rotation_6d(init_rot).reshape(-1), torch.zeros(config.num_betas),
                          torch.tensor([math.log(config.init_scale), 0.0, 0.0])])
        self.register_buffer("init_params", init, persistent=True)
        nn.init.zeros_(self.depth_out.bias)

    @property
    def channels_last_safe(self) -> bool:
        # torch 2.13's CPU backward of a 3 -> 8 channel stem in channels_last corrupts the heap
        # (double free); stems of 16 channels or more are fine
        return self.config.widths[0] >= MIN_CHANNELS_LAST_STEM

    def fast_layout(self) -> "PerceptionNet":
        """This model in the channels-last memory layout (faster CPU convolutions), where that is safe; returns self."""
        return self.to(memory_format=torch.channels_last) if self.channels_last_safe else self

    def forward(self, images: Tensor, teacher: Tensor | None = None, teacher_mask: Tensor | None = None
                ) -> dict[str, Tensor]:
        """images (B, 3, S, S) in [0, 1] -> dict with heatmap_logits (B, J, h, w), depth_maps (B, J, h, w)
        in metres, feature (B, C), tokens (B, (S/16)^2, D), pose_6d (B, J, 6), betas (B, L),
        cam (B, 3) = (s, tx, ty) with s > 0, evidence (B, J, 3) the keypoint evidence the regressor read.

        Training only: ``teacher`` (B, J, 3) replaces the regressor's keypoint evidence (x, y in [-1, 1]
        across the image, root-relative depth in metres; see :func:`teacher_evidence`) for the images
        where ``teacher_mask`` (B,) is True."""
        config = self.config
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (config.image_size, config.image_size):
            raise ArtifactError(
                f"PerceptionNet: images must have shape (B, 3, {config.image_size}, {config.image_size}), got {tuple(images.shape)}"
            )
        x = (images - 0.5) / 0.25
        if not self.channels_last_safe:
            x = x.contiguous()  # see fast_layout
        s2 = self.stem(x)
        s4 = self.layer1(s2)
        s8 = self.layer2(s4)
        s16 = self.layer4(self.layer3(s8))

        up = F.interpolate(self.reduce(s16), size=s8.shape[-2:], mode="nearest")
        up = self.up1(torch.cat([up, s8], 1))
        up = F.interpolate(up, size=s4.shape[-2:], mode="bilinear", align_corners=False)
        up = self.refine(self.up2(torch.cat([up, s4], 1)))

        feature = s16.mean(dim=(2, 3))
        token_map = self.token_proj(s16)
        tokens = token_map.flatten(2).transpose(1, 2)
        heatmap_logits, depth_maps = self.heatmap_out(up), self.depth_out(up)

        batch = images.shape[0]
        with torch.no_grad():
            coords, probs = soft_argmax_2d(heatmap_logits.float())
            # cells -> [-1, 1] across the image; depth in metres relative to the pelvis
            evidence = torch.cat([(coords + 0.5) * (2.0 / heatmap_logits.shape[-1]) - 1.0,
                                  integral_depth(probs, depth_maps.float())[..., None]], -1)
            if teacher is not None:
                mask = torch.ones(batch, dtype=torch.bool) if teacher_mask is None else teacher_mask
                evidence = torch.where(mask[:, None, None], teacher.to(evidence.dtype), evidence)
        context = torch.cat([feature, self.layout(token_map).flatten(1), evidence.flatten(1).to(feature.dtype)], 1)
        params = self.init_params.expand(batch, -1)
        for _ in range(config.ief_iterations):
            params = params + self.regressor(torch.cat([context, params], 1))
        joints = config.num_joints
        pose_6d = params[:, : joints * 6].reshape(batch, joints, 6)
        betas = params[:, joints * 6 : joints * 6 + config.num_betas]
        log_scale, translation = params[:, -3], params[:, -2:]
        cam = torch.cat([torch.exp(log_scale.clamp(-5.0, 5.0))[:, None], translation], 1)
        return {
            "heatmap_logits": heatmap_logits,
            "depth_maps": depth_maps,
            "feature": feature,
            "tokens": tokens,
            "pose_6d": pose_6d,
            "betas": betas,
            "cam": cam,
            "evidence": evidence,
        }


def teacher_evidence(joints_2d: Tensor, joints_cam: Tensor, image_size: int, generator: torch.Generator,
                     pixel_noise: float, depth_noise: float) -> Tensor:
    """Ground-truth keypoint evidence for the regressor, noised like a detector's output: joints_2d
    (B, J, 2) pixels, joints_cam (B, J, 3) -> (B, J, 3) with x, y in [-1, 1] across the image (clipped,
    as the heatmaps cannot point outside it) plus Gaussian noise of ``pixel_noise`` pixels, and the
    root-relative depth in metres plus noise of ``depth_noise`` metres. Lifting networks train on
    noised ground truth for the same reason: the regressor learns the geometry from clean labels in
    a few hundred steps, long before the heatmaps are good enough to teach it."""
    # drawn where the generator lives (one CPU stream for every device), used where the batch is
    noise_xy = torch.randn(joints_2d.shape, generator=generator).to(joints_2d.device) * pixel_noise
    xy = ((joints_2d + noise_xy + 0.5) * (2.0 / image_size) - 1.0).clamp(-1.0, 1.0)
    depth = joints_cam[..., 2] - joints_cam[:, :1, 2]
    depth = depth + torch.randn(depth.shape, generator=generator).to(depth.device) * depth_noise
    return torch.cat([xy, depth[..., None]], -1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------- heatmaps
def heatmap_to_image(coords: Tensor | np.ndarray, stride: int = HEATMAP_STRIDE):
    """Heatmap coordinates (..., 2) -> image pixel coordinates (pixel-centre convention)."""
    return (coords + 0.5) * stride - 0.5


def image_to_heatmap(coords: Tensor | np.ndarray, stride: int = HEATMAP_STRIDE):
    """Image pixel coordinates (..., 2) -> heatmap coordinates (inverse of :func:`heatmap_to_image`)."""
    return (coords + 0.5) / stride - 0.5


def _grid(height: int, width: int, like: Tensor) -> tuple[Tensor, Tensor]:
    return (torch.arange(width, dtype=like.dtype, device=like.device),
            torch.arange(height, dtype=like.dtype, device=like.device))


def soft_argmax_2d(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Differentiable expectation of the softmax over each map: logits (B, J, h, w) ->
    (coords (B, J, 2) as (u, v) in heatmap cells, probabilities (B, J, h, w))."""
    batch, joints, height, width = logits.shape
    probs = torch.softmax(logits.reshape(batch, joints, -1), dim=-1).reshape(batch, joints, height, width)
    xs, ys = _grid(height, width, logits)
    u = (probs.sum(2) * xs).sum(-1)
    v = (probs.sum(3) * ys).sum(-1)
    return torch.stack([u, v], -1), probs


def refine_peaks(probs: Tensor, window: int = 5) -> Tensor:
    """Sub-pixel peaks: the probability-weighted mean in a ``window`` x ``window`` patch around each
    map's arg-max (unbiased for a symmetric peak, unlike a global soft-argmax that the tails pull
    towards the centre). probs (B, J, h, w) -> (u, v) (B, J, 2) in heatmap cells."""
    if window < 1 or window % 2 == 0:
        raise ArtifactError(f"refine_peaks: 'window' must be a positive odd integer, got {window}")
    batch, joints, height, width = probs.shape
    flat = probs.reshape(batch * joints, height * width)
    peak = flat.argmax(-1)
    row, col = peak // width, peak % width
    half = window // 2
    offsets = torch.arange(-half, half + 1, device=probs.device)
    rows = (row[:, None] + offsets[None]).clamp(0, height - 1)  # (N, window)
    cols = (col[:, None] + offsets[None]).clamp(0, width - 1)
    valid_r = ((row[:, None] + offsets[None]) >= 0) & ((row[:, None] + offsets[None]) < height)
    valid_c = ((col[:, None] + offsets[None]) >= 0) & ((col[:, None] + offsets[None]) < width)
    maps = probs.reshape(batch * joints, height, width)
    index = torch.arange(batch * joints, device=probs.device)
    patch = maps[index[:, None, None], rows[:, :, None], cols[:, None, :]]  # (N, window, window)
    patch = patch * (valid_r[:, :, None] & valid_c[:, None, :]).to(patch.dtype)
    mass = patch.sum((1, 2)).clamp_min(1e-12)
    u = (patch.sum(1) * cols.to(patch.dtype)).sum(-1) / mass
    v = (patch.sum(2) * rows.to(patch.dtype)).sum(-1) / mass
    return torch.stack([u, v], -1).reshape(batch, joints, 2)


def gaussian_heatmaps(coords: Tensor, height: int, width: int, sigma: float) -> Tensor:
    """Normalised Gaussian distributions (B, J, h, w) centred at coords (B, J, 2) (u, v) in heatmap
    cells; each map sums to 1 (a joint outside the map gives its truncated, renormalised tail)."""
    xs, ys = _grid(height, width, coords)
    gx = torch.exp(-0.5 * ((xs - coords[..., 0:1]) / sigma) ** 2)  # (B, J, w)
    gy = torch.exp(-0.5 * ((ys - coords[..., 1:2]) / sigma) ** 2)  # (B, J, h)
    maps = gy[..., :, None] * gx[..., None, :]
    return maps / maps.sum((-2, -1), keepdim=True).clamp_min(1e-12)


def peak_confidence(probs: Tensor, peaks: Tensor, sigma: float) -> Tensor:
    """Confidence in [0, 1] (B, J): the probability mass in the 3 x 3 cells around each refined peak,
    divided by the mass a perfect prediction (the training target, a Gaussian of ``sigma``) holds
    there, clipped at 1. A spread-out or multi-modal map gets a low confidence."""
    batch, joints, height, width = probs.shape
    centre = peaks.round()
    xs, ys = _grid(height, width, probs)
    near_x = ((xs - centre[..., 0:1]).abs() <= 1).to(probs.dtype)
    near_y = ((ys - centre[..., 1:2]).abs() <= 1).to(probs.dtype)
    mass = torch.einsum("bjhw,bjh,bjw->bj", probs, near_y, near_x)
    offsets = torch.arange(-1, 2, dtype=probs.dtype, device=probs.device)
    one_d = torch.exp(-0.5 * (offsets / sigma) ** 2).sum()
    full = torch.exp(-0.5 * (torch.arange(-50, 51, dtype=probs.dtype, device=probs.device) / sigma) ** 2).sum()
    ideal = (one_d / full) ** 2
    return (mass / ideal).clamp(0.0, 1.0)


def integral_depth(probs: Tensor, depth_maps: Tensor) -> Tensor:
    """Expected depth under the xy distribution: probs, depth_maps (B, J, h, w) -> (B, J)."""
    return (probs * depth_maps).sum((-2, -1))


def sample_pose_distribution(probs: Tensor, depth_maps: Tensor, samples: int, generator: torch.Generator | None = None
                             ) -> Tensor:
    """Draw poses from the heatmap distribution (HMDiff's U): per joint a cell from its xy softmax and the
    depth at that cell. probs, depth_maps (B, J, h, w) -> (B, samples, J, 3) as (u, v) heatmap cells
    and root-relative depth in metres."""
    batch, joints, height, width = probs.shape
    flat = probs.reshape(batch * joints, height * width).clamp_min(0)
    cells = torch.multinomial(flat, samples, replacement=True, generator=generator)  # (B*J, N)
    depth = torch.gather(depth_maps.reshape(batch * joints, -1), 1, cells)
    u, v = (cells % width).to(probs.dtype), (cells // width).to(probs.dtype)
    poses = torch.stack([u, v, depth], -1).reshape(batch, joints, samples, 3)
    return poses.transpose(1, 2)


# ---------------------------------------------------------------------------------- cameras and SMPL
def weak_to_translation(cam: Tensor, focal: Tensor, image_size: int) -> Tensor:
    """Weak-perspective (s, tx, ty) (B, 3) -> camera-frame SMPL translation (B, 3):
    (tx, ty, 2 f / (s S)), with the image's focal length f (B,) in pixels and size S (HMR 2.0)."""
    depth = 2.0 * focal / (image_size * cam[:, 0]).clamp_min(1e-6)
    return torch.stack([cam[:, 1], cam[:, 2], depth], -1)


def translation_to_weak(translation: Tensor, focal: Tensor, image_size: int) -> Tensor:
    """Inverse of :func:`weak_to_translation`: (B, 3) -> (s, tx, ty) (B, 3)."""
    scale = 2.0 * focal / (image_size * translation[:, 2].clamp_min(1e-6))
    return torch.stack([scale, translation[:, 0], translation[:, 1]], -1)


def smpl_joints_from_rotations(body_model, rotations: Tensor, betas: Tensor, transl: Tensor | None = None) -> Tensor:
    """SMPL's 24 joints (B, 24, 3) for local rotation matrices (B, 24, 3, 3) and betas (B, L).

    The body pose goes through :func:`humandiff.body.posed_joints` (axis-angle; body joints stay
    well inside (-pi, pi)); the root rotation is applied as a matrix about the root joint, which
    avoids the axis-angle singularity at pi where an upright body seen by a y-down camera sits.
    """
    batch = rotations.shape[0]
    body_pose = matrix_to_axis_angle(rotations[:, 1:]).reshape(batch, -1)
    zeros = torch.zeros(batch, 3, dtype=rotations.dtype, device=rotations.device)
    joints = posed_joints(body_model, zeros, body_pose, betas, zeros)
    root = joints[:, :1]
    joints = root + torch.einsum("bij,bkj->bki", rotations[:, 0], joints - root)
    return joints if transl is None else joints + transl[:, None]


def regression_to_smpl(pose_6d: Tensor, betas: Tensor, cam: Tensor, focal: Tensor, image_size: int) -> dict[str, Tensor]:
    """The regression as camera-frame SMPL parameters: global_orient (B, 3), body_pose (B, 69) axis-angle,
    betas (B, L), transl (B, 3), rotations (B, 24, 3, 3)."""
    rotations = rotation_6d_to_matrix(pose_6d)
    axis_angle = matrix_to_axis_angle(rotations)
    return {
        "global_orient": axis_angle[:, 0],
        "body_pose": axis_angle[:, 1:].reshape(len(pose_6d), -1),
        "betas": betas,
        "transl": weak_to_translation(cam, focal, image_size),
        "rotations": rotations,
    }


def project_camera_points(points: Tensor, intrinsics: Tensor) -> Tensor:
    """Camera-frame points (B, N, 3), intrinsics (B, 4) [fx, fy, cx, cy] -> pixels (B, N, 2)."""
    z = points[..., 2:3].clamp_min(1e-3)
    xy = points[..., :2] / z
    return xy * intrinsics[:, None, :2] + intrinsics[:, None, 2:]


# ---------------------------------------------------------------------------------- training loss
@dataclass(frozen=True)
class LossWeights:
    """Weights of the joint training objective (see :func:`perception_loss`)."""

    heatmap: float = 1.0        # cross-entropy of the xy softmax against the Gaussian target
    keypoint: float = 1.0       # L1 of the soft-argmax (heatmap cells)
    depth: float = 1.0          # target-weighted L1 of the depth maps + L1 of the integral depth (m)
    joints3d: float = 5.0       # L1 of root-relative regressed joints (m)
    joints2d: float = 0.02      # L1 of projected regressed joints (image pixels)
    rotations: float = 1.0      # squared error of the rotation matrices
    betas: float = 0.01         # squared error of betas
    sigma: float = 1.0          # Gaussian target sigma, heatmap cells
    occluded_weight: float = 0.5  # weight of the heatmap terms for in-image but hidden joints

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value >= 0 or not math.isfinite(value):
                raise ArtifactError(f"LossWeights: '{name}' must be a finite number >= 0, got {value}")
        if not self.sigma > 0:
            raise ArtifactError(f"LossWeights: 'sigma' must be > 0, got {self.sigma}")


def perception_loss(outputs: dict[str, Tensor], batch: dict[str, Tensor], body_model, weights: LossWeights,
                    image_size: int) -> tuple[Tensor, dict[str, float]]:
    """The joint objective for one batch; returns (scalar loss, {term: value}).

    ``batch`` holds joints_2d (B, J, 2) image pixels, visible and in_image (B, J) bool,
    joints_cam (B, J, 3) camera-frame metres, rotations_cam (B, J, 3, 3), betas (B, L),
    intrinsics (B, 4). The heatmap and 2D terms skip joints outside the image.
    """
    logits, depth_maps = outputs["heatmap_logits"], outputs["depth_maps"]
    batch_size, joints, height, width = logits.shape
    target_hm = image_to_heatmap(batch["joints_2d"])
    in_image = batch["in_image"].to(logits.dtype)
    joint_weight = in_image * torch.where(batch["visible"], 1.0, weights.occluded_weight).to(logits.dtype)
    denominator = joint_weight.sum().clamp_min(1.0)

    target_maps = gaussian_heatmaps(target_hm, height, width, weights.sigma)
    log_probs = torch.log_softmax(logits.reshape(batch_size, joints, -1), -1).reshape_as(logits)
    heatmap_ce = -(target_maps * log_probs).sum((-2, -1))
    # Cross-entropy minus the target's entropy = KL: zero for a perfect prediction, easier to read.
    entropy = -(target_maps * torch.log(target_maps.clamp_min(1e-12))).sum((-2, -1))
    heatmap_term = ((heatmap_ce - entropy) * joint_weight).sum() / denominator

    coords, probs = soft_argmax_2d(logits)
    keypoint_term = ((coords - target_hm).abs().sum(-1) * joint_weight).sum() / denominator

    joints_cam = batch["joints_cam"]
    rel_depth = joints_cam[..., 2] - joints_cam[:, :1, 2]  # (B, J)
    map_error = (target_maps * (depth_maps - rel_depth[..., None, None]).abs()).sum((-2, -1))
    integral_error = (integral_depth(probs, depth_maps) - rel_depth).abs()
    depth_term = ((map_error + integral_error) * in_image).sum() / in_image.sum().clamp_min(1.0)

    rotations = rotation_6d_to_matrix(outputs["pose_6d"])
    rotation_term = ((rotations - batch["rotations_cam"]) ** 2).sum((-2, -1)).mean()
    betas_term = ((outputs["betas"] - batch["betas"]) ** 2).sum(-1).mean()
    predicted = smpl_joints_from_rotations(body_model, rotations, outputs["betas"])
    joints3d_term = ((predicted - predicted[:, :1]) - (joints_cam - joints_cam[:, :1])).abs().sum(-1).mean()
    transl = weak_to_translation(outputs["cam"], batch["intrinsics"][:, 0], image_size)
    pixels = project_camera_points(predicted + transl[:, None], batch["intrinsics"])
    # Clamp the residual so a body that lands behind the camera early in training cannot blow up the loss.
    joints2d_error = (pixels - batch["joints_2d"]).abs().clamp_max(image_size).sum(-1)
    joints2d_term = (joints2d_error * in_image).sum() / in_image.sum().clamp_min(1.0)

    terms = {
        "heatmap": heatmap_term, "keypoint": keypoint_term, "depth": depth_term, "joints3d": joints3d_term,
        "joints2d": joints2d_term, "rotations": rotation_term, "betas": betas_term,
    }
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


# ---------------------------------------------------------------------------------- inference
@torch.no_grad()
def decode_outputs(outputs: dict[str, Tensor], intrinsics: Tensor, image_size: int, sigma: float,
                   window: int = 5) -> dict[str, Tensor]:
    """Network outputs -> keypoints (B, J, 2) image pixels (refined sub-pixel peaks), confidence (B, J),
    probs (B, J, h, w), depth (B, J) root-relative metres (integral), and the regression as
    camera-frame SMPL (see :func:`regression_to_smpl`) plus its joints (B, 24, 3) in the camera frame."""
    probs = torch.softmax(outputs["heatmap_logits"].flatten(2), -1).reshape_as(outputs["heatmap_logits"])
    peaks = refine_peaks(probs, window)
    smpl = regression_to_smpl(outputs["pose_6d"], outputs["betas"], outputs["cam"], intrinsics[:, 0], image_size)
    return {
        "keypoints": heatmap_to_image(peaks),
        "confidence": peak_confidence(probs, peaks, sigma),
        "probs": probs,
        "depth": integral_depth(probs, outputs["depth_maps"]),
        **smpl,
    }


def save_perception(path: str | Path, model: PerceptionNet, extra: dict[str, Any] | None = None) -> None:
    """{config, state_dict, extra} by :func:`humandiff.io.save_checkpoint` (loadable with weights_only=True)."""
    save_checkpoint(path, model.config.to_dict(), model.state_dict(), extra)


def load_perception(path: str | Path) -> tuple[PerceptionNet, dict[str, Any]]:
    """The model (eval mode) and the ``extra`` dict saved by :func:`save_perception`."""
    payload = read_checkpoint(path)
    config = payload["config"]
    try:
        model = PerceptionNet(PerceptionConfig(**{**config, "widths": tuple(config["widths"]),
                                                  "blocks": tuple(config["blocks"])}))
    except (TypeError, KeyError) as exc:
        raise ArtifactError(f"{path}: field 'config' does not describe a perception model ({type(exc).__name__})") from None
    return restore_state(model, payload["state_dict"], path), payload["extra"]


@torch.no_grad()
def predict(model: PerceptionNet, images: np.ndarray, intrinsics: np.ndarray, body_model, batch_size: int = 128,
            sigma: float = 1.0, window: int = 5, progress=None) -> dict[str, np.ndarray]:
    """Run ``model`` (eval mode) on uint8 images (N, S, S, 3) with their intrinsics (N, 4) [fx, fy, cx, cy].

    Returns numpy arrays: keypoints (N, J, 2) image pixels, confidence (N, J), heatmaps (N, J, h, w)
    softmax probabilities, depth_maps (N, J, h, w) metres, depth (N, J) root-relative metres,
    feature (N, C), tokens (N, T, D), pose_6d (N, 24, 6), global_orient (N, 3) and body_pose (N, 69)
    camera-frame axis-angle, betas (N, L), cam (N, 3) weak perspective, transl (N, 3) camera-frame
    SMPL translation, joints_cam (N, 24, 3) the regressed joints in the camera frame.
    ``progress`` (a callable taking an image count) is called after each batch.
    """
    from humandiff.perception.dataset import images_to_tensor

    if len(images) != len(intrinsics):
        raise ArtifactError(f"predict: {len(images)} images but {len(intrinsics)} intrinsics")
    if len(images) == 0:
        raise ArtifactError("predict: no image given")
    model.eval()
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        chunk = images_to_tensor(np.ascontiguousarray(images[start : start + batch_size]))
        k = torch.as_tensor(intrinsics[start : start + batch_size], dtype=torch.float32)
        raw = model(chunk)
        decoded = decode_outputs(raw, k, model.config.image_size, sigma, window)
        joints = smpl_joints_from_rotations(body_model, decoded["rotations"], decoded["betas"], decoded["transl"])
        values = {
            "keypoints": decoded["keypoints"], "confidence": decoded["confidence"], "heatmaps": decoded["probs"],
            "depth_maps": raw["depth_maps"], "depth": decoded["depth"], "feature": raw["feature"], "tokens": raw["tokens"],
            "pose_6d": raw["pose_6d"], "global_orient": decoded["global_orient"], "body_pose": decoded["body_pose"],
            "betas": decoded["betas"], "cam": raw["cam"], "transl": decoded["transl"], "joints_cam": joints,
        }
        for name, value in values.items():
            outputs.setdefault(name, []).append(value.float().numpy())
        if progress is not None:
            progress(len(chunk))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def evaluate_predictions(predictions: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Keypoint and regression accuracy of :func:`predict`'s output against shard ground truth
    (joints_2d, in_image, visible, joints_cam, bbox).

    PCK over all 24 SMPL joints that lie in the image, threshold alpha x the larger side of the
    silhouette's bounding box (also over visible joints only, and over the LSP-14 subset);
    regression MPJPE / PA-MPJPE in mm on the 24 joints (pelvis-aligned) and on LSP-14; the
    heatmaps' root-relative depth error in mm.
    """
    from humandiff.eval.mesh import SMPL_TO_LSP14, bbox_size, mpjpe, pa_mpjpe, pck

    size = bbox_size(truth["bbox"])
    in_image, visible = truth["in_image"].astype(bool), truth["visible"].astype(bool)
    lsp = np.zeros_like(in_image)
    lsp[:, list(SMPL_TO_LSP14)] = True
    metrics: dict[str, float] = {}
    for alpha in (0.05, 0.1):
        metrics[f"pck_{alpha}"] = pck(predictions["keypoints"], truth["joints_2d"], size, alpha, in_image)[0]
        metrics[f"pck_{alpha}_visible"] = pck(predictions["keypoints"], truth["joints_2d"], size, alpha, visible)[0]
        metrics[f"pck_{alpha}_lsp14"] = pck(predictions["keypoints"], truth["joints_2d"], size, alpha, in_image & lsp)[0]
    metrics["keypoint_error_px"] = float(np.linalg.norm(predictions["keypoints"] - truth["joints_2d"], axis=-1)[in_image].mean())
    # Of the PCK@0.1 misses, the share that sit on the ground truth of the joint's mirror twin
    # (left <-> right): the signature of a front/back confusion rather than of imprecision.
    threshold = 0.1 * size[:, None]
    miss = (np.linalg.norm(predictions["keypoints"] - truth["joints_2d"], axis=-1) > threshold) & in_image
    twin = np.array(SMPL_MIRROR)
    swapped = np.linalg.norm(predictions["keypoints"] - truth["joints_2d"][:, twin], axis=-1) <= threshold
    metrics["swap_share_of_misses_0.1"] = float((miss & swapped).sum() / max(miss.sum(), 1))
    regressed_2d = project_camera_points(torch.as_tensor(predictions["joints_cam"]),
                                         torch.as_tensor(truth["intrinsics"], dtype=torch.float32)).numpy()
    metrics["regression_pck_0.1"] = pck(regressed_2d, truth["joints_2d"], size, 0.1, in_image)[0]
    metrics["regression_mpjpe_mm"] = float(1000 * mpjpe(predictions["joints_cam"], truth["joints_cam"]).mean())
    metrics["regression_pa_mpjpe_mm"] = float(1000 * pa_mpjpe(predictions["joints_cam"], truth["joints_cam"]).mean())
    metrics["regression_mpjpe_lsp14_mm"] = float(1000 * mpjpe(predictions["joints_cam"], truth["joints_cam"],
                                                              joints=SMPL_TO_LSP14).mean())
    metrics["regression_pa_mpjpe_lsp14_mm"] = float(1000 * pa_mpjpe(predictions["joints_cam"], truth["joints_cam"],
                                                                    joints=SMPL_TO_LSP14).mean())
    rel_depth = truth["joints_cam"][..., 2] - truth["joints_cam"][:, :1, 2]
    metrics["heatmap_depth_error_mm"] = float(1000 * np.abs(predictions["depth"] - rel_depth)[in_image].mean())
    metrics["mean_confidence"] = float(predictions["confidence"][in_image].mean())
    return metrics
