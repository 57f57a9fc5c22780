"""DNO: criteria known answers, the learning-rate schedule, gradient normalisation, the optimiser on a
toy denoiser (loss goes down, history, checkpointing, determinism) and the guided baseline."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from humandiff.diffusion import Guidance, cosine_schedule, ddim_sample
from humandiff.io import ArtifactError
from humandiff.dno.criteria import (
    content_loss,
    cylinder_sdf,
    decorrelation_loss,
    guidance_loss,
    motion_criterion,
    obstacle_loss,
    pose_loss,
    total_loss,
)
from humandiff.dno.optimize import (
    DNOOptions,
    ddim_solver,
    fit_inversion,
    invert_closest,
    invert_motion,
    learning_rate,
    normalize_per_sample,
    optimize_noise,
)
from humandiff.motion.hml3d import recover_from_ric

D = 263
SCHEDULE = cosine_schedule(100)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class ToyDenoiser(nn.Module):
    """A tiny deterministic x0-predictor over (B, T, 263): a per-frame linear map, a temporal blur and
    a timestep-dependent gain. Enough structure for DNO to have something to optimise through."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.mix = nn.Linear(D, D)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(D) * 0.6 + 0.02 * torch.randn(D, D, generator=generator))
            self.mix.bias.copy_(0.05 * torch.randn(D, generator=generator))
        self.eval()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.mix(x_t)
        h = 0.5 * h + 0.25 * (torch.roll(h, 1, dims=1) + torch.roll(h, -1, dims=1))
        out = torch.tanh(h) * (1.0 / (1.0 + t.float() / 100.0))[:, None, None]
        return out if mask is None else out * mask[..., None].to(out.dtype)


def toy_stats() -> tuple[np.ndarray, np.ndarray]:
    """Normalisation of the toy 'prior': features scaled by 0.05 around a standing root height."""
    mean = np.zeros(D, np.float32)
    mean[3] = 0.9
    return mean, np.full(D, 0.05, np.float32)


# --------------------------------------------------------------------------------------------- criteria


def test_decorrelation_white_noise_is_near_zero_and_constant_gives_one_per_scale():
    generator = torch.Generator().manual_seed(0)
    white = torch.randn(4, 64, D, generator=generator)
    assert float(decorrelation_loss(white).max()) < 1e-3
    constant = torch.ones(2, 64, 4)
    # scales 64, 32, 16, 8, 4, 2 each contribute (mean of 1 * 1)^2 = 1
    assert torch.allclose(decorrelation_loss(constant), torch.full((2,), 6.0))
    walk = torch.cumsum(torch.randn(4, 64, D, generator=generator), 1) / 8.0  # strongly correlated in time
    assert float(decorrelation_loss(walk).min()) > 100 * float(decorrelation_loss(white).max())


def test_decorrelation_pads_with_zeros_to_a_power_of_two():
    # 48 ones padded to 64: each scale's mean product counts the pairs of ones, wrap-around included
    expected = (47 / 64) ** 2 + (23 / 32) ** 2 + (11 / 16) ** 2 + (5 / 8) ** 2 + (2 / 4) ** 2 + (1 / 2) ** 2
    assert float(decorrelation_loss(torch.ones(1, 48, 3))) == pytest.approx(expected, rel=1e-6)


