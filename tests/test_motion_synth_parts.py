"""Unit tests of the procedural motion pieces that do not need the body model."""

import numpy as np
import pytest

from humandiff.io import ArtifactError
from humandiff.motion import actions, captions, poses
from humandiff.motion.synth import (
    CONTACT_JOINTS,
    SynthClip,
    SynthOptions,
    clip_arrays,
    clip_index,
    clips_by_family,
    family_previews,
    join_actions,
    plan_actions,
    plant_root,
    synth_metrics,
)


def test_mirror_text_swaps_sides_and_rotation_sense():
    assert captions.mirror_text("Raises the left hand, then the right.") == "Raises the right hand, then the left."
    assert captions.mirror_text("walks in a circle clockwise") == "walks in a circle counterclockwise"
    assert captions.mirror_text("walks in a circle counterclockwise") == "walks in a circle clockwise"
    assert captions.mirror_text("a leftover bright light") == "a leftover bright light"  # whole words only


def test_mirror_dofs_is_an_involution_and_swaps_sides():
    rng = np.random.default_rng(0)
    dofs = rng.normal(size=(5, poses.NUM_DOFS))
    mirrored = poses.mirror_dofs(dofs)
    np.testing.assert_array_equal(poses.mirror_dofs(mirrored), dofs)
    i, j = poses.DOF_INDEX["knee_l"], poses.DOF_INDEX["knee_r"]
    np.testing.assert_array_equal(mirrored[:, i], dofs[:, j])
    k = poses.DOF_INDEX["spine_twist"]
    np.testing.assert_array_equal(mirrored[:, k], -dofs[:, k])


