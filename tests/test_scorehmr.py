"""Tests for humandiff.scorehmr: the pose denoiser, the guidance losses, the refinement loop, SMPLify."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from humandiff.body import load_body_model
from humandiff.diffusion import alpha_bar_at, cosine_schedule, ddim_sample
from humandiff.geometry.rotations import axis_angle_to_matrix
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import UPRIGHT_IN_CAMERA, project_camera_points
from humandiff.scorehmr.losses import (
    Keypoints,
    MultiViewConsistency,
    Reprojection,
    TemporalConsistency,
    body_joints,
    combine,
    geman_mcclure,
    multiview_consistency_loss,
    reprojection_loss,
    temporal_consistency_loss,
)
from humandiff.scorehmr.model import (
    POSE_DIM,
    DenoiserConfig,
    PoseDenoiser,
    axis_angle_to_pose,
    denoising_loss,
    pose_to_axis_angle,
    pose_to_rotations,
    rotations_to_pose,
)
from humandiff.scorehmr.refine import ScoreHMROptions, refine
from humandiff.scorehmr.smplify import GaussianMixture, SMPLifyOptions, angle_prior, fit_gmm, smplify

SCHEDULE = cosine_schedule(1000)
IMAGE_SIZE = 128.0
INTRINSICS = (200.0, 200.0, 63.5, 63.5)


@pytest.fixture(scope="module")
def body_model():
    return load_body_model()


def random_rotations(batch: int, seed: int, spread: float = 0.3) -> torch.Tensor:
    """Camera-frame rotations (B, 24, 3, 3) of upright bodies with joint angles of about ``spread`` rad."""
    generator = torch.Generator().manual_seed(seed)
    rotations = axis_angle_to_matrix(spread * torch.randn(batch, 24, 3, generator=generator))
    rotations[:, 0] = torch.tensor(UPRIGHT_IN_CAMERA) @ rotations[:, 0]
    return rotations


def perturb(rotations: torch.Tensor, seed: int, spread: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(spread * torch.randn(rotations.shape[:2] + (3,), generator=generator)) @ rotations


def scene(body_model, batch: int = 3, seed: int = 0):
    """Truth pose (B, 144), betas, camera translation (B, 3) and exact keypoints of bodies 5 m away."""
    pose = rotations_to_pose(random_rotations(batch, seed))
    betas = torch.zeros(batch, 10)
    joints = body_joints(body_model, pose, betas)
    camera = torch.tensor([0.0, 0.0, 5.0]) - joints[:, 0]
    intrinsics = torch.tensor(INTRINSICS).expand(batch, 4)
    pixels = project_camera_points(joints + camera[:, None], intrinsics)
    return pose, betas, camera, Keypoints(pixels, torch.ones(batch, 24), intrinsics, IMAGE_SIZE)


def gaussian_eps(mean: torch.Tensor, std: float):
    """The exact noise prediction of the prior N(mean, std^2 I): for it DDIM is the exact ODE of a Gaussian."""

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = alpha_bar_at(SCHEDULE, t, x_t).to(x_t.dtype)
        return (1.0 - ab).sqrt() * (x_t - ab.sqrt() * mean) / (ab * std**2 + 1.0 - ab)

    return model


# ------------------------------------------------------------------------------------ the denoiser
def test_pose_vector_conversions_round_trip():
    rotations = random_rotations(4, 1)
    pose = rotations_to_pose(rotations)
    assert pose.shape == (4, POSE_DIM)
    assert torch.allclose(pose_to_rotations(pose), rotations, atol=1e-5)
    assert torch.allclose(pose[:, :6], torch.cat([rotations[:, 0, :, 0], rotations[:, 0, :, 1]], 1))
    global_orient, body_pose = pose_to_axis_angle(rotations_to_pose(random_rotations(4, 2, spread=0.2)))
    assert global_orient.shape == (4, 3) and body_pose.shape == (4, 69)
    assert torch.allclose(pose_to_rotations(axis_angle_to_pose(global_orient, body_pose)),
                          pose_to_rotations(rotations_to_pose(random_rotations(4, 2, spread=0.2))), atol=1e-5)
    with pytest.raises(ArtifactError, match="'pose'"):
        pose_to_rotations(torch.zeros(2, 143))


def test_denoiser_shapes_and_every_block_reads_time_and_image_feature():
    torch.manual_seed(0)
    config = DenoiserConfig(feature_dim=8, hidden_dim=16, time_dim=32)
    model = PoseDenoiser(config)
    x, t, c = torch.randn(5, POSE_DIM), torch.tensor([0, 1, 50, 500, 999]), torch.randn(5, 8)
    out = model(x, t, features=c)
    assert out.shape == (5, POSE_DIM) and torch.isfinite(out).all()
    assert len(model.blocks) == 3
    out.square().sum().backward()
    for i, block in enumerate(model.blocks):
        film = block.film[1].weight.grad
        feature_columns = block.linear_in.weight.grad[:, POSE_DIM:]
        assert film is not None and film.abs().sum() > 0, f"block {i}: the timestep FiLM does not reach the output"
        assert feature_columns.abs().sum() > 0, f"block {i}: the image feature does not reach the output"
    with torch.no_grad():
        assert not torch.allclose(model(x, t, features=c), model(x, t.flip(0), features=c))
        assert not torch.allclose(model(x, t, features=c), model(x, t, features=c + 1.0))
    with pytest.raises(ArtifactError, match="'features'"):
        model(x, t, features=torch.randn(5, 7))
    # feature standardisation is stored with the weights
    model.set_feature_stats(3.0 + 2.0 * torch.randn(64, 8))
    assert "feature_mean" in model.state_dict() and float(model.feature_std.mean()) > 1.0
    # the training loss and a core sampler run on it
    loss = denoising_loss(model, torch.randn(5, POSE_DIM), c, SCHEDULE, torch.Generator().manual_seed(0))
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    sample = ddim_sample(model.eval(), torch.randn(5, POSE_DIM), SCHEDULE, timesteps=torch.arange(20, -1, -10),
                         prediction="eps", model_kwargs={"features": c})
    assert sample.shape == (5, POSE_DIM)
    anchor = combine(anchor=lambda p, cam: p.square().sum(1))
    refined = refine(x, model, anchor, ScoreHMROptions(tau=4, max_iterations=1, rho_other={"anchor": 1.0}),
                     schedule=SCHEDULE, features=c)
    assert refined.pose.shape == (5, POSE_DIM) and torch.isfinite(refined.pose).all()


# ------------------------------------------------------------------------------------ losses
def test_geman_mcclure_is_quadratic_near_zero_and_saturates_for_outliers():
    r = torch.tensor([0.0, 1.0, 100.0, 1e4, 1e6], requires_grad=True)
    value = geman_mcclure(r, sigma=100.0)
    assert value[0] == 0 and torch.isclose(value[1], torch.tensor(1.0), rtol=1e-3)
    assert value[-1] <= 100.0**2 and torch.isclose(value[-1], torch.tensor(100.0**2), rtol=1e-3)
    (grad,) = torch.autograd.grad(value.sum(), r)
    assert grad[3] < grad[2] and grad[4] < 1e-3 * grad[2]  # an outlier barely pulls
    with pytest.raises(ArtifactError, match="'sigma'"):
        geman_mcclure(r, 0.0)


def test_reprojection_zero_at_truth_positive_off_it_and_gradients_point_downhill(body_model):
    pose, betas, camera, keypoints = scene(body_model)
    term = Reprojection(body_model, betas, keypoints)
    assert torch.allclose(term(pose, camera), torch.zeros(3), atol=1e-3)
    wrong = rotations_to_pose(perturb(pose_to_rotations(pose), 5, 0.1))
    assert (term(wrong, camera) > 1.0).all()
    # camera: moved right, the gradient pushes it back left
    shifted = (camera + torch.tensor([0.05, 0.0, 0.0])).requires_grad_(True)
    (grad_camera,) = torch.autograd.grad(term(pose, shifted).sum(), shifted)
    assert (grad_camera[:, 0] > 0).all()
    # pose: a small step against the gradient lowers the loss
    wrong.requires_grad_(True)
    loss = term(wrong, camera)
    (grad_pose,) = torch.autograd.grad(loss.sum(), wrong)
    stepped = wrong.detach() - 1e-7 * grad_pose
    assert (term(stepped, camera) < loss.detach()).all()


def test_reprojection_sigma_scales_with_the_image_and_outliers_saturate(body_model):
    pose, betas, camera, keypoints = scene(body_model, batch=2)
    joints = body_joints(body_model, pose, betas)
    offset = torch.zeros(2, 24, 2)
    offset[:, 3] = torch.tensor([4.0, -2.0])
    target = keypoints.joints + offset
    ones = torch.ones(2, 24)
    ours = reprojection_loss(joints, camera, target, ones, keypoints.intrinsics, IMAGE_SIZE)
    # == (1000 / S)^2 GM(r, 100 S / 1000) in our own pixels
    s = IMAGE_SIZE
    expected = (1000.0 / s) ** 2 * geman_mcclure(offset[:, 3], 100.0 * s / 1000.0).sum(1)
    assert torch.allclose(ours, expected, rtol=1e-3)
    # the same picture at twice the resolution costs the same
    doubled = reprojection_loss(joints, camera, 2 * target + 0.5, ones,
                                keypoints.intrinsics * torch.tensor([2.0, 2.0, 2.0, 2.0]) + torch.tensor([0, 0, 0.5, 0.5]),
                                2 * IMAGE_SIZE)
    assert torch.allclose(doubled, ours, rtol=1e-3)
    # an outlier (half the image away) costs at most sigma^2 per coordinate, in reference pixels
    far = keypoints.joints.clone()
    far[:, 3] += 64.0
    outlier = reprojection_loss(joints, camera, far, ones, keypoints.intrinsics, IMAGE_SIZE)
    assert (outlier < 2 * 100.0**2).all() and (outlier > 0.5 * 100.0**2).all()
    # confidence zero removes a joint
    weights = ones.clone()
    weights[:, 3] = 0.0
    assert torch.allclose(reprojection_loss(joints, camera, far, weights, keypoints.intrinsics, IMAGE_SIZE),
                          torch.zeros(2), atol=1e-2)


def test_keypoints_reject_bad_input():
    joints, conf, intr = torch.zeros(2, 24, 2), torch.ones(2, 24), torch.tensor(INTRINSICS).expand(2, 4)
    bad = joints.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ArtifactError, match="'joints'.*NaN"):
        Keypoints(bad, conf, intr, IMAGE_SIZE)
    with pytest.raises(ArtifactError, match="'confidence'"):
        Keypoints(joints, conf * 1.5, intr, IMAGE_SIZE)
    with pytest.raises(ArtifactError, match="'image_size'"):
        Keypoints(joints, conf, intr, -1.0)
    with pytest.raises(ArtifactError, match="'intrinsics'"):
        Keypoints(joints, conf, intr[:, :3], IMAGE_SIZE)


def test_multiview_consistency_keeps_global_orientation_per_view():
    body = rotations_to_pose(random_rotations(1, 3))[:, 6:]
    orientations = rotations_to_pose(random_rotations(4, 4))[:, :6]  # four different view orientations
    pose = torch.cat([orientations, body.expand(4, -1)], 1)
    groups = torch.tensor([0, 0, 1, 1])
    assert torch.allclose(multiview_consistency_loss(pose, groups), torch.zeros(4), atol=1e-6)
    moved = pose.clone()
    moved[0, 10] += 0.1
    loss = multiview_consistency_loss(moved, groups, consistency_weight=1.0)
    assert loss[0] > 0 and loss[1] > 0 and torch.allclose(loss[2:], torch.zeros(2))
    # per person, sum over views = (1 / N) sum over pairs of squared distances (Eq. 13's remark)
    three = torch.randn(3, POSE_DIM, dtype=torch.float64)
    pairs = sum((three[i, 6:] - three[j, 6:]).square().sum() for i in range(3) for j in range(i + 1, 3))
    total = multiview_consistency_loss(three, torch.zeros(3, dtype=torch.long), 1.0).sum()
    assert torch.isclose(total, pairs / 3)
    # gradient descent pulls the views together
    moved.requires_grad_(True)
    (grad,) = torch.autograd.grad(multiview_consistency_loss(moved, groups, 1.0).sum(), moved)
    assert grad[0, 10] > 0 and grad[1, 10] < 0 and grad[:, :6].abs().sum() == 0
    with pytest.raises(ArtifactError, match="1 view"):
        MultiViewConsistency(torch.tensor([0, 0, 1]))


def test_temporal_consistency_within_sequences_only():
    pose = torch.zeros(5, POSE_DIM)
    pose[3:] = 1.0  # second sequence starts at row 3
    groups = torch.tensor([7, 7, 7, 2, 2])
    assert torch.allclose(temporal_consistency_loss(pose, groups), torch.zeros(5))
    assert temporal_consistency_loss(pose)[3] == POSE_DIM  # as one sequence, the jump counts
    jitter = pose.clone().requires_grad_(True)
    with torch.no_grad():
        jitter[1, 0] += 0.5
    loss = temporal_consistency_loss(jitter, groups)
    assert loss[1] > 0 and loss[2] > 0 and loss[0] == 0 and loss[3] == 0
    (grad,) = torch.autograd.grad(loss.sum(), jitter)
    assert grad[1, 0] > 0 and grad[0, 0] < 0 and grad[2, 0] < 0
    with pytest.raises(ArtifactError, match="contiguous"):
        temporal_consistency_loss(pose, torch.tensor([0, 1, 0, 1, 1]))


def test_objective_combines_named_terms_and_checks_shapes(body_model):
    pose, betas, camera, keypoints = scene(body_model)
    video = combine(repr=Reprojection(body_model, betas, keypoints), temp=TemporalConsistency())
    values = video(pose, camera)
    assert set(values) == {"repr", "temp"} and all(v.shape == (3,) for v in values.values())
    broken = combine(bad=lambda p, c: p.sum())
    with pytest.raises(ArtifactError, match="term 'bad'"):
        broken(pose, camera)


# ------------------------------------------------------------------------------------ the loop
def test_options_defaults_settings_and_bad_values():
    options = ScoreHMROptions()
    assert (options.tau, options.ddim_step, options.max_iterations) == (50, 2, 10)
    assert (options.rho_repr, options.rho_mv, options.rho_temp) == (0.003, 0.005, 30.0)
    assert options.stop_tolerance == 1e-5 and options.camera_lr == 0.01 and options.optimize_camera
    assert options.timesteps().tolist() == list(range(50, -1, -2))
    multiview = ScoreHMROptions.for_setting("multiview")
    assert (multiview.tau, multiview.ddim_step) == (100, 10)
    assert ScoreHMROptions.for_setting("video") == options
    for field_name, value in [("tau", 0), ("ddim_step", 2.5), ("max_iterations", -1), ("rho_repr", -1.0),
                              ("stop_tolerance", float("nan")), ("camera_lr", 0.0), ("adam_betas", (0.9, 1.0))]:
        with pytest.raises(ArtifactError, match=f"'{field_name}'") as info:
            ScoreHMROptions(**{field_name: value})
        assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match="'ddim_step'"):
        ScoreHMROptions(tau=4, ddim_step=6)
    with pytest.raises(ArtifactError, match="unknown parameter.*rho"):
        ScoreHMROptions.for_setting("fit", rho=1.0)
    with pytest.raises(ArtifactError, match="setting"):
        ScoreHMROptions.for_setting("mono")
    with pytest.raises(ArtifactError, match="rho_other"):
        ScoreHMROptions(rho_other={"repr": 1.0})
    with pytest.raises(ArtifactError, match="'anchor'"):
        options.rho("anchor")
    assert ScoreHMROptions(rho_other={"anchor": 2}).rho("anchor") == 2.0
    assert ScoreHMROptions().with_overrides(ScoreHMROptions(tau=20).to_dict()).tau == 20


def test_options_come_from_a_params_section_with_errors_naming_the_key(tmp_path):
    from humandiff.io.stage import section_config

    params = tmp_path / "params.yaml"
    params.write_text("scorehmr_multiview: {tau: 100, ddim_step: 10, rho_other: {silhouette: 0.1}}\n"
                      "smplify_video: {smooth_weight: 500, steps: 0}\n")
    options, _ = section_config(params, "scorehmr_multiview", ScoreHMROptions,
                                defaults=[f for f in ScoreHMROptions().to_dict() if f not in ("tau", "ddim_step")])
    assert options == ScoreHMROptions.for_setting("multiview", rho_other={"silhouette": 0.1})
    with pytest.raises(ArtifactError, match=r"'smplify_video\.steps' must be a positive integer") as info:
        section_config(params, "smplify_video", SMPLifyOptions, defaults=list(SMPLifyOptions().to_dict()))
    assert "\n" not in str(info.value)


def test_unguided_loop_returns_the_start():
    """With rho = 0, DDIM inversion then DDIM sampling is a round trip (the paper: < 1e-3 per dimension)."""
    start = rotations_to_pose(random_rotations(2, 6)).double()
    anchor = combine(anchor=lambda p, c: (p - 1.0).square().sum(1))
    result = refine(start, gaussian_eps(start, 0.5), anchor, ScoreHMROptions(rho_other={"anchor": 0.0},
                    max_iterations=2, stop_tolerance=0.0), schedule=SCHEDULE)
    assert (result.pose - start).abs().max() < 1e-3
    assert result.iterations.tolist() == [2, 2] and not result.converged.any()


def test_refine_moves_a_perturbed_pose_towards_the_keypoints(body_model):
    truth, betas, camera, keypoints = scene(body_model, batch=2, seed=0)
    start = rotations_to_pose(perturb(pose_to_rotations(truth), 7, 0.15))
    objective = combine(repr=Reprojection(body_model, betas, keypoints))
    start_camera = camera + torch.tensor([0.03, -0.03, 0.0])
    options = ScoreHMROptions(max_iterations=3)
    result = refine(start, gaussian_eps(start, 1.0), objective, options, schedule=SCHEDULE, camera=start_camera)
    history = result.history
    assert set(history) == {"repr", "total", "rel_change"}
    assert history["repr"].shape == (4, 2) and history["rel_change"].shape == (3, 2)
    assert np.allclose(history["total"], options.rho_repr * history["repr"])
    assert (history["repr"][-1] < 0.2 * history["repr"][0]).all()
    assert (np.diff(history["total"], axis=0) < 0).all()

    def joint_error(pose):
        return (body_joints(body_model, pose, betas) - body_joints(body_model, truth, betas)).norm(dim=-1).mean(1)

    assert (joint_error(result.pose) < 0.5 * joint_error(start)).all()
    assert result.camera is not None and not torch.allclose(result.camera, start_camera)
    assert result.rotations.shape == (2, 24, 3, 3)


def test_multiview_refinement_brings_the_views_body_poses_together():
    body = rotations_to_pose(random_rotations(1, 11))[:, 6:]
    orientations = rotations_to_pose(random_rotations(3, 12))[:, :6]
    views = torch.cat([orientations, body.expand(3, -1)], 1)
    start = rotations_to_pose(perturb(pose_to_rotations(views), 13, 0.1))
    groups = torch.zeros(3, dtype=torch.long)
    options = ScoreHMROptions.for_setting("multiview", max_iterations=3)
    result = refine(start, gaussian_eps(start, 1.0), combine(mv=MultiViewConsistency(groups)), options,
                    schedule=SCHEDULE, groups=groups)
    spread = result.history["mv"][:, 0]
    assert spread[-1] < 0.5 * spread[0]
    assert (result.pose[:, :6] - start[:, :6]).abs().max() < 1e-3  # each view keeps its global orientation
    assert result.camera is None


def test_refine_stops_early_on_the_relative_change_and_keeps_the_history():
    """Two quadratic pulls, towards a and b: the loss settles at its minimum, the midpoint, and the
    loop stops there under the paper's rule (relative change < 1e-5) before its 10 iterations."""
    start = torch.zeros(1, POSE_DIM, dtype=torch.float64)
    a = torch.full((1, POSE_DIM), 0.2, dtype=torch.float64)
    b = torch.full((1, POSE_DIM), -0.1, dtype=torch.float64)
    objective = combine(a=lambda p, c: (p - a).square().sum(1), b=lambda p, c: (p - b).square().sum(1))
    options = ScoreHMROptions(rho_other={"a": 40.0, "b": 40.0})
    result = refine(start, gaussian_eps(start, 1.0), objective, options, schedule=SCHEDULE)
    ran = int(result.iterations[0])
    assert 1 < ran < options.max_iterations and result.converged.all()
    assert torch.allclose(result.pose, (a + b) / 2, atol=1e-3)
    rel = result.history["rel_change"][:, 0]
    assert rel.shape == (ran,) and rel[-1] < 1e-5 and (rel[:-1] >= 1e-5).all()
    for name in ("a", "b", "total"):
        assert result.history[name].shape == (ran + 1, 1)
    assert np.allclose(result.history["total"], 40.0 * (result.history["a"] + result.history["b"]))
    assert result.seconds.shape == (ran,)


