"""Running a method on a setting (the ``scorehmr``, ``scorehmr_regression``, ``scorehmr_smplify``,
``scorehmr_sweep`` and ``scorehmr_ablation`` stages' logic).

Settings (:data:`humandiff.scorehmr.data.SETTING_SETS`): ``fit`` (single-view test set,
reprojection guidance), ``multiview`` (the views of one instant, cross-view consistency),
``video`` (sequences, reprojection + temporal consistency). Methods: ``regression`` (the
perception network's HMR-style estimate, every method's start), ``smplify`` (single-stage SMPLify
from that start, with a smoothness term on video and a pull to the views' mean body pose on
multi-view) and ``scorehmr`` (Algorithm 1 with the trained denoiser).

The ``scorehmr`` params section: ``seed``, ``threads``, ``max_units`` (per setting, 0 = all),
``losses`` (per setting: the guidance terms by name, :data:`LOSS_NAMES`), one block per setting of
:class:`~humandiff.scorehmr.refine.ScoreHMROptions` overrides (empty: the paper's), ``smplify`` (a
block per setting of :class:`~humandiff.scorehmr.smplify.SMPLifyOptions` overrides) and ``sweep``
(named overrides of the fit options: the supplementary's tau and DDIM-step sweeps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from humandiff.io.artifacts import ArtifactError, load_npz
from humandiff.scorehmr.data import (SETTING_SETS, SetData, body_joints_np, detected_keypoints, features, joint_metrics,
                                     regression_start)
from humandiff.scorehmr.losses import MultiViewConsistency, Objective, Reprojection, TemporalConsistency
from humandiff.scorehmr.model import POSE_DIM, PoseDenoiser
from humandiff.scorehmr.refine import SETTINGS, ScoreHMROptions, refine
from humandiff.scorehmr.smplify import GaussianMixture, SMPLifyOptions, smplify

METHODS = ("regression", "smplify", "scorehmr")
#: Guidance terms a setting's ``losses`` may name.
LOSS_NAMES = ("repr", "mv", "temp")
#: Every key of the scorehmr params section.
SECTION_KEYS = {"seed": int, "threads": int, "max_units": dict, "losses": dict, "fit": dict, "multiview": dict,
                "video": dict, "smplify": dict, "sweep": dict}


@dataclass(frozen=True)
class RunSettings:
    """One stage's reading of the ``scorehmr`` section (see the module doc)."""

    setting: str
    method: str
    max_units: int = 0
    losses: tuple[str, ...] = ("repr",)
    options: dict[str, Any] = field(default_factory=dict)
    variant: str = ""

    @property
    def run_name(self) -> str:
        return self.method + (f"_{self.variant}" if self.variant else "")


def run_settings(params: Mapping[str, Any], setting: str, method: str, variant: str = "", where: str = "params.yaml"
                 ) -> RunSettings:
    """Check the section's blocks for one run; every error names ``where`` and the parameter."""
    if setting not in SETTINGS:
        raise ArtifactError(f"{where}: unknown setting {setting!r} (known: {', '.join(SETTINGS)})")
    if method not in METHODS:
        raise ArtifactError(f"{where}: unknown method {method!r} (known: {', '.join(METHODS)})")
    for key in ("max_units", "losses", setting):
        if key != setting and setting not in params[key]:
            raise ArtifactError(f"{where}: missing parameter 'scorehmr.{key}.{setting}'")
    max_units = params["max_units"][setting]
    if not isinstance(max_units, int) or isinstance(max_units, bool) or max_units < 0:
        raise ArtifactError(f"{where}: parameter 'scorehmr.max_units.{setting}' must be an integer >= 0, got {max_units!r}")
    losses = params["losses"][setting]
    if not isinstance(losses, list) or not losses or any(name not in LOSS_NAMES for name in losses):
        raise ArtifactError(f"{where}: parameter 'scorehmr.losses.{setting}' must list guidance terms of "
                            f"{', '.join(LOSS_NAMES)}, got {losses!r}")
    if "mv" in losses and setting != "multiview" or "temp" in losses and setting != "video":
        raise ArtifactError(f"{where}: parameter 'scorehmr.losses.{setting}' names a term the {setting} set cannot "
                            f"use ({losses!r}: 'mv' needs multiview, 'temp' video)")
    if method == "smplify":
        options = _block(params["smplify"], setting, f"{where}: parameter 'scorehmr.smplify.{setting}'")
        option_block(SMPLifyOptions, setting, options, f"{where}: parameter 'scorehmr.smplify.{setting}'")
    else:
        options = dict(_block(params, setting, f"{where}: parameter 'scorehmr.{setting}'"))
        option_block(ScoreHMROptions, setting, options, f"{where}: parameter 'scorehmr.{setting}'")
        if variant:
            if setting != "fit":
                raise ArtifactError(f"{where}: sweep variants run on the fit setting, not {setting!r}")
            options |= _block(params["sweep"], variant, f"{where}: parameter 'scorehmr.sweep.{variant}'")
            option_block(ScoreHMROptions, setting, options, f"{where}: parameter 'scorehmr.sweep.{variant}'")
    return RunSettings(setting, method, max_units, tuple(losses), options, variant)


def _block(params: Mapping[str, Any], key: str, name: str) -> dict[str, Any]:
    if key not in params:
        raise ArtifactError(f"{name} is missing")
    value = params[key] or {}
    if not isinstance(value, dict):
        raise ArtifactError(f"{name} must be a mapping of options, got {value!r}")
    return dict(value)


