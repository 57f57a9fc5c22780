"""SoPo library: options, the loss of Algorithm 1 and its variants, one training step, offline pairs, tau calibration."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from humandiff.diffusion import eps_from_x0, prediction_loss, q_sample
from humandiff.evaluators.tmr import RewardConfig, RewardModel
from humandiff.io import ArtifactError
from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel
from humandiff.sopo.algorithm import (
    RewardScorer,
    build_offline_pairs,
    ddim_sampler,
    score_group,
    sopo_step,
)
from humandiff.sopo.calibration import PAPER_TAUS, TauCalibration, calibrate_taus, reward_threshold
from humandiff.diffusion.loss import error_weight
from humandiff.sopo.loss import OnlineGroup, denoising_errors, preference_loss, select_pair
from humandiff.sopo.options import VARIANTS, SoPoOptions, learning_rate

TINY = MDMConfig(latent_dim=32, num_layers=2, num_heads=4, ff_dim=64, dropout=0.0, diffusion_steps=100)
SCHEDULE = TINY.noise_schedule()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Toy(nn.Module):
    """``x0_hat = a * x_t + b``: a denoiser with two parameters."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(a)), nn.Parameter(torch.tensor(b))

    def forward(self, x_t, t, text_emb=None, mask=None):
        return self.a * x_t + self.b


def group(B: int = 4, K: int = 3, T: int = 8, D: int = 5, seed: int = 0, embeddings: bool = True) -> OnlineGroup:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, T // 2:] = False
    E = 6
    return OnlineGroup(torch.randn(B, T, D, generator=g), mask, torch.randn(B, 3, generator=g),
                       torch.randn(B, K, T, D, generator=g), torch.rand(B, K, generator=g), torch.rand(B, generator=g),
                       torch.randn(B, E, generator=g) if embeddings else None,
                       torch.randn(B, K, E, generator=g) if embeddings else None)


def draws(B: int, shape, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SCHEDULE.num_timesteps, (B,), generator=g), torch.randn(shape, generator=g)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("bad, field", [({"K": 1}, "'K'"), ({"tau": 1.2}, "'tau'"), ({"tau": 0.0}, "'tau'"),
                                        ({"variant": "ipo"}, "'variant'"), ({"C": 1.0}, "'C'"), ({"beta": 0.0}, "'beta'"),
                                        ({"lr": float("nan")}, "'lr'"), ({"error_space": "v"}, "'error_space'"),
                                        ({"warmup_steps": -1}, "'warmup_steps'")])
def test_options_reject_bad_values_with_one_line_errors(bad, field):
    with pytest.raises(ArtifactError) as error:
        SoPoOptions(**bad)
    assert field in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ArtifactError, match="unknown parameter.*gamma"):
        SoPoOptions().with_overrides({"gamma": 1})


def test_options_defaults_are_the_papers_and_the_schedule_warms_up_then_decays():
    o = SoPoOptions()
    assert (o.K, o.tau, o.C, o.beta, o.lr, o.batch_size, o.ddim_steps, o.guidance_scale) == (4, 0.45, 2.0, 1.0, 1e-5, 64, 50, 2.5)
    assert [(v, SoPoOptions(variant=v).reweight, SoPoOptions(variant=v).filtered) for v in VARIANTS] == [
        ("sopo", True, True), ("sopo_no_vu", True, False), ("dsopo", False, False), ("usopo", False, True),
        ("dpo_offline", False, False), ("dpo_online", False, False)]
    o = SoPoOptions(steps=10, warmup_steps=2, lr=1.0)
    rates = [learning_rate(s, o) for s in range(10)]
    assert rates[:3] == [0.5, 1.0, 1.0] and all(a >= b for a, b in zip(rates[2:], rates[3:])) and rates[-1] < 0.05


# --------------------------------------------------------------------------- the pair


def test_the_lowest_reward_sample_is_x_l_and_online_dpo_takes_the_best_as_x_w():
    g = group()
    pair = select_pair(g, SoPoOptions(), threshold=0.5)
    lowest = g.rewards.argmin(1)
    for b in range(4):
        assert torch.equal(pair.unpreferred[b], g.samples[b, lowest[b]])
        assert pair.unpreferred_reward[b] == g.rewards[b].min()
    assert torch.equal(pair.preferred, g.preferred)
    online = select_pair(g, SoPoOptions(variant="dpo_online"), threshold=0.5)
    assert all(torch.equal(online.preferred[b], g.samples[b, g.rewards[b].argmax()]) for b in range(4))