def test_refine_stops_groups_independently():
    """A row already at its answer stops after one iteration and keeps its pose; the other runs on."""
    target = torch.stack([torch.zeros(POSE_DIM), torch.full((POSE_DIM,), 0.3)]).double()
    start = torch.zeros(2, POSE_DIM, dtype=torch.float64)
    anchor = combine(anchor=lambda p, c: (p - target).square().sum(1))
    options = ScoreHMROptions(rho_other={"anchor": 5.0}, max_iterations=3)
    result = refine(start, gaussian_eps(start, 1.0), anchor, options, schedule=SCHEDULE)
    assert result.iterations.tolist() == [1, 3]
    assert result.converged.tolist() == [True, False]
    assert (result.pose[0] - start[0]).abs().max() < 1e-3
    assert result.history["anchor"][1, 0] == result.history["anchor"][-1, 0]


def test_refine_rejects_bad_input():
    start = torch.zeros(2, POSE_DIM)
    anchor = combine(anchor=lambda p, c: p.square().sum(1))
    with pytest.raises(ArtifactError, match="'x_init'"):
        refine(torch.zeros(2, 10), gaussian_eps(start, 1.0), anchor, ScoreHMROptions(), schedule=SCHEDULE)
    with pytest.raises(ArtifactError, match="'camera'"):
        refine(start, gaussian_eps(start, 1.0), anchor, ScoreHMROptions(), schedule=SCHEDULE, camera=torch.zeros(3, 3))
    with pytest.raises(ArtifactError, match="guidance term 'anchor'"):
        refine(start, gaussian_eps(start, 1.0), anchor, ScoreHMROptions(), schedule=SCHEDULE)
    with pytest.raises(ArtifactError, match="'total' is reserved"):
        refine(start, gaussian_eps(start, 1.0), combine(total=lambda p, c: p.sum(1)),
               ScoreHMROptions(rho_other={"total": 1.0}), schedule=SCHEDULE)
    with pytest.raises(ArtifactError, match="training mode"):
        refine(start, PoseDenoiser(), anchor, ScoreHMROptions(), schedule=SCHEDULE)