def option_block(kind, setting: str, overrides: Mapping[str, Any], name: str):
    """``kind.for_setting(setting, **overrides)`` (ScoreHMROptions or SMPLifyOptions); errors name ``name``."""
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items()}
    try:
        return kind.for_setting(setting, **values)
    except (ArtifactError, TypeError) as exc:
        raise ArtifactError(f"{name}: {str(exc).splitlines()[0]}") from None


def scorehmr_options(settings: RunSettings) -> ScoreHMROptions:
    return option_block(ScoreHMROptions, settings.setting, settings.options, f"scorehmr.{settings.setting}")


def objective(settings: RunSettings, data: SetData, body_model, betas: torch.Tensor) -> Objective:
    """The guidance of a setting from its ``losses`` (Eq. 12-14), bound to the set's detections."""
    groups = torch.from_numpy(data.groups)
    terms = {"repr": lambda: Reprojection(body_model, betas, detected_keypoints(data)),
             "mv": lambda: MultiViewConsistency(groups),
             "temp": lambda: TemporalConsistency(groups)}
    return Objective({name: terms[name]() for name in settings.losses})


@dataclass
class RunOutput:
    """A method's estimate for every row: ``pose`` (N, 144), ``betas`` (N, L), ``camera`` (N, 3);
    ``seconds`` of the method itself; ``history`` per-iteration/step terms; ``extra`` for the JSON."""

    pose: torch.Tensor
    betas: torch.Tensor
    camera: torch.Tensor
    seconds: float
    history: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def run_method(settings: RunSettings, data: SetData, body_model, *, denoiser: PoseDenoiser | None = None,
               feature: str = "pooled", prior: GaussianMixture | None = None, progress: bool = False) -> RunOutput:
    """Run ``settings.method`` on ``data`` (see the module doc)."""
    start = regression_start(data)
    groups = torch.from_numpy(data.groups)
    began = time.perf_counter()
    if settings.method == "regression":
        return RunOutput(start["pose"], start["betas"], start["camera"], 0.0)
    if settings.method == "smplify":
        if prior is None:
            raise ArtifactError("run_method: smplify needs the pose prior")
        options = option_block(SMPLifyOptions, settings.setting, settings.options, f"scorehmr.smplify.{settings.setting}")
        fit = smplify(body_model, prior, detected_keypoints(data), start["pose"], start["betas"], start["camera"], options,
                      groups=None if settings.setting == "fit" else groups)
        return RunOutput(fit.pose, fit.betas, fit.camera, time.perf_counter() - began,
                         {f"smplify_{k}": v.mean(1) for k, v in fit.history.items()}, {"options": options.to_dict()})
    if denoiser is None:
        raise ArtifactError("run_method: scorehmr needs the denoiser")
    options = scorehmr_options(settings)
    cond = torch.from_numpy(features(data, feature))
    if cond.shape[1] != denoiser.config.feature_dim:
        raise ArtifactError(f"{data.path}: feature '{feature}' has {cond.shape[1]} numbers, the denoiser expects "
                            f"{denoiser.config.feature_dim} (retrain it on this extraction)")
    camera = None if settings.losses == ("mv",) else start["camera"]
    result = refine(start["pose"], denoiser.eval(), objective(settings, data, body_model, start["betas"]), options,
                    schedule=denoiser.config.noise_schedule(), features=cond, camera=camera,
                    groups=None if settings.setting == "fit" else groups, progress=progress)
    seconds = time.perf_counter() - began
    extra = {"options": options.to_dict(), "losses": list(settings.losses),
             "iterations_mean": round(float(result.iterations.mean()), 2),
             "converged_share": round(float(result.converged.mean()), 3)}
    history = {f"history_{k}": v for k, v in result.history.items()}
    return RunOutput(result.pose, start["betas"], start["camera"] if result.camera is None else result.camera, seconds,
                     history, extra)


def run_record(settings: RunSettings, data: SetData, body_model, output: RunOutput
               ) -> tuple[dict[str, np.ndarray], dict, dict]:
    """The run's arrays (for ``<run>.npz``), its JSON record with metrics (:func:`joint_metrics`) and its
    timing (wall-clock figures, written apart: no stage depends on a timing)."""
    joints = body_joints_np(body_model, output.pose, output.betas)
    fps = float(data.rows["fps"].iloc[0]) if settings.setting == "video" else None
    metrics = joint_metrics(joints, data, fps)
    arrays = {"image_id": np.asarray(data.extraction["image_id"], dtype=str),
              "pose": output.pose.detach().float().numpy(), "betas": output.betas.detach().float().numpy(),
              "camera": output.camera.detach().float().numpy(), "groups": data.groups, **output.history}
    record = {"setting": settings.setting, "method": settings.method, "variant": settings.variant, "set": data.name,
              "metrics": metrics, **output.extra}
    timing = {"seconds": round(output.seconds, 2), "images": len(data),
              "frames_per_s": round(len(data) / output.seconds, 1) if output.seconds > 0 else None}
    return arrays, record, timing


def load_run(path: str | Path) -> dict[str, np.ndarray]:
    """A run's arrays (``image_id``, ``pose`` (N, 144), ``betas``, ``camera``, ``groups``)."""
    return load_npz(path, {"image_id": (-1,), "pose": (-1, POSE_DIM), "betas": (-1, -1), "camera": (-1, 3)})


def set_for(setting: str) -> str:
    return SETTING_SETS[setting]
