"""Tests for humandiff.motion.hml3d: the 263-d HumanML3D representation and its recovery."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from humandiff.geometry.rotations import axis_angle_to_matrix, quaternion_apply, quaternion_conjugate, yaw_to_matrix
from humandiff.io.artifacts import ArtifactError
from humandiff.motion import hml3d

# A symmetric SMPL-like T-pose (metres, Y up, facing +Z, left at +X), feet on y = 0.
REST_JOINTS = np.array(
    [
        [0.00, 0.93, 0.00], [0.07, 0.84, -0.01], [-0.07, 0.84, -0.01], [0.00, 1.04, -0.02],
        [0.11, 0.46, 0.00], [-0.11, 0.46, 0.00], [0.00, 1.17, 0.00], [0.09, 0.06, -0.04],
        [-0.09, 0.06, -0.04], [0.00, 1.22, 0.01], [0.12, 0.00, 0.08], [-0.12, 0.00, 0.08],
        [0.00, 1.44, -0.02], [0.08, 1.35, -0.01], [-0.08, 1.35, -0.01], [0.00, 1.51, 0.03],
        [0.19, 1.38, -0.02], [-0.19, 1.38, -0.02], [0.45, 1.37, -0.04], [-0.45, 1.37, -0.04],
        [0.71, 1.38, -0.03], [-0.71, 1.38, -0.03],
    ]
)
PARENTS = list(hml3d.HML_PARENTS)
REFERENCE_OFFSETS = hml3d.offsets_from_rest_joints(REST_JOINTS)


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(T, 22, 3) -> (T, 21) lengths of the bones ending at joints 1..21."""
    return np.linalg.norm(joints[:, 1:] - joints[:, PARENTS[1:]], axis=-1)


def smpl_style_fk(local_axis_angle: np.ndarray, root_yaw: np.ndarray, root_position: np.ndarray,
                  bone_scale: np.ndarray | None = None) -> np.ndarray:
    """Joints (T, 22, 3) of REST_JOINTS' skeleton (bones scaled) posed by per-joint axis-angles (T, 22, 3).

    SMPL's convention, written independently of the library's FK: a joint's rotation turns the
    bones to its children, the root's global rotation is yaw @ local[0].
    """
    rotations = axis_angle_to_matrix(torch.from_numpy(local_axis_angle))
    world = [yaw_to_matrix(torch.from_numpy(root_yaw)) @ rotations[:, 0]]
    positions = [torch.from_numpy(root_position)]
    offsets = torch.from_numpy(REST_JOINTS - REST_JOINTS[np.clip(PARENTS, 0, None)])
    if bone_scale is not None:
        offsets = offsets * torch.from_numpy(bone_scale)[:, None]
    for joint in range(1, 22):
        parent = PARENTS[joint]
        positions.append(positions[parent] + (world[parent] @ offsets[joint][:, None])[..., 0])
        world.append(world[parent] @ rotations[:, joint])
    return torch.stack(positions, 1).numpy()


