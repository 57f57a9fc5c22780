"""Evaluating one row of HMDiff's tables (the ``eval_hmdiff`` stages' logic).

A run (:class:`humandiff.hmdiff.settings.RunSpec`) predicts a full-resolution mesh for each of the
first ``hmdiff.eval.images`` test images:

- ``diffusion``: Algorithm 1 (:func:`humandiff.hmdiff.dat.dat_reverse`) with the run's ablation
  switches, ``batch_images`` images x N chains at once, U drawn from the heatmaps (or u_c), the
  centre of the N samples up-sampled by the model's learned map; at each of the run's DDIM step
  counts, the best (lowest MPJPE on this same subset, as the paper's Table 4 picks its steps) kept;
- ``regression``: Baseline A / B, one forward pass, up-sampled the same way;
- ``head``: the perception network's HMR-style SMPL regression posed with the body model.

Protocol (:func:`score`): meshes and joints pelvis-relative in the camera frame, mm. MPVE over all
V vertices of the body model's mesh; joints are the body model's ``J_regressor`` applied to the
predicted mesh against the true skeleton's joints; MPJPE (pelvis-aligned) and PA-MPJPE (similarity
Procrustes per image) over the 14 LSP joints of 3DPW's protocol (:data:`SMPL_TO_LSP14`).

Wall-clock figures are kept apart (:class:`RunOutcome.speed`) for a file no stage depends on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from humandiff.body.model import posed_body
from humandiff.eval.mesh import SMPL_TO_LSP14, mpjpe, mpve, pa_mpjpe
from humandiff.hmdiff.dat import dat_reverse, input_distribution, single_pose
from humandiff.hmdiff.data import Geometry, ImageSet
from humandiff.hmdiff.settings import EvalSettings, RunSpec
from humandiff.hmdiff.training import HMDiffNet
from humandiff.io.artifacts import ArtifactError

METRICS = ("mpve_mm", "mpjpe_mm", "pa_mpjpe_mm")


@dataclass
class Prediction:
    """Full meshes (B, V, 3) of one setting; for diffusion also the coarse samples of the figure images
    (F, N, V_c, 3) and the per-step history (``ratio``, ``dat``, ``gap`` (S, B, N), ``timestep`` (S,))."""

    vertices: Tensor
    samples: Tensor | None = None
    history: dict[str, np.ndarray] | None = None
    seconds: float = 0.0


@dataclass
class RunOutcome:
    """``summary``: the JSON row (no timings); ``arrays``: per-image errors, figure meshes, history;
    ``speed``: images per second and seconds (wall clock: its own file)."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray]
    speed: dict[str, Any]


def score(vertices: Tensor, data: ImageSet, joint_regressor: Tensor) -> dict[str, np.ndarray]:
    """Per-image MPVE, MPJPE, PA-MPJPE (mm) of predicted full meshes (B, V, 3) (see the module doc)."""
    if vertices.shape != data.vertices.shape:
        raise ArtifactError(f"hmdiff: predicted meshes {tuple(vertices.shape)} differ from the truth {tuple(data.vertices.shape)}")
    if not bool(torch.isfinite(vertices).all()):
        raise ArtifactError("hmdiff: the predicted meshes contain NaN or Inf")
    joints = torch.einsum("jv,bvc->bjc", joint_regressor.to(vertices.dtype), vertices)
    return {"mpve_mm": 1000 * mpve(vertices, data.vertices),
            "mpjpe_mm": 1000 * mpjpe(joints, data.joints, root=0, joints=SMPL_TO_LSP14),
            "pa_mpjpe_mm": 1000 * pa_mpjpe(joints, data.joints, joints=SMPL_TO_LSP14)}


def _batches(count: int, size: int):
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def predict_diffusion(model: HMDiffNet, spec: RunSpec, settings: EvalSettings, steps: int, geometry: Geometry, data: ImageSet,
                      seed: int) -> Prediction:
    """The run's meshes at ``steps`` DDIM steps (see the module doc); seeded by ``seed``."""
    options = spec.hmdiff_options(settings, steps)
    generator = torch.Generator().manual_seed(seed)
    schedule = model.config.noise_schedule()
    meshes, samples, history = [], [], []
    started = time.perf_counter()
    for rows in _batches(len(data), settings.batch_images):
        args = (data.heatmaps[rows], data.depth_maps[rows], data.intrinsics[rows], data.root_depth[rows])
        if options.prior == "single":
            poses = single_pose(*args, stride=data.stride)
        else:
            poses = input_distribution(*args, options.num_samples, generator, stride=data.stride)
        with torch.no_grad():
            result = dat_reverse(model, schedule, geometry.regressor, poses, options, generator=generator,
                                 model_kwargs=model.conditioning(data.tokens[rows], *args[:2]),
                                 pose_to_mesh=geometry.pose_to_mesh, upsample=lambda centre: model.upsampler(centre)[1],
                                 coordinates=model.coordinates)
        meshes.append(result.mesh)
        samples.append(result.samples)
        history.append(result.history)
    seconds = time.perf_counter() - started
    merged = {name: np.concatenate([h[name] for h in history], 1) for name in ("gap", "ratio", "dat")}
    merged["timestep"] = history[0]["timestep"]
    return Prediction(torch.cat(meshes), torch.cat(samples)[: settings.figure_images], merged, seconds)


