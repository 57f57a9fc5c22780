"""ONE diffusion core shared by DNO, ScoreHMR, SoPo and HMDiff.

Schedules (``schedule``), forward noising, conversions, DDPM / DDIM steps and chains, DDIM
inversion and a differentiable sampler (``sampling``), loss guidance and classifier-free guidance
(``guidance``), the training loss and timesteps for x0, eps and v prediction (``loss``). Pure
functions and frozen dataclasses: no hidden state, randomness only from an explicit generator or
explicit noise.
"""

from humandiff.diffusion.guidance import (
    Denoiser,
    Guidance,
    GuidanceLoss,
    GuidanceMode,
    classifier_free_guidance,
)
from humandiff.diffusion.loss import (
    TimestepSampler,
    masked_mean,
    prediction_loss,
    prediction_target,
    random_timesteps,
)
from humandiff.diffusion.sampling import (
    PREDICTIONS,
    Prediction,
    PredictionType,
    StepOutput,
    Trajectory,
    ddim_invert,
    ddim_invert_step,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    eps_from_score,
    eps_from_x0,
    q_posterior,
    q_sample,
    resolve_timesteps,
    score_from_eps,
    split_prediction,
    x0_from_eps,
    x0_from_prediction,
    x0_from_v,
)
from humandiff.diffusion.schedule import (
    CLEAN,
    NoiseSchedule,
    Spacing,
    alpha_bar_at,
    as_timesteps,
    check_timesteps,
    cosine_schedule,
    gather_at,
    linear_schedule,
    make_schedule,
    make_timesteps,
)

__all__ = [
    "CLEAN",
    "Denoiser",
    "Guidance",
    "GuidanceLoss",
    "GuidanceMode",
    "NoiseSchedule",
    "PREDICTIONS",
    "Prediction",
    "PredictionType",
    "Spacing",
    "StepOutput",
    "TimestepSampler",
    "Trajectory",
    "alpha_bar_at",
    "as_timesteps",
    "check_timesteps",
    "classifier_free_guidance",
    "cosine_schedule",
    "ddim_invert",
    "ddim_invert_step",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "eps_from_score",
    "eps_from_x0",
    "gather_at",
    "linear_schedule",
    "make_schedule",
    "make_timesteps",
    "masked_mean",
    "prediction_loss",
    "prediction_target",
    "q_posterior",
    "q_sample",
    "random_timesteps",
    "resolve_timesteps",
    "score_from_eps",
    "split_prediction",
    "x0_from_eps",
    "x0_from_prediction",
    "x0_from_v",
]