def test_the_dpo_switch_follows_tau_only_where_the_variant_filters():
    g = group()
    minima = g.rewards.min(1).values
    threshold = float(minima.median())
    for variant in VARIANTS:
        dpo = select_pair(g, SoPoOptions(variant=variant), threshold).dpo
        expected = minima < threshold if variant in ("sopo", "usopo") else torch.ones(4, dtype=torch.bool)
        assert torch.equal(dpo, expected), variant
    assert 0 < int((minima < threshold).sum()) < 4


def test_beta_w_follows_the_smallest_cosine_to_the_online_samples():
    g = group()
    pair = select_pair(g, SoPoOptions(C=2.5, beta=0.7), threshold=0.5)
    for b in range(4):
        cosines = [F.cosine_similarity(g.preferred_embedding[b], g.sample_embeddings[b, k], dim=0) for k in range(3)]
        assert pair.similarity[b] == pytest.approx(float(min(cosines)), abs=1e-6)
        assert pair.beta_w[b] == pytest.approx(0.7 * (2.5 - float(min(cosines))), abs=1e-6)
    # a preferred motion far from every generated one weighs more
    far = OnlineGroup(g.preferred, g.mask, g.text_emb, g.samples, g.rewards, None, -g.sample_embeddings[:, 0],
                      g.sample_embeddings)
    assert bool((select_pair(far, SoPoOptions(), 0.5).beta_w >= select_pair(g, SoPoOptions(), 0.5).beta_w - 1e-6).all())
    assert torch.equal(select_pair(g, SoPoOptions(variant="dsopo", beta=0.7), 0.5).beta_w, torch.full((4,), 0.7))
    with pytest.raises(ArtifactError, match="motion latents"):
        select_pair(group(embeddings=False), SoPoOptions(), 0.5)


# --------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("variant", ["sopo", "sopo_no_vu", "dsopo", "usopo", "dpo_online"])
def test_each_variant_is_its_equation(variant):
    g = group()
    threshold = float(g.rewards.min(1).values.median())
    options = SoPoOptions(variant=variant, beta=0.8, dpo_scale=3.0)
    policy, reference = Toy(0.9, 0.05), Toy(1.0, 0.0)
    pair = select_pair(g, options, threshold)
    t, noise = draws(4, g.preferred.shape)
    out = preference_loss(policy, reference, SCHEDULE, pair, g.mask, g.text_emb, t, noise, options)
    args = (SCHEDULE, t, noise, g.text_emb, g.mask, "x0", "x0")
    errors = {}
    for name, x in (("w", pair.preferred), ("l", pair.unpreferred)):
        e = lambda m: denoising_errors(m, SCHEDULE, x, t, noise, g.text_emb, g.mask, "x0", "x0")
        errors[name] = (e(policy) - e(reference)).detach()
    dw, dl, s, beta = errors["w"], errors["l"], 3.0, 0.8
    low = g.rewards.min(1).values < threshold
    if variant == "dsopo" or variant == "dpo_online":  # Eq. S12 with Diffusion-DPO errors
        expected = -F.logsigmoid(-s * beta * (dw - dl))
    elif variant == "usopo":  # Eq. S16
        expected = torch.where(low, -F.logsigmoid(-s * beta * (dw - dl)), -F.logsigmoid(-s * beta * dw))
    else:
        bw = pair.beta_w
        dpo = -F.logsigmoid(-s * (bw * dw - beta * dl))
        expected = torch.where(low, dpo, -F.logsigmoid(-s * bw * dw)) if variant == "sopo" else dpo
    assert torch.allclose(out.per_sample.detach(), expected, atol=1e-6)
    assert out.loss.detach() == pytest.approx(float(expected.mean()), abs=1e-6)


def test_preferred_only_rows_ignore_x_l():
    g = group()
    options = SoPoOptions(variant="usopo")
    pair = select_pair(g, options, threshold=-1.0)  # no row takes the DPO term
    t, noise = draws(4, g.preferred.shape)
    a = preference_loss(Toy(0.9, 0.1), Toy(1.0, 0.0), SCHEDULE, pair, g.mask, g.text_emb, t, noise, options).per_sample
    moved = type(pair)(pair.preferred, pair.unpreferred + 5.0, pair.unpreferred_reward, pair.beta_w, None, pair.dpo)
    b = preference_loss(Toy(0.9, 0.1), Toy(1.0, 0.0), SCHEDULE, moved, g.mask, g.text_emb, t, noise, options).per_sample
    assert torch.allclose(a, b)