def synthetic_motion(seed: int, frames: int = 120, bone_scale: np.ndarray | None = None,
                     symmetric: bool = False) -> np.ndarray:
    """Smooth random joint rotations, a turning root (a smooth drift plus a sharp 180-degree turn
    over 10 frames), walking forward with a vertical bounce. (T, 22, 3)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / hml3d.FPS
    amplitude = rng.uniform(0.05, 0.6, (1, 22, 3))
    frequency = rng.uniform(0.3, 2.0, (1, 22, 3))
    phase = rng.uniform(0, 2 * math.pi, (1, 22, 3))
    local = amplitude * np.sin(2 * math.pi * frequency * t + phase)
    local[:, 0] *= 0.3  # the root tilts a little; its heading comes from the yaw below
    if symmetric:
        local[:] = 0.0
        local[:, 1, 0] = local[:, 2, 0] = 0.3 * np.sin(2 * math.pi * t[:, 0, 0])
    index = np.arange(frames)
    yaw = (rng.uniform(-math.pi, math.pi) + 0.04 * index + 0.5 * np.sin(index / 15.0)
           + math.pi * np.clip((index - frames // 2) / 10.0, 0.0, 1.0))
    step = 0.05 * np.stack([np.sin(yaw), np.zeros(frames), np.cos(yaw)], -1)
    root = np.cumsum(step, 0) + np.array([rng.uniform(-3, 3), 0.0, rng.uniform(-3, 3)])
    root[:, 1] = 0.95 + 0.03 * np.sin(2 * math.pi * 2.0 * index / hml3d.FPS)
    return smpl_style_fk(local, yaw, root, bone_scale)


def recover(features: np.ndarray) -> np.ndarray:
    return hml3d.recover_from_ric(torch.from_numpy(features)).numpy()


# --------------------------------------------------------------------------- constants


def test_constants_are_consistent():
    assert len(hml3d.HML_JOINT_NAMES) == len(hml3d.HML_PARENTS) == hml3d.NUM_JOINTS == 22
    for chain in hml3d.KINEMATIC_CHAINS:
        for parent, child in zip(chain[:-1], chain[1:]):
            assert hml3d.HML_PARENTS[child] == parent
    assert sorted(j for chain in hml3d.KINEMATIC_CHAINS for j in chain[1:]) == list(range(1, 22))
    perm = hml3d.MIRROR_PERM
    assert [perm[j] for j in perm] == list(range(22))
    for joint, name in enumerate(hml3d.HML_JOINT_NAMES):
        mirrored = hml3d.HML_JOINT_NAMES[perm[joint]]
        expected = {"l_": "r_", "r_": "l_"}.get(name[:2], name[:2]) + name[2:]
        assert mirrored == expected
    slices = list(hml3d.FEATURE_GROUPS.values())
    assert slices[0].start == 0 and slices[-1].stop == hml3d.FEATURE_DIM == 263
    assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:]))
    assert [s.stop - s.start for s in slices] == [1, 2, 1, 63, 126, 66, 4]


def test_offsets_from_rest_joints():
    lengths = np.linalg.norm(REFERENCE_OFFSETS[1:], axis=-1)
    assert np.allclose(lengths, bone_lengths(REST_JOINTS[None])[0])
    assert np.allclose(REFERENCE_OFFSETS[1:] / lengths[:, None], hml3d.HML_RAW_OFFSETS[1:])
    assert np.all(REFERENCE_OFFSETS[0] == 0)


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("facing_smoothing", [0.0, 20.0])
@pytest.mark.parametrize("skeleton", ["reference", "other_bone_lengths"])
def test_round_trip_recovers_canonical_joints(facing_smoothing, skeleton):
    rng = np.random.default_rng(100)
    bone_scale = None if skeleton == "reference" else rng.uniform(0.75, 1.3, 22)
    clips = [synthetic_motion(seed, frames=frames, bone_scale=bone_scale)
             for seed, frames in zip(range(4), (120, 64, 199, 41))]
    results = hml3d.joints_to_features_batch(clips, REFERENCE_OFFSETS, facing_smoothing=facing_smoothing)
    for clip, (features, canonical) in zip(clips, results):
        assert features.shape == (len(clip) - 1, 263) and features.dtype == np.float32
        assert canonical.shape == clip.shape and canonical.dtype == np.float32
        error = np.abs(recover(features) - canonical[:-1]).max()
        assert error < 1e-4, f"round-trip error {error * 1000:.4f} mm"
        # retargeted: every bone has the reference length in every frame
        assert np.allclose(bone_lengths(canonical), np.linalg.norm(REFERENCE_OFFSETS[1:], axis=-1), atol=1e-5)


def test_round_trip_with_fast_spins():
    """Half a turn every 4 frames: the wrapped half-angle convention must still integrate exactly."""
    frames = 80
    local = np.zeros((frames, 22, 3))
    local[:, 18, 2] = 0.5
    yaw = np.arange(frames) * (math.pi / 4 + 0.3)
    root = np.stack([np.linspace(0, 2, frames), np.full(frames, 0.93), np.zeros(frames)], -1)
    joints = smpl_style_fk(local, yaw, root)
    features, canonical = hml3d.joints_to_features(joints, REFERENCE_OFFSETS, facing_smoothing=0.0)
    assert np.abs(recover(features) - canonical[:-1]).max() < 1e-4


def test_batch_equals_single_clip():
    clips = [synthetic_motion(seed, frames=50 + 10 * seed) for seed in range(3)]
    batch = hml3d.joints_to_features_batch(clips, REFERENCE_OFFSETS)
    for clip, (features, canonical) in zip(clips, batch):
        single_features, single_canonical = hml3d.joints_to_features(clip, REFERENCE_OFFSETS)
        assert np.array_equal(features, single_features)
        assert np.array_equal(canonical, single_canonical)
    assert hml3d.joints_to_features_batch([], REFERENCE_OFFSETS) == []


# --------------------------------------------------------------------------- retarget, IK, FK


def test_retarget_keeps_bone_directions_and_scales_root():
    bone_scale = np.random.default_rng(7).uniform(0.7, 1.4, 22)
    joints = synthetic_motion(1, frames=30, bone_scale=bone_scale)
    out = hml3d.retarget(joints, REFERENCE_OFFSETS)
    reference_lengths = np.linalg.norm(REFERENCE_OFFSETS[1:], axis=-1)
    assert np.allclose(bone_lengths(out), reference_lengths, atol=1e-9)
    source_dirs = joints[:, 1:] - joints[:, PARENTS[1:]]
    out_dirs = out[:, 1:] - out[:, PARENTS[1:]]
    source_dirs /= np.linalg.norm(source_dirs, axis=-1, keepdims=True)
    out_dirs /= np.linalg.norm(out_dirs, axis=-1, keepdims=True)
    assert np.allclose(source_dirs, out_dirs, atol=1e-9)
    source_leg = bone_lengths(joints)[:, [3, 6, 4, 7]].mean(0).sum() / 2
    reference_leg = reference_lengths[[3, 6, 4, 7]].sum() / 2
    assert np.allclose(out[:, 0], joints[:, 0] * reference_leg / source_leg, atol=1e-12)


def test_ik_then_fk_reproduces_joints_on_the_reference_skeleton():
    joints = hml3d.retarget(synthetic_motion(2, frames=40), REFERENCE_OFFSETS)
    rotations = hml3d.inverse_kinematics(joints, REFERENCE_OFFSETS)
    assert rotations.shape == (40, 22, 3, 3)
    eye = np.broadcast_to(np.eye(3), rotations.shape)
    assert np.allclose(rotations.swapaxes(-1, -2) @ rotations, eye, atol=1e-10)
    assert np.allclose(np.linalg.det(rotations), 1.0, atol=1e-10)
    # the root entry is the facing yaw
    yaw = hml3d.facing_yaw(joints)
    assert np.allclose(rotations[:, 0], yaw_to_matrix(torch.from_numpy(yaw)).numpy(), atol=1e-12)
    rebuilt = hml3d.forward_kinematics(rotations, joints[:, 0], REFERENCE_OFFSETS)
    assert np.allclose(rebuilt, joints, atol=1e-9)


def test_local_rotations_do_not_depend_on_heading():
    joints = hml3d.retarget(synthetic_motion(3, frames=20), REFERENCE_OFFSETS)
    turned = joints @ yaw_to_matrix(torch.tensor(1.234, dtype=torch.float64)).numpy().T
    original = hml3d.inverse_kinematics(joints, REFERENCE_OFFSETS)
    rotated = hml3d.inverse_kinematics(turned, REFERENCE_OFFSETS)
    assert np.allclose(original[:, 1:], rotated[:, 1:], atol=1e-9)


def test_features_invariant_to_global_placement():
    joints = synthetic_motion(4, frames=60)
    moved = joints @ yaw_to_matrix(torch.tensor(-2.5, dtype=torch.float64)).numpy().T + np.array([3.0, 0.4, -7.0])
    features, canonical = hml3d.joints_to_features(joints, REFERENCE_OFFSETS)
    moved_features, moved_canonical = hml3d.joints_to_features(moved, REFERENCE_OFFSETS)
    assert np.allclose(features, moved_features, atol=1e-5)
    assert np.allclose(canonical, moved_canonical, atol=1e-5)


# --------------------------------------------------------------------------- canonical frame, mirror


def test_canonical_joints_face_plus_z_on_the_floor():
    _, canonical = hml3d.joints_to_features(synthetic_motion(5), REFERENCE_OFFSETS)
    assert abs(hml3d.facing_yaw(canonical)[0]) < 1e-6
    assert np.allclose(canonical[0, 0, [0, 2]], 0.0, atol=1e-6)
    assert abs(canonical[..., 1].min()) < 1e-6
    direct = hml3d.canonicalize(synthetic_motion(5))
    assert abs(hml3d.facing_yaw(direct)[0]) < 1e-9 and abs(direct[..., 1].min()) < 1e-12
    # the T-pose of REST_JOINTS faces +Z: right-minus-left points to -X
    assert abs(hml3d.facing_yaw(REST_JOINTS[None])[0]) < 1e-12


def test_mirror_twice_is_identity_and_negates_x():
    joints = synthetic_motion(6, frames=10)
    mirrored = hml3d.mirror_joints(joints)
    assert np.array_equal(hml3d.mirror_joints(mirrored), joints)
    assert np.array_equal(mirrored[:, 1, 0], -joints[:, 2, 0])  # new left hip = old right hip, x negated
    assert np.array_equal(mirrored[:, 1, 1:], joints[:, 2, 1:])


def test_features_of_mirrored_motion_recover_to_mirrored_canonical():
    joints = synthetic_motion(7, frames=90, symmetric=False)
    features, canonical = hml3d.joints_to_features(joints, REFERENCE_OFFSETS)
    mirrored_features, mirrored_canonical = hml3d.joints_to_features(hml3d.mirror_joints(joints), REFERENCE_OFFSETS)
    expected = hml3d.mirror_joints(canonical)
    assert np.allclose(mirrored_canonical, expected, atol=1e-5)
    assert np.abs(recover(mirrored_features) - expected[:-1]).max() < 1e-4
    # turning direction flips, heights and the left/right contacts swap
    assert np.allclose(mirrored_features[:, 0], -features[:, 0], atol=1e-6)
    assert np.allclose(mirrored_features[:, 3], features[:, 3], atol=1e-6)
    assert np.array_equal(mirrored_features[:, 259:261], features[:, 261:263])


# --------------------------------------------------------------------------- known answers


def test_walking_straight_known_answer():
    frames, speed = 30, 0.05
    yaw = np.full(frames, math.pi / 2)  # facing +X, walking along +X
    root = np.stack([speed * np.arange(frames), np.full(frames, 0.93), np.zeros(frames)], -1)
    joints = smpl_style_fk(np.zeros((frames, 22, 3)), yaw, root)
    features, _ = hml3d.joints_to_features(joints, REFERENCE_OFFSETS)
    assert np.allclose(features[:, 0], 0.0, atol=1e-7)
    assert np.allclose(features[:, 1:3], [0.0, speed], atol=1e-6)
    assert np.allclose(features[:, 3], 0.93, atol=1e-6)  # pelvis height above the feet
    assert np.allclose(features[:, hml3d.RIC], features[:1, hml3d.RIC], atol=1e-6)
    assert np.allclose(features[:, hml3d.LOCAL_VEL].reshape(-1, 22, 3), [0.0, 0.0, speed], atol=1e-6)
    assert np.all(features[:, hml3d.CONTACTS] == 0.0)  # 0.05^2 > 0.002: sliding feet are not in contact
    slow_root = root * np.array([0.6, 1.0, 1.0])  # 0.03 m/frame: 0.0009 < 0.002
    slow, _ = hml3d.joints_to_features(smpl_style_fk(np.zeros((frames, 22, 3)), yaw, slow_root), REFERENCE_OFFSETS)
    assert np.all(slow[:, hml3d.CONTACTS] == 1.0)


def test_turning_in_place_known_answer():
    frames, rate = 40, 0.1  # turning left by 0.1 rad per frame
    yaw = rate * np.arange(frames)
    root = np.tile([0.0, 0.93, 0.0], (frames, 1))
    joints = smpl_style_fk(np.zeros((frames, 22, 3)), yaw, root)
    features, canonical = hml3d.joints_to_features(joints, REFERENCE_OFFSETS, facing_smoothing=0.0)
    # HumanML3D convention: half the per-frame change of the root-frame angle (-yaw)
    assert np.allclose(features[:, 0], -rate / 2, atol=1e-6)
    assert np.allclose(features[:, 1:3], 0.0, atol=1e-6)
    assert np.allclose(features[:, hml3d.RIC], features[:1, hml3d.RIC], atol=1e-6)
    rotation, position = hml3d.recover_root(torch.from_numpy(features))
    assert np.allclose(position.numpy()[:, [0, 2]], 0.0, atol=1e-6)
    # the recovered root-frame rotation takes each frame's facing direction to +Z
    facing = hml3d.facing_yaw(canonical[:-1])
    forward = torch.from_numpy(np.stack([np.sin(facing), np.zeros_like(facing), np.cos(facing)], -1)).float()
    plus_z = torch.tensor([0.0, 0.0, 1.0]).expand_as(forward)
    assert torch.allclose(quaternion_apply(rotation, forward), plus_z, atol=1e-5)


def test_contacts_fire_for_planted_foot_only():
    frames = 60
    local = np.zeros((frames, 22, 3))
    local[:, 2, 0] = 0.8 * np.sin(2 * math.pi * 1.5 * np.arange(frames) / hml3d.FPS)  # right leg swings
    joints = smpl_style_fk(local, np.zeros(frames), np.tile([0.0, 0.93, 0.0], (frames, 1)))
    features, canonical = hml3d.joints_to_features(joints, REFERENCE_OFFSETS)
    left, right = features[:, 259:261], features[:, 261:263]
    assert np.all(left == 1.0)
    assert right.mean() < 0.3 and np.any(right == 0.0)
    speed_sq = ((canonical[1:] - canonical[:-1]) ** 2).sum(-1)[:, [8, 11]]
    assert np.array_equal(right == 1.0, speed_sq < 0.002)
    strict, _ = hml3d.joints_to_features(joints, REFERENCE_OFFSETS, contact_threshold=1e-12)
    assert np.all(strict[:, 261:263][speed_sq > 1e-6] == 0.0)


# --------------------------------------------------------------------------- recovery in torch


def test_recover_gradient_flows_to_features():
    features, _ = hml3d.joints_to_features(synthetic_motion(8, frames=40), REFERENCE_OFFSETS)
    x = torch.from_numpy(features).requires_grad_(True)
    joints = hml3d.recover_from_ric(x)
    # ric stores absolute heights, so only the root joint reads root_y: the loss includes it
    loss = (joints[-5:, 10] - 1.0).pow(2).sum() + (joints[:, 20] - joints[:, 21]).abs().mean() + joints[:, 0, 1].sum()
    loss.backward()
    grad = x.grad
    assert torch.isfinite(grad).all()
    for group in ("root_rot_vel", "root_lin_vel", "root_y", "ric"):
        assert grad[:, hml3d.FEATURE_GROUPS[group]].abs().sum() > 0, group
    assert torch.all(grad[:, hml3d.ROT.start:] == 0)  # recovery reads only the first 67 dims


def test_recover_gradcheck_and_batching():
    clips = [synthetic_motion(seed, frames=12) for seed in (9, 10)]
    features = torch.from_numpy(np.stack([hml3d.joints_to_features(c, REFERENCE_OFFSETS)[0] for c in clips])).double()
    batched = hml3d.recover_from_ric(features)
    assert batched.shape == (2, 11, 22, 3)
    for index in range(2):
        assert torch.allclose(batched[index], hml3d.recover_from_ric(features[index]))
    # gradcheck over the 67 dims that recovery reads, the rest padded with zeros
    first_dims = features[0, :4, :67].clone().requires_grad_(True)
    padded = lambda f: torch.cat([f, torch.zeros(f.shape[0], 263 - 67, dtype=f.dtype)], -1)  # noqa: E731
    some_joints = lambda f: hml3d.recover_from_ric(padded(f))[:, [0, 7, 21]]  # noqa: E731
    assert torch.autograd.gradcheck(some_joints, (first_dims,), fast_mode=True)
    rotation, position = hml3d.recover_root(features)
    assert rotation.shape == (2, 11, 4) and position.shape == (2, 11, 3)
    assert torch.allclose(rotation[:, 0], torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))


def test_recovery_matches_the_generic_quaternion_rotation():
    # recover_from_ric rotates about y in closed form; the generic quaternion product is the reference
    features = torch.randn(3, 30, 263, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.3
    rotation, root = hml3d.recover_root(features)
    inverse = quaternion_conjugate(rotation)
    step = quaternion_apply(inverse[:, 1:], torch.stack([features[:, :-1, 1], torch.zeros_like(features[:, :-1, 1]),
                                                         features[:, :-1, 2]], -1))
    path = torch.cat([torch.zeros(3, 1, 3, dtype=features.dtype), step.cumsum(1)], 1)
    assert torch.allclose(root[..., [0, 2]], path[..., [0, 2]], atol=1e-12)
    ric = features[..., 4:67].reshape(3, 30, 21, 3)
    root_xz = torch.stack([root[..., 0], 0 * root[..., 0], root[..., 2]], -1)
    world = quaternion_apply(inverse[:, :, None], ric) + root_xz[:, :, None]
    assert torch.allclose(hml3d.recover_from_ric(features), torch.cat([root[:, :, None], world], 2), atol=1e-12)


# --------------------------------------------------------------------------- normalisation


def test_feature_mean_std_averages_std_within_groups():
    rng = np.random.default_rng(11)
    clips = [rng.normal(size=(n, 263)) * rng.uniform(0.1, 3.0, 263) + rng.normal(size=263) for n in (30, 50, 7)]
    for clip in clips:
        clip[:, hml3d.CONTACTS] = 1.0  # a constant group
    mean, std = hml3d.feature_mean_std(clips, min_std=1e-3)
    stacked = np.concatenate(clips)
    assert mean.dtype == std.dtype == np.float32 and mean.shape == std.shape == (263,)
    assert np.allclose(mean, stacked.mean(0), atol=1e-5)
    per_dim = stacked.std(0)
    for name, group in hml3d.FEATURE_GROUPS.items():
        if name == "contacts":
            assert np.allclose(std[group], 1e-3)
        else:
            assert np.allclose(std[group], per_dim[group].mean(), rtol=1e-5)
    eval_mean, eval_std = hml3d.evaluator_mean_std(mean, std, feat_bias=5.0)
    assert np.array_equal(eval_mean, mean)
    assert np.allclose(eval_std[:4], std[:4] / 5.0) and np.allclose(eval_std[259:], std[259:] / 5.0)
    assert np.array_equal(eval_std[4:259], std[4:259])
    normalized = hml3d.normalize_features(clips[0], mean, std)
    assert np.allclose(hml3d.denormalize_features(normalized, mean, std), clips[0], atol=1e-4)
    as_tensor = hml3d.normalize_features(torch.from_numpy(clips[0]), mean, std)
    assert isinstance(as_tensor, torch.Tensor) and np.allclose(as_tensor.numpy(), normalized, atol=1e-6)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_artifact_error():
    good = synthetic_motion(12, frames=5)
    bad_cases = {
        "expected (T, 22, 3)": good[:, :21],
        "NaN or Inf": np.where(np.arange(22)[None, :, None] == 3, np.nan, good),
        "at least 2": good[:1],
    }
    for message, joints in bad_cases.items():
        with pytest.raises(ArtifactError, match=message.replace("(", r"\(").replace(")", r"\)")):
            hml3d.joints_to_features(joints, REFERENCE_OFFSETS)
    infinite = good.copy()
    infinite[2, 5, 1] = np.inf
    with pytest.raises(ArtifactError, match=r"clips\[1\] contains NaN or Inf"):
        hml3d.joints_to_features_batch([good, infinite], REFERENCE_OFFSETS)
    zero_bone = REFERENCE_OFFSETS.copy()
    zero_bone[7] = 0.0
    with pytest.raises(ArtifactError, match="joint 7"):
        hml3d.joints_to_features(good, zero_bone)
    with pytest.raises(ArtifactError, match="reference_offsets has shape"):
        hml3d.retarget(good, REFERENCE_OFFSETS[:21])
    with pytest.raises(ArtifactError, match="contact_threshold"):
        hml3d.joints_to_features(good, REFERENCE_OFFSETS, contact_threshold=-1.0)
    with pytest.raises(ArtifactError, match="facing_smoothing"):
        hml3d.joints_to_features(good, REFERENCE_OFFSETS, facing_smoothing=float("nan"))
    with pytest.raises(ArtifactError, match="rest_joints has shape"):
        hml3d.offsets_from_rest_joints(REST_JOINTS[:20])
    with pytest.raises(ArtifactError, match="torch.Tensor"):
        hml3d.recover_from_ric(np.zeros((4, 263), dtype=np.float32))
    with pytest.raises(ArtifactError, match="features has shape"):
        hml3d.recover_from_ric(torch.zeros(4, 30))
    with pytest.raises(ArtifactError, match="features_list"):
        hml3d.feature_mean_std([np.zeros((3, 262))])
    with pytest.raises(ArtifactError, match="empty"):
        hml3d.feature_mean_std([])
    with pytest.raises(ArtifactError, match="joints has shape"):
        hml3d.mirror_joints(np.zeros((3, 21, 3)))