def test_decorrelation_lengths_match_per_sample_computation():
    generator = torch.Generator().manual_seed(1)
    z = torch.cumsum(torch.randn(3, 40, 5, generator=generator), 1)
    lengths = torch.tensor([40, 17, 33])
    got = decorrelation_loss(z, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert float(got[b]) == pytest.approx(float(decorrelation_loss(z[b : b + 1, :n])[0]), rel=1e-6)
    with pytest.raises(ArtifactError, match="lengths"):
        decorrelation_loss(z, torch.tensor([40, 1, 33]))


def test_pose_loss_known_answer():
    joints = torch.zeros(1, 2, 22, 3)
    targets = torch.full((1, 2, 22, 3), float("nan"))
    observed = torch.zeros(1, 2, 22, 3)
    targets[0, 1, 0] = torch.tensor([1.0, 2.0, 3.0])  # all axes: L1 = 6
    observed[0, 1, 0] = 1.0
    targets[0, 0, 5] = torch.tensor([0.5, 9.0, -0.5])  # ground plane only: L1 = 1, y ignored
    observed[0, 0, 5] = torch.tensor([1.0, 0.0, 1.0])
    assert float(pose_loss(joints, targets, observed)[0]) == pytest.approx((6.0 + 1.0) / 2)
    empty = pose_loss(joints, targets, torch.zeros_like(observed))
    assert float(empty[0]) == 0.0
    with pytest.raises(ArtifactError, match="targets"):
        pose_loss(joints, targets[:, :1], observed)


def test_obstacle_loss_zero_outside_safe_distance_positive_inside_and_pushes_out():
    radius, tau = 0.5, 0.2
    centres = torch.zeros(1, 1, 1, 2)
    radii = torch.tensor([[radius]])

    def at(distance: float) -> torch.Tensor:
        joints = torch.zeros(1, 1, 22, 3)
        joints[..., 0] = 10.0  # every joint far away ...
        joints[0, 0, 0, 0] = distance  # ... but the pelvis at `distance` from the centre on x
        return joints

    assert float(obstacle_loss(at(radius + tau + 0.01), centres, radii, tau)[0]) == 0.0
    assert float(obstacle_loss(at(radius + tau / 2), centres, radii, tau)[0]) == pytest.approx(tau / 2, abs=1e-6)
    inside = at(0.1).requires_grad_(True)
    loss = obstacle_loss(inside, centres, radii, tau)
    assert float(loss.detach()[0]) == pytest.approx(radius + tau - 0.1, abs=1e-6)
    loss.sum().backward()
    assert float(inside.grad[0, 0, 0, 0]) < 0  # descending moves the joint away from the centre (+x)
    # a moving obstacle: the centre follows the frame, padding slots (radius 0) are ignored
    moving = torch.tensor([[[[0.0, 0.0], [1.0, 0.0]], [[5.0, 5.0], [5.0, 5.0]]]])
    points = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    sdf = cylinder_sdf(points, moving, torch.tensor([[0.25, 0.0]]))
    assert torch.allclose(sdf[0, :, 0], torch.tensor([0.75, -0.25]))


def test_content_loss_is_the_l2_norm_with_finite_gradient_at_the_reference():
    z_ref = torch.zeros(2, 3, 4)
    z = z_ref.clone()
    z[0, 0, 0] = 3.0
    z[0, 1, 0] = 4.0
    assert torch.allclose(content_loss(z, z_ref), torch.tensor([5.0, 0.0]), atol=1e-6)
    assert torch.allclose(content_loss(z, z_ref, squared=True), torch.tensor([25.0, 0.0]))
    start = z_ref.clone().requires_grad_(True)
    content_loss(start, z_ref).sum().backward()
    assert torch.isfinite(start.grad).all()


def test_motion_criterion_recovers_joints_from_normalised_features():
    mean, std = toy_stats()
    x0 = torch.zeros(1, 5, D)
    pelvis_height = lambda joints: joints[:, :, 0, 1].mean(1)  # noqa: E731
    criterion = motion_criterion(mean, std, {"height": (2.0, pelvis_height), "skipped": (0.0, pelvis_height)})
    terms = criterion(x0)
    assert set(terms) == {"height"}
    assert float(terms["height"][0]) == pytest.approx(2.0 * 0.9)  # denormalised root height is the mean
    with pytest.raises(ArtifactError, match="terms"):
        motion_criterion(mean, std, {})


# ------------------------------------------------------------------------------------ schedule and grads


def test_learning_rate_warms_up_linearly_then_decays_to_zero_with_a_cosine():
    options = DNOOptions(steps=300, lr=0.05, warmup_steps=50)
    rates = np.array([learning_rate(s, options) for s in range(300)])
    assert rates[0] == pytest.approx(0.05 / 50)
    assert np.allclose(rates[:50], 0.05 * np.arange(1, 51) / 50)
    assert rates[50] == pytest.approx(0.05)
    assert rates.argmax() in (49, 50)
    assert np.all(np.diff(rates[50:]) < 0)
    midway = 50 + (300 - 50) // 2
    assert rates[midway] == pytest.approx(0.025, rel=1e-6)
    assert 0 < rates[-1] < 1e-5
    constant = DNOOptions(steps=10, lr_schedule="constant")
    assert all(learning_rate(s, constant) == 0.05 for s in range(10))
    with pytest.raises(ArtifactError, match="step"):
        learning_rate(300, options)


def test_gradient_normalisation_is_per_sample():
    grad = torch.zeros(3, 4, 5)
    grad[0] = 3.0
    grad[1, 0, 0] = -1e-6
    normalised = normalize_per_sample(grad)
    norms = normalised.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.tensor([1.0, 1.0, 0.0]))
    assert torch.allclose(normalised[0], grad[0] / grad[0].norm())
    assert float(normalised[1, 0, 0]) == pytest.approx(-1.0)