def test_eps_error_space_is_the_papers_noise_error_of_the_same_estimate():
    g = group()
    t, noise = draws(4, g.preferred.shape)
    model = Toy(0.8, 0.1)
    x_t = q_sample(SCHEDULE, g.preferred, t, noise)
    x0_hat = model(x_t, t)
    eps_hat = eps_from_x0(SCHEDULE, x_t, t, x0_hat)
    direct = prediction_loss(SCHEDULE, eps_hat, g.preferred, noise, t, "eps", mask=g.mask)
    ours = denoising_errors(model, SCHEDULE, g.preferred, t, noise, g.text_emb, g.mask, "x0", "eps")
    assert torch.allclose(ours, direct, rtol=1e-4)
    ab = SCHEDULE.alphas_cumprod[t].float()[:, None, None]
    v_hat = ab.sqrt() * eps_hat - (1 - ab).sqrt() * x0_hat
    v_direct = prediction_loss(SCHEDULE, v_hat, g.preferred, noise, t, "v", mask=g.mask)
    ours_v = denoising_errors(model, SCHEDULE, g.preferred, t, noise, g.text_emb, g.mask, "x0", "v")
    assert torch.allclose(ours_v, v_direct, rtol=1e-4)
    ab = SCHEDULE.alphas_cumprod[t]
    assert torch.allclose(error_weight(SCHEDULE, t, "x0", "eps"), ab / (1 - ab))
    assert torch.allclose(error_weight(SCHEDULE, t, "eps", "x0") * error_weight(SCHEDULE, t, "x0", "eps"),
                          torch.ones(4, dtype=torch.float64))


def test_gradient_at_init_is_what_diffusion_dpo_predicts():
    """policy == reference: D = 0, so d/dtheta -log sigmoid(-s inside) = s/2 d inside (sigma(0) = 1/2)."""
    torch.manual_seed(0)
    policy = MotionDiffusionModel(TINY)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.eval()
    g = group(B=3, K=2, T=8, D=263, embeddings=True)
    g = OnlineGroup(g.preferred, g.mask, torch.randn(3, 384), g.samples, g.rewards, None, g.preferred_embedding,
                    g.sample_embeddings)
    options = SoPoOptions(dpo_scale=7.0, beta=1.3)
    pair = select_pair(g, options, threshold=float(g.rewards.min(1).values.median()) + 1e-6)
    assert 0 < int(pair.dpo.sum()) < 3
    t, noise = draws(3, g.preferred.shape)
    out = preference_loss(policy, reference, SCHEDULE, pair, g.mask, g.text_emb, t, noise, options)
    assert out.loss.item() == pytest.approx(math.log(2.0), abs=1e-6)
    got = torch.autograd.grad(out.loss, list(policy.parameters()), allow_unused=True)
    e = lambda x: denoising_errors(policy, SCHEDULE, x, t, noise, g.text_emb, g.mask, "x0", "x0")
    inside = pair.beta_w * e(pair.preferred) - torch.where(pair.dpo, 1.3 * e(pair.unpreferred), torch.zeros(3))
    want = torch.autograd.grad((0.5 * 7.0 * inside).mean(), list(policy.parameters()), allow_unused=True)
    checked = 0
    for a, b in zip(got, want):
        if a is not None and b is not None:
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
            checked += int(b.abs().sum() > 0)
    assert checked > 5


# --------------------------------------------------------------------------- the step and the baselines


def test_a_few_steps_raise_the_policys_preference_of_x_w_over_x_l():
    """Toy problem: x_w a fixed clip, the online samples its negation plus noise; after a few steps the policy
    denoises x_w better and x_l worse than the reference does, at draws the training never saw."""
    torch.manual_seed(0)
    policy = MotionDiffusionModel(TINY)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    B, T = 4, 8
    g = torch.Generator().manual_seed(3)
    x_w = torch.randn(B, T, 263, generator=g)
    batch = {"motion": x_w, "mask": torch.ones(B, T, dtype=torch.bool), "text_emb": torch.randn(B, 384, generator=g)}

    def sampler(model, text_emb, mask, K, generator):
        return -x_w[:, None] + 0.1 * torch.randn(B, K, T, 263, generator=generator)

    def reward(motions, mask, text_emb):
        score = torch.sigmoid((motions * x_w.repeat_interleave(3, 0)).mean((1, 2)))
        return score, motions.mean(1)[:, :6]

    options = SoPoOptions(K=2, lr=2e-3, warmup_steps=0, steps=12, dpo_scale=10.0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=options.lr, weight_decay=0.0)
    history = [sopo_step(policy, reference, batch, options=options, threshold=0.9, schedule=SCHEDULE, sampler=sampler,
                         reward=reward, optimizer=optimizer, generator=g, step=s) for s in range(options.steps)]
    assert all(r.dpo_share == 1.0 and math.isfinite(r.loss) for r in history)
    assert history[0].loss == pytest.approx(math.log(2.0), abs=1e-5)
    assert history[-1].reward_preferred > history[-1].reward_unpreferred
    t, noise = draws(B, x_w.shape, seed=77)
    e = lambda m, x: denoising_errors(m, SCHEDULE, x, t, noise, batch["text_emb"], batch["mask"], "x0", "x0")
    with torch.no_grad():
        margin = (e(policy, x_w) - e(reference, x_w)) - (e(policy, -x_w) - e(reference, -x_w))
    assert float(margin.mean()) < 0
    assert history[-1].margin < 0