def predict_regression(model: HMDiffNet, settings: EvalSettings, data: ImageSet) -> Prediction:
    """Baseline A / B: one pass of the stacked network per image, up-sampled."""
    meshes = []
    started = time.perf_counter()
    with torch.no_grad():
        for rows in _batches(len(data), settings.batch_images):
            meshes.append(model.upsampler(model.regress(data.tokens[rows], data.heatmaps[rows], data.depth_maps[rows]))[1])
    return Prediction(torch.cat(meshes), seconds=time.perf_counter() - started)


def predict_head(body_model, data: ImageSet) -> Prediction:
    """The perception network's SMPL regression (already computed by ``extract``), posed, pelvis-relative."""
    r = data.regression
    started = time.perf_counter()
    with torch.no_grad():
        vertices, joints = posed_body(body_model, *(torch.as_tensor(r[k]) for k in ("global_orient", "body_pose", "betas",
                                                                                     "transl")))
    return Prediction((vertices - joints[:, :1]).float(), seconds=time.perf_counter() - started)


def _row(name: str, spec: RunSpec, steps: int | None, errors: dict[str, np.ndarray] | None,
         prediction: Prediction) -> dict[str, Any]:
    """A run's summary at one step count; ``errors`` None: the chains diverged (metrics null, and the
    share of images whose centre mesh is NaN or Inf in ``diverged``)."""
    bad = ~torch.isfinite(prediction.vertices).flatten(1).all(1)
    return {"run": name, "kind": spec.kind, "model": spec.model, "ablation": spec.ablation if spec.kind == "diffusion" else None,
            "steps": steps, "images": int(len(prediction.vertices)), "diverged": round(float(bad.double().mean()), 4),
            **{metric: None if errors is None else round(float(errors[metric].mean()), 2) for metric in METRICS}}


def evaluate_run(name: str, spec: RunSpec, settings: EvalSettings, data: ImageSet, geometry: Geometry,
                 joint_regressor: Tensor, model: HMDiffNet | None = None, body_model=None, seed: int = 0,
                 progress=None) -> RunOutcome:
    """Predict and score one run (see the module doc); ``progress(n)`` after each DDIM setting."""
    figure = min(settings.figure_images, len(data))
    if spec.kind == "head":
        outcomes = [(None, predict_head(body_model, data))]
    elif spec.kind == "regression":
        outcomes = [(1, predict_regression(model, settings, data))]
    else:
        outcomes = []
        for steps in spec.steps:
            outcomes.append((steps, predict_diffusion(model, spec, settings, steps, geometry, data, seed)))
            if progress is not None:
                progress(1)
    finite = [bool(torch.isfinite(prediction.vertices).all()) for _, prediction in outcomes]
    if spec.kind != "diffusion" and not all(finite):
        raise ArtifactError(f"hmdiff run '{name}': the {spec.kind} predicted NaN or Inf meshes")
    scored = [(steps, prediction, score(prediction.vertices, data, joint_regressor) if ok else None)
              for (steps, prediction), ok in zip(outcomes, finite)]
    if any(finite):
        best = min((i for i in range(len(scored)) if finite[i]), key=lambda i: (float(scored[i][2]["mpjpe_mm"].mean()), i))
    else:
        best = 0  # every setting diverged: a row that says so (docs/hmdiff.md), not a stopped pipeline
    steps, prediction, errors = scored[best]
    summary = _row(name, spec, steps, errors, prediction)
    summary["sweep"] = [_row(name, spec, s, e, p) | {"best": i == best} for i, (s, p, e) in enumerate(scored)] \
        if spec.kind == "diffusion" else []
    if errors is None:
        options = spec.hmdiff_options(settings, steps)
        summary["diverged_options"] = {"dat_mode": options.dat_mode, "min_alpha_bar": options.min_alpha_bar,
                                       "gamma": options.gamma}
        errors = {m: np.full(len(data), np.nan) for m in METRICS}
    arrays = {"image_id": data.image_id.astype(str), **{m: errors[m].astype(np.float64) for m in METRICS},
              "vertices": prediction.vertices[:figure].numpy().astype(np.float32)}
    if prediction.samples is not None:
        arrays["samples"] = prediction.samples[:figure].numpy().astype(np.float32)
        arrays |= {f"history_{k}": np.asarray(v) for k, v in prediction.history.items()}
    speed = {"run": name, "images": len(data), "steps": steps,
             "seconds": round(prediction.seconds, 3), "fps": round(len(data) / max(prediction.seconds, 1e-9), 3),
             "sweep_seconds": {str(s): round(p.seconds, 3) for s, p, _ in scored}}
    return RunOutcome(summary, arrays, speed)