# ------------------------------------------------------------------------------------ SMPLify
def test_gmm_fit_recovers_a_known_mixture_deterministically():
    generator = torch.Generator().manual_seed(0)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 4.0, 3.0]], dtype=torch.float64)
    scales = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [0.0, 0.2, 0.6]],
                           [[0.7, 0.0, 0.0], [0.0, 0.4, 0.0], [0.3, 0.0, 1.0]],
                           [[0.5, 0.0, 0.0], [-0.3, 0.5, 0.0], [0.0, 0.0, 0.5]]], dtype=torch.float64)
    covariances = scales @ scales.transpose(1, 2)
    n = 6000
    labels = torch.multinomial(weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, 3, 1, generator=generator, dtype=torch.float64)
    data = means[labels] + (scales[labels] @ noise).squeeze(-1)
    fitted = fit_gmm(data, 3, seed=1)
    order = [int(torch.cdist(m[None], fitted.means).argmin()) for m in means]
    assert sorted(order) == [0, 1, 2]
    assert torch.allclose(fitted.weights[order], weights, atol=0.03)
    assert torch.allclose(fitted.means[order], means, atol=0.1)
    assert torch.allclose(fitted.covariances[order], covariances, atol=0.12)
    again = fit_gmm(data.numpy(), 3, seed=1)
    assert torch.equal(again.means, fitted.means) and torch.equal(again.covariances, fitted.covariances)
    # densities: the mixture's log density matches a direct computation
    x = data[:5]
    direct = torch.logsumexp(torch.stack([
        torch.distributions.MultivariateNormal(fitted.means[k], fitted.covariances[k]).log_prob(x) + fitted.weights[k].log()
        for k in range(3)], 1), 1)
    assert torch.allclose(fitted.log_prob(x), direct, atol=1e-8)
    assert torch.allclose(GaussianMixture.from_arrays(fitted.to_arrays()).means, fitted.means)
    with pytest.raises(ArtifactError, match="'weights'"):
        GaussianMixture(torch.tensor([0.5, 0.6]), means[:2], covariances[:2])
    with pytest.raises(ArtifactError, match="'num_components'"):
        fit_gmm(data[:4], 3)