def test_real_sampler_reward_and_offline_pairs_fit_together():
    torch.manual_seed(1)
    prior = MotionDiffusionModel(TINY).eval()
    reward_model = RewardModel(RewardConfig(latent_dim=16, layers=1, heads=2, ff_dim=32, dropout=0.0, patch=4),
                               np.zeros(263, np.float32), np.ones(263, np.float32))
    scorer = RewardScorer(reward_model, np.zeros(263, np.float32), np.ones(263, np.float32))
    sampler = ddim_sampler(SCHEDULE, ddim_steps=2, guidance_scale=2.5)
    text = torch.randn(3, 384)
    mask = torch.arange(8)[None] < torch.tensor([8, 4, 6])[:, None]
    g = torch.Generator().manual_seed(0)
    samples = sampler(prior, text, mask, 2, g)
    assert samples.shape == (3, 2, 8, 263) and not samples.requires_grad
    assert float(samples[1, :, 4:].abs().sum()) == 0.0
    scored = score_group(scorer, torch.randn(3, 8, 263), mask, text, samples)
    assert scored.rewards.shape == (3, 2) and bool(((scored.rewards >= 0) & (scored.rewards <= 1)).all())
    pairs = build_offline_pairs(prior, text, mask, sampler=sampler, reward=scorer, K=3, generator=g, batch_size=2)
    assert len(pairs) == 3 and bool((pairs.chosen_reward >= pairs.rejected_reward).all())
    again, _ = scorer(pairs.chosen, mask, text)
    assert torch.allclose(again, pairs.chosen_reward, atol=1e-5)
    batch = pairs.batch([0, 2])
    group_ = OnlineGroup(batch["motion"], batch["mask"], batch["text_emb"], batch["rejected"][:, None],
                         batch["rejected_reward"][:, None])
    pair = select_pair(group_, SoPoOptions(variant="dpo_offline"), threshold=0.5)
    assert torch.equal(pair.unpreferred, pairs.rejected[[0, 2]]) and bool(pair.dpo.all())
    policy = copy.deepcopy(prior).train()
    before = [p.detach().clone() for p in prior.parameters()]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for variant in ("dpo_offline", "usopo"):
        record = sopo_step(policy, prior, pairs.batch([0, 1, 2]), options=SoPoOptions(variant=variant, K=2, warmup_steps=0),
                           threshold=0.0, schedule=SCHEDULE, sampler=sampler, reward=scorer, optimizer=optimizer, generator=g)
        assert record.dpo_share == (1.0 if variant == "dpo_offline" else 0.0) and math.isfinite(record.loss)
    assert all(torch.equal(a, b) for a, b in zip(before, prior.parameters()))
    with pytest.raises(ArtifactError, match="'rejected'"):
        sopo_step(policy, prior, {"motion": pairs.chosen, "mask": mask, "text_emb": text},
                  options=SoPoOptions(variant="dpo_offline"), threshold=0.5, schedule=SCHEDULE, sampler=sampler,
                  reward=scorer, optimizer=optimizer, generator=g)
    with pytest.raises(ArtifactError, match="'K'"):
        build_offline_pairs(prior, text, mask, sampler=sampler, reward=scorer, K=1, generator=g)


# --------------------------------------------------------------------------- calibration


def test_calibration_maps_the_papers_sweep_monotonically_onto_quantiles_of_the_group_minimum():
    rewards = np.random.default_rng(0).beta(8, 1.5, size=(400, 4))
    table = calibrate_taus(rewards)
    assert list(table) == list(PAPER_TAUS)
    quantiles = [row["quantile"] for row in table.values()]
    thresholds = [row["threshold"] for row in table.values()]
    assert quantiles == pytest.approx([0.25, 0.375, 0.5, 0.625, 0.75])
    assert all(a < b for a, b in zip(thresholds, thresholds[1:]))
    for row in table.values():
        assert row["dpo_share"] == pytest.approx(row["quantile"], abs=0.01)
    assert reward_threshold(rewards, 0.45) == pytest.approx(table[0.45]["threshold"])
    assert reward_threshold(rewards, 0.45) < np.median(rewards)  # the minimum of 4 sits below a single sample
    with pytest.raises(ArtifactError, match="outside"):
        TauCalibration(span=2.0).quantile(0.40)
    with pytest.raises(ArtifactError, match="'anchor_quantile'"):
        TauCalibration(anchor_quantile=1.0)
    with pytest.raises(ArtifactError, match="rewards"):
        calibrate_taus(np.zeros((0, 4)))
