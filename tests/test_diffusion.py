"""Tests of the shared diffusion core against known answers.

The reference is Gaussian data ``x0 ~ N(mu, diag(sd^2))``, whose ideal (MMSE) denoiser is known in
closed form: with ``v = ab sd^2 + 1 - ab`` and ``r = x_t - sqrt(ab) mu``,
``E[x0 | x_t] = mu + sqrt(ab) sd^2 / v * r`` and ``E[eps | x_t] = sqrt(1 - ab) / v * r``. Every
step is then elementwise affine in ``x_t``, so DDIM's exact output moments are computable too.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor

from humandiff.diffusion import (
    CLEAN,
    PREDICTIONS,
    Guidance,
    NoiseSchedule,
    TimestepSampler,
    Trajectory,
    alpha_bar_at,
    check_timesteps,
    classifier_free_guidance,
    cosine_schedule,
    ddim_invert,
    ddim_invert_step,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    eps_from_score,
    eps_from_x0,
    gather_at,
    linear_schedule,
    make_schedule,
    make_timesteps,
    masked_mean,
    prediction_loss,
    prediction_target,
    q_posterior,
    q_sample,
    random_timesteps,
    resolve_timesteps,
    score_from_eps,
    split_prediction,
    x0_from_eps,
    x0_from_prediction,
    x0_from_v,
)
from humandiff.io.artifacts import ArtifactError

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # thousands of tiny ops: intra-op threads only add contention on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Gaussian:
    """Gaussian data with event shape ``mu.shape`` and its ideal x0 / eps denoisers."""

    def __init__(self, schedule: NoiseSchedule, event: tuple[int, ...] = (6,)) -> None:
        n = math.prod(event)
        self.schedule = schedule
        self.mu = torch.linspace(-1.0, 1.0, n, dtype=F64).reshape(event)
        self.sd = torch.linspace(0.3, 1.5, n, dtype=F64).reshape(event)

    def _terms(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ab = self.schedule.alphas_cumprod[t].reshape((-1,) + (1,) * self.mu.dim())
        return ab, ab * self.sd**2 + 1 - ab, x - ab.sqrt() * self.mu

    def x0_model(self, x: Tensor, t: Tensor) -> Tensor:
        ab, v, r = self._terms(x, t)
        return self.mu + ab.sqrt() * self.sd**2 / v * r

    def eps_model(self, x: Tensor, t: Tensor) -> Tensor:
        ab, v, r = self._terms(x, t)
        return (1 - ab).sqrt() / v * r

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        _, v, r = self._terms(x, t)
        return -r / v

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        return self.mu + self.sd * torch.randn((n,) + tuple(self.mu.shape), generator=generator, dtype=F64)


class Toy(torch.nn.Module):
    """A small nonlinear denoiser (float64) for gradient tests."""

    def __init__(self, dim: int = 3, hidden: int = 8, num_timesteps: int = 1000, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(dim, hidden, generator=g, dtype=F64) / dim**0.5)
        self.emb = torch.nn.Parameter(0.3 * torch.randn(num_timesteps, hidden, generator=g, dtype=F64))
        self.w2 = torch.nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=F64) / hidden**0.5)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        out = torch.tanh(x @ self.w1 + self.emb[t]) @ self.w2 + 0.5 * x
        return out if cond is None else out + 2.0 * cond


def counted(model):
    """``model`` plus a list that grows by one per call."""
    calls: list[int] = []

    def wrapped(x: Tensor, t: Tensor, **kwargs) -> Tensor:
        calls.append(x.shape[0])
        return model(x, t, **kwargs)

    return wrapped, calls


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------------------------------------
# Schedules and timesteps


@pytest.mark.parametrize("schedule", [cosine_schedule(1000), cosine_schedule(50), linear_schedule(1000), linear_schedule(200)])
def test_alphas_cumprod_monotone_in_unit_interval(schedule: NoiseSchedule) -> None:
    ab = schedule.alphas_cumprod
    assert ab.dtype == F64 and ab.shape == (schedule.num_timesteps,)
    assert bool((ab > 0).all() and (ab < 1).all())
    assert bool((ab[1:] < ab[:-1]).all())
    torch.testing.assert_close(ab, torch.cumprod(1 - schedule.betas, 0), rtol=0, atol=0)
    torch.testing.assert_close(schedule.sqrt_alphas_cumprod**2, ab, rtol=1e-14, atol=0)
    torch.testing.assert_close(schedule.sqrt_one_minus_alphas_cumprod**2, 1 - ab, rtol=1e-14, atol=1e-16)


def test_cosine_endpoints() -> None:
    T, s = 1000, 0.008

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    sched = cosine_schedule(T)
    assert float(sched.alphas_cumprod[0]) == pytest.approx(f(1 / T) / f(0), rel=1e-12)
    assert float(sched.alphas_cumprod[499]) == pytest.approx(f(500 / T) / f(0), rel=1e-10)
    assert float(sched.betas.max()) == pytest.approx(0.999)
    assert float(sched.betas[-1]) == pytest.approx(0.999)  # the last beta is the clipped one
    assert float(sched.alphas_cumprod[-1]) < 1e-8
    assert float(sched.betas[0]) < 1e-4


def test_linear_endpoints_scaled_for_T() -> None:
    ddpm = linear_schedule(1000)
    assert float(ddpm.betas[0]) == pytest.approx(1e-4) and float(ddpm.betas[-1]) == pytest.approx(0.02)
    hmdiff = make_schedule("linear", 200)
    assert float(hmdiff.betas[0]) == pytest.approx(5e-4) and float(hmdiff.betas[-1]) == pytest.approx(0.1)
    assert float(hmdiff.alphas_cumprod[-1]) < 1e-4
    torch.testing.assert_close(hmdiff.betas, torch.linspace(5e-4, 0.1, 200, dtype=F64))


def test_schedule_bad_input() -> None:
    with pytest.raises(ArtifactError, match="num_timesteps"):
        cosine_schedule(0)
    with pytest.raises(ArtifactError, match="num_timesteps"):
        linear_schedule(10)  # scaled beta_end 2.0
    with pytest.raises(ArtifactError, match="name"):
        make_schedule("sigmoid", 100)
    with pytest.raises(ArtifactError, match="betas"):
        NoiseSchedule.from_betas([0.1, 1.5])
    with pytest.raises(ArtifactError, match="betas"):
        NoiseSchedule(name="x", betas=torch.ones(3), alphas_cumprod=torch.ones(3),
                      sqrt_alphas_cumprod=torch.ones(3), sqrt_one_minus_alphas_cumprod=torch.ones(3))


def test_gather_and_alpha_bar_at() -> None:
    sched = cosine_schedule(100)
    like = torch.zeros(3, 4, 5, dtype=torch.float32)
    t = torch.tensor([0, 50, 99])
    out = gather_at(sched.sqrt_alphas_cumprod, t, like)
    assert out.shape == (3, 1, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), sched.sqrt_alphas_cumprod[t].float())
    assert gather_at(sched.betas, 7, like).shape == (3, 1, 1)
    ab = alpha_bar_at(sched, torch.tensor([CLEAN, 0, 99]), like)
    assert ab.dtype == F64 and ab.shape == (3, 1, 1)
    assert ab.flatten().tolist() == [1.0, float(sched.alphas_cumprod[0]), float(sched.alphas_cumprod[99])]
    with pytest.raises(ArtifactError, match="'t'"):
        gather_at(sched.betas, 100, like)
    with pytest.raises(ArtifactError, match="'t'"):
        gather_at(sched.betas, CLEAN, like)
    with pytest.raises(ArtifactError, match="'t'"):
        gather_at(sched.betas, torch.tensor([1, 2]), like)


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
@pytest.mark.parametrize("T", [1000, 200, 7])
def test_timestep_subsets(T: int, spacing: str) -> None:
    for n in sorted({1, 2, 3, 5, 7, 10, 20, 40, 50, 100, T}):
        if n > T:
            continue
        ts = make_timesteps(T, n, spacing)
        assert ts.dtype == torch.long and ts.shape == (n,)
        assert bool((ts[1:] < ts[:-1]).all())
        assert 0 <= int(ts.min()) and int(ts.max()) <= T - 1
        assert int(ts[0]) == T - 1 if spacing == "trailing" else int(ts[-1]) == 0
    assert make_timesteps(T, T, spacing).tolist() == list(range(T - 1, -1, -1))


def test_timestep_conventions_and_bad_input() -> None:
    assert make_timesteps(1000, 10).tolist() == list(range(999, 0, -100))
    assert make_timesteps(1000, 10, "leading").tolist() == list(range(900, -1, -100))
    sched = cosine_schedule(1000)
    assert check_timesteps(torch.arange(50, -1, -2), sched).tolist() == list(range(50, -1, -2))
    assert resolve_timesteps(sched).shape == (1000,)
    assert resolve_timesteps(sched, num_steps=40).shape == (40,)
    for bad in ([5, 5, 1], [1, 3], [1000, 2], [3, -1], [2.0, 1.0], []):
        with pytest.raises(ArtifactError, match="timesteps"):
            check_timesteps(bad, sched)
    with pytest.raises(ArtifactError, match="num_steps"):
        make_timesteps(100, 0)
    with pytest.raises(ArtifactError, match="num_steps"):
        make_timesteps(100, 101)
    with pytest.raises(ArtifactError, match="spacing"):
        make_timesteps(100, 10, "middle")
    with pytest.raises(ArtifactError, match="not both"):
        resolve_timesteps(sched, num_steps=10, timesteps=[5, 0])


# ------------------------------------------------------------------------------------------------
# Forward process, conversions, posterior


def test_q_sample_marginal_moments() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4,))
    g = torch.Generator().manual_seed(1)
    n, t = 20000, 300
    x0 = gauss.draw(n, g)
    x_t = q_sample(sched, x0, t, torch.randn(x0.shape, generator=g, dtype=F64))
    ab = sched.alphas_cumprod[t]
    std = (ab * gauss.sd**2 + 1 - ab).sqrt()
    assert bool(((x_t.mean(0) - ab.sqrt() * gauss.mu).abs() < 4.5 * std / n**0.5).all())
    assert bool(((x_t.std(0) / std - 1).abs() < 4.5 / (2 * n) ** 0.5).all())
    assert torch.equal(q_sample(sched, x0[:3], CLEAN, torch.ones(3, 4, dtype=F64)), x0[:3])
    with pytest.raises(ArtifactError, match="noise"):
        q_sample(sched, x0, 3, torch.zeros(2, 4, dtype=F64))


def test_conversions_round_trip_and_ideal_score() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4, 3))
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(5, 4, 3, generator=g, dtype=F64)
    t = torch.tensor([0, 10, 400, 900, 999])
    x0 = gauss.draw(5, g)
    torch.testing.assert_close(x0_from_eps(sched, x_t, t, eps_from_x0(sched, x_t, t, x0)), x0, rtol=1e-9, atol=1e-9)
    eps = gauss.eps_model(x_t, t)
    torch.testing.assert_close(eps_from_score(sched, t, score_from_eps(sched, t, eps)), eps)
    # Tweedie: the ideal eps-model's score is the Gaussian marginal's score
    torch.testing.assert_close(score_from_eps(sched, t, eps), gauss.score(x_t, t), rtol=1e-10, atol=1e-12)
    # the ideal x0- and eps-models are the same denoiser
    for prediction, model in (("x0", gauss.x0_model), ("eps", gauss.eps_model)):
        x0_hat, eps_hat = split_prediction(sched, x_t, t, model(x_t, t), prediction)
        torch.testing.assert_close(x0_hat, gauss.x0_model(x_t, t), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(eps_hat, gauss.eps_model(x_t, t), rtol=1e-9, atol=1e-9)
    assert prediction_target("x0", x0, eps) is x0 and prediction_target("eps", x0, eps) is eps
    with pytest.raises(ArtifactError, match="prediction"):
        split_prediction(sched, x_t, t, eps, "v")
    with pytest.raises(ArtifactError, match="prediction"):
        prediction_target("v", x0, eps)
    ts = random_timesteps(sched, 64, torch.Generator().manual_seed(0))
    assert ts.shape == (64,) and ts.dtype == torch.long and 0 <= int(ts.min()) and int(ts.max()) < 1000


def test_q_posterior_known_answers() -> None:
    sched = cosine_schedule(1000)
    x0 = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    x_t = torch.zeros_like(x0)
    # one step: DDPM's posterior variance beta_t (1 - ab_{t-1}) / (1 - ab_t)
    t = torch.tensor([1, 10, 500, 999])
    _, var = q_posterior(sched, x0, x_t, t)
    b, ab = sched.betas, sched.alphas_cumprod
    torch.testing.assert_close(var.flatten(), b[t] * (1 - ab[t - 1]) / (1 - ab[t]))
    # any skip, CLEAN included: pushing q(x_t | x0) through the posterior gives q(x_s | x0)
    for t_hi, t_lo in ((999, 899), (500, 498), (37, 0), (5, CLEAN)):
        mean_x0, var_post = q_posterior(sched, x0, x_t, t_hi, t_lo)  # x_t = 0 isolates the x0 coefficient
        coef_xt, _ = q_posterior(sched, torch.zeros_like(x0), torch.ones_like(x0), t_hi, t_lo)
        ab_hi = float(ab[t_hi])
        ab_lo = 1.0 if t_lo == CLEAN else float(ab[t_lo])
        torch.testing.assert_close(mean_x0 + coef_xt * ab_hi**0.5 * x0, ab_lo**0.5 * x0, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(coef_xt**2 * (1 - ab_hi) + var_post, torch.full_like(coef_xt, 1 - ab_lo), rtol=1e-10, atol=1e-12)
    _, var_clean = q_posterior(sched, x0, x_t, 0)
    assert float(var_clean.abs().max()) == 0.0
    with pytest.raises(ArtifactError, match="t_prev"):
        q_posterior(sched, x0, x_t, 5, 5)


# ------------------------------------------------------------------------------------------------
# Steps


def test_ideal_x0_and_eps_models_give_identical_steps() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4, 3))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 3, generator=g, dtype=F64)
    noise = torch.randn(3, 4, 3, generator=g, dtype=F64)
    for t, t_prev in ((999, 899), (40, 38), (0, CLEAN)):
        outs = {}
        for pred, model in (("x0", gauss.x0_model), ("eps", gauss.eps_model)):
            outs[pred] = (
                ddim_step(model, x, t, t_prev, sched, prediction=pred).x,
                ddim_step(model, x, t, t_prev, sched, prediction=pred, eta=0.7, noise=noise).x,
                ddpm_step(model, x, t, sched, t_prev=t_prev, prediction=pred, noise=noise).x,
                ddim_invert_step(model, x, t_prev, t, sched, prediction=pred).x,
                ddim_invert_step(model, x, t_prev, t, sched, prediction=pred, fixed_point_iters=2).x,
            )
        for a, b in zip(outs["x0"], outs["eps"]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_ddim_eta_one_equals_ddpm_step_and_into_clean() -> None:
    sched = linear_schedule(200)
    toy = Toy(dim=3, num_timesteps=200)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, generator=g, dtype=F64)
    noise = torch.randn(4, 3, generator=g, dtype=F64)
    with torch.no_grad():
        for pred in ("x0", "eps"):
            for t, t_prev in ((150, 149), (199, 150), (3, 0)):
                a = ddim_step(toy, x, t, t_prev, sched, prediction=pred, eta=1.0, noise=noise)
                b = ddpm_step(toy, x, t, sched, t_prev=t_prev, prediction=pred, noise=noise)
                torch.testing.assert_close(a.x, b.x, rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(a.x0_hat, b.x0_hat)
        # into CLEAN both return the clean estimate and need no noise
        for out in (ddim_step(toy, x, 7, CLEAN, sched, eta=1.0), ddpm_step(toy, x, 0, sched)):
            torch.testing.assert_close(out.x, out.x0_hat)
        torch.testing.assert_close(ddim_step(toy, x, 7, CLEAN, sched).x, toy(x, torch.full((4,), 7)))


def test_step_bad_input() -> None:
    sched = cosine_schedule(100)
    toy = Toy(num_timesteps=100)
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ArtifactError, match="noise"):
        ddim_step(toy, x, 50, 40, sched, eta=0.5)
    with pytest.raises(ArtifactError, match="noise"):
        ddpm_step(toy, x, 50, sched)
    with pytest.raises(ArtifactError, match="generator"):
        ddpm_sample(toy, x, sched, num_steps=5)
    with pytest.raises(ArtifactError, match="noise"):
        ddim_sample(toy, x, sched, num_steps=5, eta=1.0, noise=torch.zeros(2, 2, 3, dtype=F64))
    with pytest.raises(ArtifactError, match="t_prev"):
        ddim_step(toy, x, 40, 50, sched)
    with pytest.raises(ArtifactError, match="t_next"):
        ddim_invert_step(toy, x, 40, 40, sched)
    model, calls = counted(toy)
    for bad in (lambda: ddim_step(model, x, CLEAN, CLEAN, sched), lambda: ddim_step(model, x, 100, 50, sched),
                lambda: ddpm_step(model, x, CLEAN, sched), lambda: ddim_invert_step(model, x, 99, 100, sched)):
        with pytest.raises(ArtifactError, match="'t"):
            bad()
    assert calls == []  # bad timesteps are refused before the model sees them
    with pytest.raises(ArtifactError, match="output"):
        ddim_step(lambda x_t, t: x_t[:, :2], x, 40, 30, sched)
    with pytest.raises(ArtifactError, match="prediction"):
        ddim_step(toy, x, 40, 30, sched, prediction="v")
    with pytest.raises(ArtifactError, match="fixed_point_iters"):
        ddim_invert(toy, x, sched, num_steps=3, fixed_point_iters=-1)


# ------------------------------------------------------------------------------------------------
# Chains on Gaussian data


@pytest.mark.parametrize("schedule", [cosine_schedule(1000), linear_schedule(200)], ids=["cosine1000", "linear200"])
def test_ddim_inversion_round_trip(schedule: NoiseSchedule) -> None:
    gauss = Gaussian(schedule, (4, 3))
    x0 = gauss.draw(16, torch.Generator().manual_seed(6))
    errors = {}
    for n in (10, 50, 100):
        x_T = ddim_invert(gauss.x0_model, x0, schedule, num_steps=n)
        errors[n] = rel_err(ddim_sample(gauss.x0_model, x_T, schedule, num_steps=n), x0)
    # the explicit inversion step is first order: the error falls about like 1/steps
    assert errors[100] < errors[50] < errors[10] < 0.3
    assert errors[100] < 0.05 and errors[10] / errors[100] > 5
    # fixed-point refinement solves each implicit step: the round trip becomes exact
    for n, iters, tol in ((100, 3, 1e-6), (10, 20, 1e-6), (50, 12, 1e-12)):
        pred, model = ("eps", gauss.eps_model) if n == 10 else ("x0", gauss.x0_model)
        x_T = ddim_invert(model, x0, schedule, num_steps=n, prediction=pred, fixed_point_iters=iters)
        assert rel_err(ddim_sample(model, x_T, schedule, num_steps=n, prediction=pred), x0) < tol


def test_scorehmr_partial_inversion_round_trip() -> None:
    # ScoreHMR (cosine, T = 1000): invert to t = 50 in steps of 2 and come back; the paper reports
    # a mean reconstruction error below 1e-3 per dimension for this loop
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4, 3))
    x0 = gauss.draw(16, torch.Generator().manual_seed(6))
    ts = torch.arange(50, -1, -2)
    traj = ddim_invert(gauss.eps_model, x0, sched, timesteps=ts, prediction="eps", return_trajectory=True)
    assert traj.levels.tolist() == [CLEAN] + list(range(0, 51, 2))
    back = ddim_sample(gauss.eps_model, traj.sample, sched, timesteps=ts, prediction="eps")
    assert float((back - x0).abs().mean()) < 1e-3 and float((back - x0).abs().max()) < 5e-3
    x_50 = ddim_invert(gauss.eps_model, x0, sched, timesteps=ts, prediction="eps", fixed_point_iters=2)
    assert float((ddim_sample(gauss.eps_model, x_50, sched, timesteps=ts, prediction="eps") - x0).abs().max()) < 1e-8


def test_inverted_noise_is_standard_normal() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4,))
    x0 = gauss.draw(4000, torch.Generator().manual_seed(7))
    x_T = ddim_invert(gauss.x0_model, x0, sched, num_steps=50, fixed_point_iters=3)
    assert float(x_T.mean(0).abs().max()) < 0.1
    assert float((x_T.std(0) - 1).abs().max()) < 0.06


def test_ddim_exact_moments_converge() -> None:
    # DDIM with the ideal model is affine per coordinate: two inputs give its exact output law
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (6,))
    probe = torch.stack([torch.zeros(6, dtype=F64), torch.ones(6, dtype=F64)])
    errors = []
    for n in (10, 100):
        y = ddim_sample(gauss.x0_model, probe, sched, num_steps=n)
        mean, std = y[0], y[1] - y[0]
        assert float((mean - gauss.mu).abs().max()) < 1e-3  # x_T is not exactly N(0, I): sqrt(ab_T) ~ 5e-5
        errors.append(float((std / gauss.sd - 1).abs().max()))
    # first-order solver: ten times the steps, about a tenth of the error
    assert errors[0] < 0.3 and errors[1] < 0.03 and 5 < errors[0] / errors[1] < 20


def test_ddim_and_ddpm_samples_match_data_moments() -> None:
    sched = cosine_schedule(200)
    gauss = Gaussian(sched, (2,))
    n = 8000
    g = torch.Generator().manual_seed(8)
    x_T = torch.randn(n, 2, generator=g, dtype=F64)
    samples = {
        "ddim_all": ddim_sample(gauss.x0_model, x_T, sched),
        "ddim100_eta05": ddim_sample(gauss.eps_model, x_T, sched, num_steps=100, eta=0.5, prediction="eps", generator=g),
        "ddpm_all": ddpm_sample(gauss.x0_model, x_T, sched, generator=g),
    }
    for name, y in samples.items():
        z = (y.mean(0) - gauss.mu) / (gauss.sd / n**0.5)
        assert float(z.abs().max()) < 4.5, name
        # 4 standard errors of the std ratio (1/sqrt(2n) = 0.8%) plus up to 3% discretisation bias
        assert float((y.std(0) / gauss.sd - 1).abs().max()) < 4 / (2 * n) ** 0.5 + 0.03, name


def test_float32_chain_follows_float64() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4,))
    x_T = torch.randn(8, 4, generator=torch.Generator().manual_seed(17), dtype=F64)

    def model32(x: Tensor, t: Tensor) -> Tensor:
        return gauss.x0_model(x.double(), t).float()

    y64 = ddim_sample(gauss.x0_model, x_T, sched, num_steps=20)
    y32 = ddim_sample(model32, x_T.float(), sched, num_steps=20)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)
    back = ddim_invert(model32, y32, sched, num_steps=20)
    assert back.dtype == torch.float32 and bool(torch.isfinite(back).all())


def test_randomness_is_explicit_and_reproducible() -> None:
    sched = cosine_schedule(100)
    toy = Toy(num_timesteps=100)
    x_T = torch.randn(5, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    a = ddpm_sample(toy, x_T, sched, num_steps=20, generator=torch.Generator().manual_seed(1))
    b = ddpm_sample(toy, x_T, sched, num_steps=20, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    # generator draws one (B, ...) noise per step except the last (into CLEAN): same as explicit noise
    g = torch.Generator().manual_seed(1)
    noise = torch.stack([torch.randn(5, 3, generator=g, dtype=F64) for _ in range(19)] + [torch.zeros(5, 3, dtype=F64)])
    assert torch.equal(ddpm_sample(toy, x_T, sched, num_steps=20, noise=noise), a)
    c = ddim_sample(toy, x_T, sched, num_steps=20, eta=0.5, noise=noise)
    assert torch.equal(c, ddim_sample(toy, x_T, sched, num_steps=20, eta=0.5, noise=list(noise)))
    assert not torch.equal(c, ddim_sample(toy, x_T, sched, num_steps=20))


def test_trajectory() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4,))
    x_T = torch.randn(3, 4, generator=torch.Generator().manual_seed(10), dtype=F64)
    traj = ddim_sample(gauss.x0_model, x_T, sched, num_steps=10, return_trajectory=True)
    assert isinstance(traj, Trajectory)
    assert traj.levels.tolist() == make_timesteps(1000, 10).tolist() + [CLEAN]
    assert len(traj.xs) == 11 and len(traj.x0_hats) == 10 and traj.guidance_losses == ()
    assert torch.equal(traj.xs[0], x_T) and torch.equal(traj.xs[-1], traj.sample)
    assert torch.equal(traj.sample, ddim_sample(gauss.x0_model, x_T, sched, num_steps=10))
    torch.testing.assert_close(traj.x0_hats[-1], traj.sample)  # x0-model: the last step returns its estimate
    inv = ddim_invert(gauss.x0_model, traj.sample, sched, timesteps=[50, 20, 0], return_trajectory=True)
    assert inv.levels.tolist() == [CLEAN, 0, 20, 50] and len(inv.xs) == 4


# ------------------------------------------------------------------------------------------------
# Gradients through the chain


@pytest.mark.parametrize("prediction", ["x0", "eps"])
def test_chain_gradient_matches_finite_differences(prediction: str) -> None:
    sched = cosine_schedule(1000)
    toy = Toy(dim=3, num_timesteps=1000).requires_grad_(False)
    g = torch.Generator().manual_seed(11)
    x_T = torch.randn(2, 3, generator=g, dtype=F64, requires_grad=True)
    noise = torch.randn(6, 2, 3, generator=g, dtype=F64)
    weights = torch.randn(2, 3, generator=g, dtype=F64)

    def objective(x: Tensor, checkpoint: bool, eta: float) -> Tensor:
        y = ddim_sample(toy, x, sched, num_steps=6, eta=eta, noise=noise, prediction=prediction,
                        differentiable=True, checkpoint=checkpoint)
        return (weights * y).sum() + (y**2).sum()

    for checkpoint, eta in ((False, 0.0), (True, 0.5)):
        assert torch.autograd.gradcheck(lambda x: objective(x, checkpoint, eta), (x_T,), eps=1e-6, atol=1e-7, rtol=1e-5)
    # the Gaussian chain is affine per coordinate: d sum(x0) / d x_T is its slope
    gauss = Gaussian(sched, (3,))
    x = torch.zeros(1, 3, dtype=F64, requires_grad=True)
    ddim_sample(gauss.x0_model, x, sched, num_steps=10, differentiable=True).sum().backward()
    slope = ddim_sample(gauss.x0_model, torch.ones(1, 3, dtype=F64), sched, num_steps=10) - ddim_sample(
        gauss.x0_model, torch.zeros(1, 3, dtype=F64), sched, num_steps=10)
    torch.testing.assert_close(x.grad, slope, rtol=1e-9, atol=1e-12)


def test_checkpointed_chain_equals_plain_chain() -> None:
    sched = cosine_schedule(1000)
    g = torch.Generator().manual_seed(12)
    x_T, cond = torch.randn(2, 4, 3, generator=g, dtype=F64)
    results = {}
    for checkpoint in (False, True):
        toy = Toy(dim=3, num_timesteps=1000)
        model, calls = counted(toy)
        x = x_T.clone().requires_grad_(True)
        y = ddim_sample(model, x, sched, num_steps=10, differentiable=True, checkpoint=checkpoint, model_kwargs={"cond": cond})
        forward_calls = len(calls)
        (y.sin().sum()).backward()
        results[checkpoint] = (y.detach(), x.grad, [p.grad for p in toy.parameters()], forward_calls, len(calls))
    plain, ckpt = results[False], results[True]
    assert torch.equal(plain[0], ckpt[0])
    torch.testing.assert_close(plain[1], ckpt[1], rtol=1e-12, atol=1e-14)
    for a, b in zip(plain[2], ckpt[2]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    # checkpointing really recomputes each model call during backward
    assert plain[3] == plain[4] == 10 and ckpt[3] == 10 and ckpt[4] == 20


def test_checkpointing_keeps_only_step_inputs() -> None:
    # bytes autograd saves for backward: model activations per step without checkpointing,
    # only a few x-sized tensors per step with it
    sched = cosine_schedule(1000)
    toy = Toy(dim=3, hidden=256, num_timesteps=1000)
    cond = torch.randn(32, 3, dtype=F64)

    def saved_bytes(steps: int, checkpoint: bool) -> int:
        total, seen = [0], set()

        def pack(tensor: Tensor) -> Tensor:
            if tensor.data_ptr() not in seen:  # parameters are saved by every step, but stored once
                seen.add(tensor.data_ptr())
                total[0] += tensor.numel() * tensor.element_size()
            return tensor

        x = torch.zeros(32, 3, dtype=F64, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            ddim_sample(toy, x, sched, num_steps=steps, differentiable=True, checkpoint=checkpoint,
                        model_kwargs={"cond": cond})
        return total[0]

    x_bytes, hidden_bytes = 32 * 3 * 8, 32 * 256 * 8
    plain_per_step = (saved_bytes(10, False) - saved_bytes(5, False)) / 5
    ckpt_per_step = (saved_bytes(10, True) - saved_bytes(5, True)) / 5
    assert plain_per_step >= hidden_bytes and ckpt_per_step <= 4 * x_bytes


def test_non_differentiable_chain_has_no_graph() -> None:
    sched = cosine_schedule(100)
    toy = Toy(num_timesteps=100)
    x_T = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert not ddim_sample(toy, x_T, sched, num_steps=5).requires_grad
    assert not ddim_invert(toy, x_T, sched, num_steps=5).requires_grad
    assert ddim_sample(toy, x_T, sched, num_steps=5, differentiable=True).requires_grad


# ------------------------------------------------------------------------------------------------
# Guidance


def quadratic(target: Tensor):
    def loss(x0_hat: Tensor, t: Tensor) -> Tensor:
        return ((x0_hat - target) ** 2).flatten(1).sum(1)

    return loss


def test_guidance_single_step_known_answers() -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4,))
    target = torch.full((4,), 3.0, dtype=F64)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(13), dtype=F64)
    t, scale = 600, 0.2
    tt = torch.full((3,), t)
    ab = sched.alphas_cumprod[t]
    x0_hat = gauss.x0_model(x, tt)
    grad_x0 = 2 * (x0_hat - target)
    grad_xt = grad_x0 * ab.sqrt() * gauss.sd**2 / (ab * gauss.sd**2 + 1 - ab)  # chain rule through the ideal denoiser
    plain = ddim_step(gauss.x0_model, x, t, 500, sched)
    # ScoreHMR: eps' = eps + sqrt(1 - ab) * scale * grad_{x_t}
    out = ddim_step(gauss.x0_model, x, t, 500, sched, guidance=Guidance(quadratic(target), scale, "eps"))
    torch.testing.assert_close(out.eps_hat, plain.eps_hat + (1 - ab).sqrt() * scale * grad_xt, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.x0_hat, x0_from_eps(sched, x, t, out.eps_hat))
    torch.testing.assert_close(out.guidance_loss, quadratic(target)(x0_hat, tt))
    # reconstruction guidance: x0' = x0 - scale * grad_{x0}
    out = ddim_step(gauss.eps_model, x, t, 500, sched, prediction="eps", guidance=Guidance(quadratic(target), scale, "x0"))
    torch.testing.assert_close(out.x0_hat, x0_hat - scale * grad_x0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.eps_hat, eps_from_x0(sched, x, t, out.x0_hat))
    # DAT: x_{t-1}' = x_{t-1} - scale * grad_{x_t}
    out = ddim_step(gauss.x0_model, x, t, 500, sched, guidance=Guidance(quadratic(target), scale, "xt"))
    torch.testing.assert_close(out.x, plain.x - scale * grad_xt, rtol=1e-10, atol=1e-12)
    assert not out.x.requires_grad


@pytest.mark.parametrize("mode,scale", [("eps", 0.3), ("x0", 0.1), ("xt", 0.05)])
def test_guided_samples_move_toward_target(mode: str, scale: float) -> None:
    sched = cosine_schedule(1000)
    gauss = Gaussian(sched, (4,))
    target = torch.tensor([2.0, -2.0, 2.0, -2.0], dtype=F64)
    x_T = torch.randn(200, 4, generator=torch.Generator().manual_seed(14), dtype=F64)
    guidance = Guidance(quadratic(target), scale, mode)
    plain = ddim_sample(gauss.x0_model, x_T, sched, num_steps=50)
    traj = ddim_sample(gauss.x0_model, x_T, sched, num_steps=50, guidance=guidance, return_trajectory=True)
    dist_plain = (plain - target).norm(dim=1).mean()
    dist_guided = (traj.sample - target).norm(dim=1).mean()
    assert float(dist_guided) < 0.8 * float(dist_plain)
    assert len(traj.guidance_losses) == 50 and traj.guidance_losses[0].shape == (200,)
    assert float(traj.guidance_losses[-1].mean()) < float(traj.guidance_losses[0].mean())
    # DDPM takes the same hook
    g = torch.Generator().manual_seed(0)
    y = ddpm_sample(gauss.x0_model, x_T, sched, num_steps=50, guidance=guidance, generator=g)
    assert float((y - target).norm(dim=1).mean()) < 0.8 * float(dist_plain)


def test_guidance_inside_differentiable_chain() -> None:
    sched = cosine_schedule(1000)
    toy = Toy(dim=3, num_timesteps=1000).requires_grad_(False)
    target = torch.ones(3, dtype=F64)
    x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(15), dtype=F64, requires_grad=True)
    for mode in ("eps", "x0", "xt"):
        guidance = Guidance(quadratic(target), 0.1, mode)
        func = lambda x: ddim_sample(toy, x, sched, num_steps=4, guidance=guidance, differentiable=True).sum()  # noqa: E731
        assert torch.autograd.gradcheck(func, (x_T,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_guidance_bad_input() -> None:
    sched = cosine_schedule(100)
    toy = Toy(num_timesteps=100)
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ArtifactError, match="loss"):
        ddim_step(toy, x, 50, 40, sched, guidance=Guidance(lambda x0, t: x0, 1.0))
    with pytest.raises(ArtifactError, match="mode"):
        Guidance(quadratic(x), 1.0, "score")
    with pytest.raises(ArtifactError, match="scale"):
        Guidance(quadratic(x), float("nan"))


def test_classifier_free_guidance() -> None:
    toy = Toy(dim=3, num_timesteps=100)
    g = torch.Generator().manual_seed(16)
    x = torch.randn(4, 3, generator=g, dtype=F64)
    t = torch.tensor([1, 5, 50, 99])
    cond = torch.randn(4, 3, generator=g, dtype=F64)
    null = torch.zeros(4, 3, dtype=F64)
    with torch.no_grad():
        out_c, out_u = toy(x, t, cond=cond), toy(x, t, cond=null)
        for scale in (0.0, 1.0, 2.5):
            model, calls = counted(toy)
            guided = classifier_free_guidance(model, scale, {"cond": cond}, {"cond": null})
            out = guided(x, t)
            assert calls == [8]  # one call on the concatenated batch
            torch.testing.assert_close(out, out_u + scale * (out_c - out_u), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(classifier_free_guidance(toy, 1.0, {"cond": cond}, {"cond": null})(x, t), out_c)
        torch.testing.assert_close(classifier_free_guidance(toy, 0.0, {"cond": cond}, {"cond": null})(x, t), out_u)
        # no batching possible (different keys) or asked: two calls, same answer
        for kwargs in ({"cond_kwargs": {"cond": cond}, "uncond_kwargs": {}, "batched": True},
                       {"cond_kwargs": {"cond": cond}, "uncond_kwargs": {"cond": null}, "batched": False}):
            model, calls = counted(toy)
            out = classifier_free_guidance(model, 2.5, **kwargs)(x, t)
            expected_uncond = toy(x, t) if not kwargs["uncond_kwargs"] else out_u
            assert calls == [4, 4]
            torch.testing.assert_close(out, expected_uncond + 2.5 * (out_c - expected_uncond), rtol=1e-12, atol=1e-12)
        # it plugs into the samplers as a model
        sched = cosine_schedule(100)
        y = ddim_sample(classifier_free_guidance(toy, 1.0, {"cond": cond}, {"cond": null}), x, sched, num_steps=5)
        torch.testing.assert_close(y, ddim_sample(toy, x, sched, num_steps=5, model_kwargs={"cond": cond}))


# ------------------------------------------------------------------------------------------------
# Training: targets, the masked and weighted loss, timesteps (humandiff.diffusion.loss)


def _draw(shape=(4, 6, 5), seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("schedule", [cosine_schedule(1000), linear_schedule(200)], ids=["cosine1000", "linear200"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_a_perfect_prediction_has_zero_loss(schedule, prediction: str):
    x0, noise = _draw()
    t = torch.tensor([0, 7, schedule.num_timesteps // 2, schedule.num_timesteps - 1])
    perfect = prediction_target(prediction, x0, noise, schedule, t)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3, [False] * 6, [True] * 5 + [False]])
    for kwargs in ({}, {"mask": mask}, {"weights": torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=F64)}):
        loss = prediction_loss(schedule, perfect, x0, noise, t, prediction, **kwargs)
        assert loss.shape == (4,) and torch.equal(loss, torch.zeros(4, dtype=F64))
    wrong = prediction_loss(schedule, perfect + 0.1, x0, noise, t, prediction)
    torch.testing.assert_close(wrong, torch.full((4,), 0.01, dtype=F64))


@pytest.mark.parametrize("schedule", [cosine_schedule(1000), linear_schedule(200)], ids=["cosine1000", "linear200"])
def test_targets_are_one_estimate_through_the_schedule(schedule):
    x0, noise = _draw((5, 3, 4), seed=1)
    t = torch.tensor([0, 1, 50, schedule.num_timesteps - 2, schedule.num_timesteps - 1])
    x_t = q_sample(schedule, x0, t, noise)
    ab = schedule.alphas_cumprod[t].reshape(-1, 1, 1)
    targets = {p: prediction_target(p, x0, noise, schedule, t) for p in PREDICTIONS}
    assert targets["x0"] is x0 and targets["eps"] is noise
    torch.testing.assert_close(targets["v"], ab.sqrt() * noise - (1 - ab).sqrt() * x0)
    # each target turns back into the same clean estimate, and v also gives the noise back
    for prediction, target in targets.items():
        torch.testing.assert_close(x0_from_prediction(schedule, x_t, t, target, prediction), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close((1 - ab).sqrt() * x_t + ab.sqrt() * targets["v"], noise, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x0_from_v(schedule, x_t, t, targets["v"]),
                               split_prediction(schedule, x_t, t, noise, "eps")[0], rtol=1e-9, atol=1e-9)
    assert x0_from_prediction(schedule, x_t, t, x0, "x0") is x0


def test_the_mask_excludes_padded_frames():
    schedule = cosine_schedule(100)
    x0, noise = _draw((3, 6, 5), seed=2)
    output = torch.randn(3, 6, 5, dtype=F64, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([3, 30, 90])
    mask = torch.tensor([[True] * 6, [True] * 2 + [False] * 4, [False] * 6])
    loss = prediction_loss(schedule, output, x0, noise, t, "eps", mask=mask)
    # the real frames' mean, whatever the padded frames hold; no real frame gives 0
    torch.testing.assert_close(loss[0], (output[0] - noise[0]).square().mean())
    torch.testing.assert_close(loss[1], (output[1, :2] - noise[1, :2]).square().mean())
    assert loss[2] == 0
    changed_output, changed_noise = output.clone(), noise.clone()
    changed_output[1, 2:], changed_noise[1, 2:], changed_output[2] = 50.0, -7.0, 9.0
    torch.testing.assert_close(prediction_loss(schedule, changed_output, x0, changed_noise, t, "eps", mask=mask), loss)
    # no mask is an all-true mask
    torch.testing.assert_close(prediction_loss(schedule, output, x0, noise, t, "v"),
                               prediction_loss(schedule, output, x0, noise, t, "v", mask=torch.ones(3, 6, dtype=torch.bool)))
    # masked_mean over any trailing dims (B, T, J, 3)
    values = torch.arange(2 * 3 * 2 * 3, dtype=F64).reshape(2, 3, 2, 3)
    frames = torch.tensor([[True, False, True], [False, False, False]])
    torch.testing.assert_close(masked_mean(values, frames), torch.stack([values[0, [0, 2]].mean(), torch.zeros((), dtype=F64)]))


def test_weights_scale_each_sample():
    schedule = linear_schedule(200)
    x0, noise = _draw((4, 8, 3), seed=4)
    output, t = torch.zeros_like(x0), torch.tensor([0, 60, 120, 199])
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[2, 5:] = False
    weights = torch.tensor([0.0, 1.0, 2.5, 10.0], dtype=F64)
    for prediction in PREDICTIONS:
        plain = prediction_loss(schedule, output, x0, noise, t, prediction, mask=mask)
        weighted = prediction_loss(schedule, output, x0, noise, t, prediction, mask=mask, weights=weights)
        torch.testing.assert_close(weighted, weights * plain)
        assert torch.all(plain > 0)


def test_timestep_sampler_is_uniform_by_default_and_deterministic():
    schedule = cosine_schedule(1000)
    uniform = TimestepSampler()(schedule, 5000, torch.Generator().manual_seed(0))
    assert torch.equal(uniform, random_timesteps(schedule, 5000, torch.Generator().manual_seed(0)))
    assert uniform.dtype == torch.long and 0 <= int(uniform.min()) and int(uniform.max()) < 1000
    sampler = TimestepSampler(high_noise_share=0.3, high_noise_fraction=0.05)
    a = sampler(schedule, 300, torch.Generator().manual_seed(7))
    assert torch.equal(a, sampler(schedule, 300, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, sampler(schedule, 300, torch.Generator().manual_seed(8)))
    # one generator, drawn in sequence: the second batch differs from the first
    g = torch.Generator().manual_seed(7)
    assert torch.equal(sampler(schedule, 300, g), a) and not torch.equal(sampler(schedule, 300, g), a)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sampler.high_noise_share = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("schedule", [cosine_schedule(1000), linear_schedule(200)], ids=["cosine1000", "linear200"])
@pytest.mark.parametrize("share, fraction", [(0.25, 0.1), (0.6, 0.05), (1.0, 0.02)])
def test_high_noise_share_matches_its_parameter(schedule, share: float, fraction: float):
    T, n = schedule.num_timesteps, 40000
    top = max(1, round(T * fraction))
    t = TimestepSampler(share, fraction)(schedule, n, torch.Generator().manual_seed(1))
    assert int(t.min()) >= 0 and int(t.max()) <= T - 1
    # the share lands in the top levels, plus the uniform rest's chance to land there
    expected = share + (1 - share) * top / T
    observed = (t >= T - top).double().mean().item()
    assert abs(observed - expected) <= 4.5 * (expected * (1 - expected) / n) ** 0.5 + 1e-12
    if share == 1.0:
        assert bool((t >= T - top).all())


@pytest.mark.parametrize("kwargs, name", [
    (dict(high_noise_share=-0.1), "high_noise_share"), (dict(high_noise_share=1.5), "high_noise_share"),
    (dict(high_noise_share=float("nan")), "high_noise_share"), (dict(high_noise_share="half"), "high_noise_share"),
    (dict(high_noise_share=True), "high_noise_share"), (dict(high_noise_fraction=0.0), "high_noise_fraction"),
    (dict(high_noise_fraction=1.2), "high_noise_fraction"),
])
def test_bad_timestep_sampler_is_one_line_error(kwargs, name: str):
    with pytest.raises(ArtifactError, match=f"TimestepSampler: parameter '{name}'") as info:
        TimestepSampler(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_loss_arguments_are_one_line_errors():
    schedule = cosine_schedule(100)
    x0, noise = _draw((2, 4, 3), seed=5)
    t = torch.tensor([1, 2])
    bad_calls = {
        "prediction": lambda: prediction_loss(schedule, x0, x0, noise, t, "score"),
        "output": lambda: prediction_loss(schedule, x0[:, :3], x0, noise, t, "x0"),
        "noise": lambda: prediction_loss(schedule, x0, x0, noise[:1], t, "eps"),
        "'t'": lambda: prediction_loss(schedule, x0, x0, noise, torch.tensor([0, 100]), "x0"),
        "t' must have shape": lambda: prediction_loss(schedule, x0, x0, noise, torch.tensor([1, 2, 3]), "x0"),
        "mask": lambda: prediction_loss(schedule, x0, x0, noise, t, "x0", mask=torch.ones(2, 4)),
        "mask' must be bool of shape": lambda: prediction_loss(schedule, x0, x0, noise, t, "x0",
                                                               mask=torch.ones(2, 3, dtype=torch.bool)),
        "weights": lambda: prediction_loss(schedule, x0, x0, noise, t, "x0", weights=torch.ones(3)),
        "needs parameters 'schedule' and 't'": lambda: prediction_target("v", x0, noise),
        "prediction_target: parameter 'prediction'": lambda: prediction_target("score", x0, noise),
        "x0_from_prediction": lambda: x0_from_prediction(schedule, x0, t, x0, "score"),
        "masked_mean": lambda: masked_mean(x0, torch.ones(2, 3, dtype=torch.bool)),
        "batch_size": lambda: TimestepSampler()(schedule, 0, torch.Generator()),
    }
    for message, call in bad_calls.items():
        with pytest.raises(ArtifactError, match=message) as info:
            call()
        assert "\n" not in str(info.value), message