def test_angle_prior_penalises_bending_the_wrong_way():
    natural, wrong = torch.zeros(1, 69), torch.zeros(1, 69)
    natural[0, 9] = 1.0   # left knee bends forwards (positive x)
    wrong[0, 9] = -1.0
    assert angle_prior(wrong) > angle_prior(torch.zeros(1, 69)) > angle_prior(natural)


@pytest.fixture(scope="module")
def pose_prior():
    generator = torch.Generator().manual_seed(0)
    return fit_gmm(0.2 * torch.randn(400, 69, generator=generator, dtype=torch.float64), 2, seed=0)


def test_smplify_reduces_the_reprojection_error(body_model, pose_prior):
    truth, betas, camera, keypoints = scene(body_model, batch=2, seed=3)
    start = rotations_to_pose(perturb(pose_to_rotations(truth), 8, 0.12))
    options = SMPLifyOptions(steps=60)
    result = smplify(body_model, pose_prior, keypoints, start, betas, camera + torch.tensor([0.02, 0.0, 0.1]), options)
    data = result.history["data"]
    assert data.shape == (60, 2) and set(result.history) >= {"pose_prior", "angle_prior", "shape_prior", "depth", "total"}
    assert (result.final["data"] < 0.3 * data[0]).all()
    assert result.pose.shape == (2, POSE_DIM) and result.camera.shape == (2, 3) and result.betas.shape == (2, 10)
    assert torch.allclose(result.rotations[:, 0], pose_to_rotations(result.pose)[:, 0])