def test_rotations_are_proper_and_rest_pose_is_identity():
    rng = np.random.default_rng(1)
    R = poses.dofs_to_smpl_rotations(rng.normal(size=(7, poses.NUM_DOFS)), rng.normal(size=7))
    assert R.shape == (7, 24, 3, 3)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    # All-zero DOFs with zero heading is SMPL's T-pose except that arms hang down (sh_abd = 0).
    zero = poses.dofs_to_smpl_rotations(np.zeros((1, poses.NUM_DOFS)), np.zeros(1))[0]
    arm_down_left = zero[16] @ np.array([1.0, 0, 0])
    np.testing.assert_allclose(arm_down_left, [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(zero[1], np.eye(3), atol=1e-12)


def test_sign_conventions_move_limbs_the_documented_way():
    def rot(name, value, joint, vector):
        v = poses.pose_vector({name: value}, base=None)[None]
        return poses.dofs_to_smpl_rotations(v, np.zeros(1))[0, joint] @ np.asarray(vector, float)

    down = [0, -1, 0]
    assert rot("hip_flex_l", 0.5, 1, down)[2] > 0.4  # thigh forward (+z)
    assert rot("hip_abd_l", 0.5, 1, down)[0] > 0.4  # left leg outward (+x)
    assert rot("hip_abd_r", 0.5, 2, down)[0] < -0.4  # right leg outward (-x)
    assert rot("knee_l", 0.5, 4, down)[2] < -0.4  # shin backward
    assert rot("spine_flex", 0.9, 3, [0, 1, 0])[2] > 0.2  # bend forward
    assert rot("sh_flex_r", 1.5, 17, [-1, 0, 0])[2] > 0.9  # right arm forward from hanging
    assert rot("sh_abd_l", np.pi, 16, [1, 0, 0])[1] > 0.99  # left arm straight up
    # Heading turns the body to its left (+x) for positive yaw.
    R = poses.dofs_to_smpl_rotations(np.zeros((1, poses.NUM_DOFS)), np.array([0.5]))[0, 0]
    assert (R @ np.array([0, 0, 1.0]))[0] > 0.4


@pytest.mark.parametrize("name", sorted(actions.FAMILIES))
def test_every_family_samples_a_valid_track(name):
    rng = np.random.default_rng(3)
    track = actions.sample_action(name, rng, 20.0)
    assert track.dofs.shape == (track.length, poses.NUM_DOFS)
    assert track.yaw_rate.shape == (track.length,) and track.flight.shape == (track.length,)
    assert np.isfinite(track.dofs).all() and track.length >= 10
    assert len(set(track.phrase.simple)) >= 3 and len(track.phrase.simple) == len(track.phrase.progressive)


def test_mirrored_track_swaps_caption_and_turning():
    rng = np.random.default_rng(4)
    track = actions.turn_in_place(rng, 20.0)
    mirrored = track.mirrored()
    assert np.allclose(mirrored.yaw_rate, -track.yaw_rate)
    assert "left" in track.phrase.simple[0] and "right" in mirrored.phrase.simple[0]


def test_planned_clips_respect_length_bounds_and_compose():
    options = SynthOptions()
    rng = np.random.default_rng(5)
    counts = set()
    for _ in range(40):
        tracks = plan_actions(rng, options)
        joined = join_actions(tracks, 8)
        T = joined["dofs"].shape[0]
        assert options.min_frames <= T <= options.max_frames
        assert joined["yaw_rate"].shape == (T,) and joined["flight"].shape == (T,)
        counts.add(len(tracks))
    assert counts == {1, 2, 3}


def test_captions_are_distinct_and_mention_every_action():
    rng = np.random.default_rng(6)
    simple = [["walks forward", "strolls ahead"], ["jumps twice", "hops twice"]]
    prog = [["walking forward", "strolling ahead"], ["jumping twice", "hopping twice"]]
    out = captions.make_captions(simple, prog, rng, 3)
    assert len(out) == len(set(out)) == 3
    for caption in out:
        assert caption.endswith(".") and ("walk" in caption or "stroll" in caption) and "twice" in caption


def _walker(T=40, stride=0.03):
    """Local joints of a toy body whose left foot slides back while planted, then swaps feet."""
    local = np.zeros((T, 24, 3))
    local[:, :, 1] = 1.0  # everything high above the floor ...
    for t in range(T):
        phase = (t // 10) % 2  # 10 frames on each foot
        planted, swinging = (10, 11) if phase == 0 else (11, 10)
        local[t, planted] = [0.0, 0.0, 0.15 - stride * (t % 10)]
        local[t, swinging] = [0.0, 0.12, -0.15 + stride * (t % 10)]
    return local


def test_plant_root_keeps_the_planted_foot_still_and_moves_the_body():
    local = _walker()
    pads = np.zeros(len(CONTACT_JOINTS))
    T = local.shape[0]
    root = plant_root(local, pads, np.zeros(T), np.zeros(T, bool), np.full((T, 2), np.nan), 20.0)
    world = local + root[:, None]
    # Within each stance the planted foot does not move.
    for start in (0, 10, 20, 30):
        foot = 10 if (start // 10) % 2 == 0 else 11
        seg = world[start : start + 10, foot]
        assert np.abs(seg - seg[0]).max() < 1e-9
    assert root[-1, 2] > 1.0  # the body travelled forward
    assert world[:, [10, 11], 1].min() >= -1e-12  # nothing below the floor


def test_plant_root_flies_a_ballistic_arc_with_the_given_velocity():
    T = 30
    local = np.zeros((T, 24, 3))
    local[:, :, 1] = 1.0
    local[:, 10:12, 1] = 0.0
    flight = np.zeros(T, bool)
    flight[10:20] = True
    velocity = np.zeros((T, 2))
    velocity[flight, 0] = 2.0
    root = plant_root(local, np.zeros(len(CONTACT_JOINTS)), np.zeros(T), flight, velocity, 20.0)
    assert root[flight, 1].max() > 0.05 and root[~flight, 1].max() < 1e-12
    assert np.isclose(root[-1, 2] - root[0, 2], 2.0 * 10 / 20.0)


def test_mirrored_dofs_give_mirrored_joint_rotations():
    """R(mirror(d)) = M R(d) M with sides swapped, M = diag(-1, 1, 1): left and right really are mirror images."""
    rng = np.random.default_rng(7)
    dofs = rng.normal(scale=0.6, size=(4, poses.NUM_DOFS))
    heading = rng.normal(size=4)
    R = poses.dofs_to_smpl_rotations(dofs, heading)
    R_mirror = poses.dofs_to_smpl_rotations(poses.mirror_dofs(dofs), -heading)
    M = np.diag([-1.0, 1.0, 1.0])
    swap = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
    np.testing.assert_allclose(R_mirror, M @ R[:, swap] @ M, atol=1e-12)


@pytest.mark.parametrize("fields, message", [
    ({"fps": 0.0}, "'fps' must be > 0"),
    ({"min_frames": 0}, "'min_frames' must be > 0"),
    ({"captions_per_clip": 0}, "'captions_per_clip' must be > 0"),
    ({"min_frames": 50, "max_frames": 40}, "'max_frames' must be >= 'min_frames'"),
])
def test_synth_options_reject_bad_sizes(fields, message):
    with pytest.raises(ArtifactError, match=message):
        SynthOptions(**fields)


def _fake_clip(rng: np.random.Generator, frames: int, actions_: list[str]) -> SynthClip:
    joints = rng.normal(size=(frames, 24, 3)).astype(np.float32)
    joints[..., 1] += 2.0  # above the floor
    return SynthClip(joints=joints, global_orient=np.zeros((frames, 3), np.float32),
                     body_pose=np.zeros((frames, 69), np.float32), transl=np.zeros((frames, 3), np.float32),
                     betas=np.full(10, len(actions_), np.float32), actions=actions_,
                     captions=[f"{' then '.join(actions_)} {k}" for k in range(3)])


def test_dataset_tables_metrics_and_previews_of_clips():
    rng = np.random.default_rng(0)
    clips = [_fake_clip(rng, 12, ["walk", "wave"]), _fake_clip(rng, 8, ["wave"]), _fake_clip(rng, 10, ["walk"])]
    index = clip_index(clips, 20.0)
    assert list(index.columns) == ["clip_id", "length", "fps", "actions", "captions"]
    assert list(index["clip_id"]) == ["000000", "000001", "000002"] and list(index["length"]) == [12, 8, 10]
    arrays = clip_arrays(clips)
    assert list(arrays["offsets"]) == [0, 12, 20, 30] and arrays["joints"].shape == (30, 24, 3)
    assert arrays["body_pose"].shape == (30, 69) and list(arrays["betas"][:, 0]) == [2.0, 1.0, 1.0]
    np.testing.assert_array_equal(arrays["joints"][12:20], clips[1].joints)
    assert clips_by_family(clips) == {"walk": [0, 2], "wave": [0, 1]}

    metrics = synth_metrics(clips, 20.0)
    assert metrics["clips"] == 3 and metrics["families"] == 2 and metrics["clips_per_family"] == {"walk": 2, "wave": 2}
    assert (metrics["min_frames"], metrics["max_frames"], metrics["mean_frames"]) == (8, 12, 10.0)
    assert metrics["min_captions_per_clip"] == 3
    assert metrics["lowest_joint_height_m"] == pytest.approx(min(float(c.joints[..., 1].min()) for c in clips))

    previews = list(family_previews(clips, per_family=2))
    assert [family for family, _, _ in previews] == ["walk", "wave"]
    for family, sheet, shown in previews:
        assert shown.actions == [family]  # a clip doing only that action comes first
        assert sheet.ndim == 3 and sheet.shape[2] == 3 and sheet.dtype == np.uint8
    assert previews[0][1].shape == previews[1][1].shape  # only the solo clip of each: one row