def test_options_defaults_are_the_papers_and_overrides_are_checked():
    edit = DNOOptions.for_task("edit")
    assert (edit.steps, edit.lr, edit.warmup_steps, edit.lambda_content, edit.lambda_decorr) == (300, 0.05, 50, 0.01, 0.0)
    assert (edit.ddim_steps, edit.inversion_steps, edit.perturbation, edit.normalize_gradient) == (10, 100, 0.0, True)
    refine = DNOOptions.for_task("refine")
    assert (refine.steps, refine.lambda_content, refine.lambda_decorr) == (500, 0.0, 1000.0)
    assert DNOOptions.for_task("refine", steps=7, lambda_decorr=0).steps == 7
    with pytest.raises(ArtifactError, match="unknown parameter"):
        edit.with_overrides({"stepz": 3})
    with pytest.raises(ArtifactError, match="lr"):
        DNOOptions(lr=-1.0)
    with pytest.raises(ArtifactError, match="lr_schedule"):
        DNOOptions(lr_schedule="linear")
    assert edit.inversion_fit_steps == 0  # plain DDIM inversion, as the paper
    with pytest.raises(ArtifactError, match="inversion_fit_steps"):
        DNOOptions(inversion_fit_steps=-1)
    assert edit.inversion_choices == () and edit.with_overrides({"inversion_choices": [20, 5]}).inversion_choices == (20, 5)
    with pytest.raises(ArtifactError, match="inversion_choices"):
        DNOOptions(inversion_choices=(0,))


# --------------------------------------------------------------------------------------- optimisation


def pelvis_problem(batch: int = 2, frames: int = 16):
    """Move the pelvis at frame 12 to a ground-plane target; start from N(0, I)."""
    mean, std = toy_stats()
    targets = torch.zeros(batch, frames, 22, 3)
    observed = torch.zeros(batch, frames, 22, 3)
    for b in range(batch):
        targets[b, 12, 0] = torch.tensor([0.3 + 0.1 * b, 0.0, -0.2])
        observed[b, 12, 0] = torch.tensor([1.0, 0.0, 1.0])
    criterion = motion_criterion(mean, std, {"pose": (1.0, lambda j: pose_loss(j, targets, observed))})
    z0 = torch.randn(batch, frames, D, generator=torch.Generator().manual_seed(3))
    return criterion, z0