def test_smplify_variants_add_their_coupling_terms(body_model, pose_prior):
    truth, betas, camera, keypoints = scene(body_model, batch=4, seed=4)
    start = rotations_to_pose(perturb(pose_to_rotations(truth), 9, 0.1))
    video = SMPLifyOptions.for_setting("video", steps=5)
    assert video.smooth_weight > 0 and SMPLifyOptions.for_setting("multiview").multiview_weight > 0
    with pytest.raises(ArtifactError, match="'groups'"):
        smplify(body_model, pose_prior, keypoints, start, betas, camera, video)
    result = smplify(body_model, pose_prior, keypoints, start, betas, camera, video, groups=torch.tensor([0, 0, 1, 1]))
    assert "smooth" in result.history and result.history["smooth"][0, 0] == 0
    # the multi-view term pulls the views' body poses together
    multiview = SMPLifyOptions.for_setting("multiview", steps=30)
    groups = torch.zeros(4, dtype=torch.long)
    fitted = smplify(body_model, pose_prior, keypoints, start, betas, camera, multiview, groups=groups)
    spread_before = multiview_consistency_loss(start, groups, 1.0).sum()
    spread_after = multiview_consistency_loss(fitted.pose, groups, 1.0).sum()
    assert spread_after < spread_before
    with pytest.raises(ArtifactError, match="unknown parameter"):
        SMPLifyOptions.for_setting("fit", sigma_px=3)
    with pytest.raises(ArtifactError, match="'lr'"):
        SMPLifyOptions(lr=0.0)