def test_optimisation_reduces_the_criterion_and_records_every_term():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem()
    solver = ddim_solver(model, SCHEDULE, ddim_steps=3)
    options = DNOOptions.for_task("refine", steps=25, warmup_steps=5, lambda_decorr=1.0)
    start = float(criterion(solver(z0))["pose"].detach().mean())
    result = optimize_noise(z0, solver, criterion, options)
    assert set(result.history) == {"pose", "decorr", "total", "grad_norm"}
    for values in result.history.values():
        assert values.shape == (25, 2)
    assert result.lr.shape == (25,) and result.lr[4] == pytest.approx(0.05)
    assert result.step_seconds.shape == (25,) and (result.step_seconds > 0).all()
    summed = result.history["pose"] + result.history["decorr"]
    assert np.allclose(result.history["total"], summed)
    assert float(result.final["pose"].mean()) < 0.5 * start
    assert result.history["pose"][-1].mean() < result.history["pose"][0].mean()
    assert result.z.shape == z0.shape and not result.z.requires_grad
    assert torch.allclose(result.x, solver(result.z).detach())


def test_editing_keeps_the_content_term_and_starts_at_the_reference():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem(batch=1)
    options = DNOOptions.for_task("edit", steps=3, warmup_steps=1)
    result = optimize_noise(z0, ddim_solver(model, SCHEDULE, ddim_steps=2), criterion, options)
    assert set(result.history) == {"pose", "content", "total", "grad_norm"}
    assert result.history["content"][0, 0] == pytest.approx(0.0, abs=1e-6)  # z == z_ref at the start
    assert result.history["content"][-1, 0] > 0


def test_content_weight_scales_the_content_term_per_sample():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem()
    options = DNOOptions.for_task("edit", steps=3, warmup_steps=1)
    solver = ddim_solver(model, SCHEDULE, ddim_steps=2)
    batch = z0.shape[0]
    weight = torch.zeros(batch)
    weight[0] = 1.0
    weighted = optimize_noise(z0, solver, criterion, options, content_weight=weight)
    plain = optimize_noise(z0, solver, criterion, options)
    free = optimize_noise(z0, solver, criterion, options.with_overrides({"lambda_content": 0.0}))
    # sample 0 keeps the full term, the others optimise as without it
    assert torch.allclose(weighted.z[0], plain.z[0]) and torch.allclose(weighted.z[1:], free.z[1:])
    assert weighted.history["content"][-1, 0] > 0 and np.all(weighted.history["content"][:, 1:] == 0)
    with pytest.raises(ArtifactError, match="content_weight"):
        optimize_noise(z0, solver, criterion, options, content_weight=-weight)


def test_checkpointed_and_plain_optimisation_follow_the_same_trajectory():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem()
    options = DNOOptions.for_task("refine", steps=5, warmup_steps=2)
    plain = optimize_noise(z0, ddim_solver(model, SCHEDULE, 3), criterion, options)
    checkpointed = optimize_noise(z0, ddim_solver(model, SCHEDULE, 3, checkpoint=True), criterion, options)
    assert torch.allclose(plain.z, checkpointed.z, atol=1e-6)
    assert np.allclose(plain.history["total"], checkpointed.history["total"], atol=1e-6)


def test_optimisation_is_deterministic_under_a_seed_with_perturbation():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem()
    options = DNOOptions.for_task("refine", steps=4, warmup_steps=1, perturbation=1e-3)
    runs = [optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), criterion, options,
                           generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0].z, runs[1].z)
    other = optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), criterion, options,
                           generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0].z, other.z)
    with pytest.raises(ArtifactError, match="generator"):
        optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), criterion, options)


def test_unnormalised_gradient_and_constant_schedule_run_and_differ():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem()
    base = DNOOptions.for_task("refine", steps=3, warmup_steps=1)
    normalised = optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), criterion, base)
    raw = optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), criterion, base.with_overrides({"normalize_gradient": False}))
    assert not torch.allclose(normalised.z, raw.z)
    constant = optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), criterion, base.with_overrides({"lr_schedule": "constant"}))
    assert np.all(constant.lr == 0.05)


def test_solver_refuses_a_training_mode_model_and_bad_criteria_are_named():
    model = ToyDenoiser().train()
    with pytest.raises(ArtifactError, match="training mode"):
        ddim_solver(model, SCHEDULE)
    model.eval()
    z0 = torch.randn(2, 8, D, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ArtifactError, match="term 'bad'"):
        optimize_noise(z0, ddim_solver(model, SCHEDULE, 2), lambda x: {"bad": x.sum()}, DNOOptions(steps=1))


def test_inversion_feeds_the_solver_close_to_the_input():
    model = ToyDenoiser()
    x0 = ddim_sample(model, torch.randn(1, 8, D, generator=torch.Generator().manual_seed(2)), SCHEDULE, num_steps=10)
    z = invert_motion(model, SCHEDULE, x0, steps=20)
    solve = ddim_solver(model, SCHEDULE, 20)
    back = solve(z).detach()
    elsewhere = solve(torch.randn(z.shape, generator=torch.Generator().manual_seed(9))).detach()
    # the toy is no exact ODE model, so the round trip is approximate, but far better than a random start
    assert float((back - x0).abs().mean()) < 0.3 * float((elsewhere - x0).abs().mean())


def test_closest_inversion_keeps_per_input_the_step_count_that_decodes_best():
    model = ToyDenoiser()
    x0 = ddim_sample(model, torch.randn(3, 8, D, generator=torch.Generator().manual_seed(4)), SCHEDULE, num_steps=10)
    solve = ddim_solver(model, SCHEDULE, 5)
    reconstruction = lambda x: (x - x0).abs().mean(dim=(1, 2))  # noqa: E731
    counts = (2, 5, 20)
    errors = torch.stack([reconstruction(solve(invert_motion(model, SCHEDULE, x0, k))) for k in counts])
    z, kept, decoded = invert_closest(model, SCHEDULE, x0, solve, reconstruction, counts)
    assert kept.tolist() == [counts[i] for i in errors.argmin(0).tolist()]
    torch.testing.assert_close(reconstruction(solve(z)), errors.min(0).values)
    # the returned decode is the chosen noise's, so callers need not solve again
    torch.testing.assert_close(decoded, solve(z).detach())
    for b, k in enumerate(kept.tolist()):
        torch.testing.assert_close(z[b], invert_motion(model, SCHEDULE, x0, k)[b])
    with pytest.raises(ArtifactError, match="step_counts"):
        invert_closest(model, SCHEDULE, x0, solve, reconstruction, ())


def test_fitted_inversion_decodes_closer_to_the_input_than_ddim_inversion():
    """fit_inversion runs Algorithm 1 on the reconstruction error alone, starting at the inverted noise."""
    model = ToyDenoiser()
    x0 = ddim_sample(model, torch.randn(2, 8, D, generator=torch.Generator().manual_seed(2)), SCHEDULE, num_steps=10)
    solve = ddim_solver(model, SCHEDULE, 5)
    z = invert_motion(model, SCHEDULE, x0, steps=5)
    reconstruction = lambda x: (x - x0).abs().mean(dim=(1, 2))  # noqa: E731
    options = DNOOptions.for_task("edit", inversion_fit_steps=30)
    fitted = fit_inversion(z, solve, reconstruction, options)
    assert set(fitted.history) == {"criterion", "total", "grad_norm"}  # no content or decorrelation term
    assert fitted.history["total"].shape == (30, 2) and fitted.lr[5] == pytest.approx(options.lr)  # warm-up: 6 steps
    before, after = reconstruction(solve(z)), torch.as_tensor(fitted.final["criterion"])
    assert torch.all(after < 0.5 * before)
    with pytest.raises(ArtifactError, match="inversion_fit_steps"):
        fit_inversion(z, solve, reconstruction, DNOOptions())


def test_guided_baseline_lowers_the_criterion_versus_unguided_sampling():
    model = ToyDenoiser()
    criterion, z0 = pelvis_problem()
    plain = ddim_sample(model, z0, SCHEDULE, num_steps=10)
    guided = ddim_sample(model, z0, SCHEDULE, num_steps=10, guidance=Guidance(guidance_loss(criterion), 5.0, "x0"))
    assert float(total_loss(criterion(guided)).mean()) < float(total_loss(criterion(plain)).mean())
    joints = recover_from_ric(guided)
    assert joints.shape == (2, 16, 22, 3)
