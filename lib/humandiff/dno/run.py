"""One DNO stage run: a task family solved by one method, from the task table to the run's outputs.

Methods (:data:`METHODS`):

- ``input``: the input motion unchanged (the noisy joints for refinement);
- ``guided``: the GMD-style baseline, DDIM sampling steered by the task criterion on every step's
  clean estimate ``x0_hat`` (:class:`GuidedBaseline`; ``mode`` ``xt`` shifts each step's result
  by the gradient w.r.t. ``x_t`` taken through the denoiser, GMD's dense gradient propagation;
  ``x0`` moves ``x0_hat`` alone by its own gradient; ``eps`` is ScoreHMR's score form). Editing
  samples from the input's own ``x_T`` with its caption, as GMD gets the prompt and the target;
  refinement from the task's N(0, I) without text;
- ``dno``: Diffusion Noise Optimisation (:func:`~humandiff.dno.optimize.optimize_noise`) through
  DDIM of the prior with an empty text, from the inverted input (editing) or N(0, I).

Input motions (:func:`build_sources`) come from the prior (caption + seed: DDIM with
classifier-free guidance from a seeded ``x_T``) or from corpus clips. :func:`run_method` returns
the run's outputs (:class:`MethodRun`): per-task metrics, output features and joints (ragged),
DNO's loss history and a JSON summary.

Device: the prior and every tensor of the chain live on the ``device`` given; seeded noise is
drawn on the CPU and moved, so a CPU run is bit-for-bit the same whatever the machine, and nothing
about the device is recorded in the outputs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from humandiff.diffusion import Guidance, NoiseSchedule, ddim_sample
from humandiff.dno.criteria import guidance_loss, motion_criterion, pose_loss
from humandiff.dno.metrics import mpjpe_cm, task_metrics
from humandiff.dno.optimize import DNOOptions, ddim_solver, fit_inversion, invert_closest, optimize_noise
from humandiff.dno.tasks import ResolvedTask, Task, collate_tasks, resolve_task, task_criterion
from humandiff.io import ArtifactError, concat_ragged
from humandiff.motion.dataset import load_embeddings, load_motion_split
from humandiff.motion.hml3d import (denormalize_features, joints_to_features, normalize_features, offsets_from_rest_joints,
                                    recover_from_ric)
from humandiff.prior.mdm import guided_denoiser
from humandiff.text.clauses import caption_conditions

METHODS = ("input", "guided", "dno")
GUIDED_MODES = ("xt", "x0", "eps")
FEATURE_DIM = 263


# ------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GuidedBaseline:
    """The guided baseline's settings (``dno.guided``): DDIM steps, gradient scale for edits and for
    refinement, classifier-free guidance of the caption, steering ``mode`` (:data:`GUIDED_MODES`).

    A run reads only the scales its tasks use (``None`` for the other), so that each stage depends on
    the keys it reads. Numbers keep the type they were given (the run's summary records them as read).
    """

    ddim_steps: int
    scale_edit: float | None
    scale_refine: float | None
    text_guidance: float
    mode: str

    @classmethod
    def from_params(cls, block: Mapping[str, Any], params_file: str | Path = "params.yaml",
                    name: str = "dno.guided", kinds: Sequence[str] = ("edit", "refine")) -> "GuidedBaseline":
        """Checked settings from the params block ``name`` of ``params_file`` (named in one-line
        errors); the scales of the option ``kinds`` (:func:`option_kinds`) only."""
        values = {}
        for field in fields(cls):
            if field.name.startswith("scale_") and field.name[len("scale_"):] not in kinds:
                values[field.name] = None
                continue
            value = block.get(field.name)
            where = f"{params_file}: parameter '{name}.{field.name}'"
            if field.name == "mode":
                if value not in GUIDED_MODES:
                    raise ArtifactError(f"{where} must be one of {', '.join(GUIDED_MODES)}, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int if field.type == "int" else (int, float)) or value < 0:
                kind = "an int" if field.type == "int" else "a number"
                raise ArtifactError(f"{where} must be {kind} >= 0, got {value!r}")
            values[field.name] = value
        return cls(**values)

    def scale(self, init: str) -> float:
        """The gradient scale for tasks started by ``init`` (``invert``: edits, else refinement)."""
        scale = self.scale_edit if init == "invert" else self.scale_refine
        if scale is None:
            raise ArtifactError(f"GuidedBaseline: no scale was read for tasks started by {init!r}")
        return scale

    def to_dict(self) -> dict[str, Any]:
        """The settings read (a scale that was not read is left out)."""
        return {field.name: getattr(self, field.name) for field in fields(self) if getattr(self, field.name) is not None}


def option_kinds(tasks: list[Task]) -> list[str]:
    """The DNO option blocks (``edit``, ``refine``) the tasks need, by their start kinds."""
    return sorted({"edit" if t.init == "invert" else "refine" for t in tasks})


def needs_prior_sources(tasks: list[Task]) -> bool:
    """Whether any task's input is generated by the prior (then the source params are read)."""
    return any(kind == "prior" for task in tasks for kind in task.source_kind)


def dno_options(blocks: Mapping[str, Mapping[str, Any]], checkpoint: bool,
                overrides: Mapping[str, Any] | None = None, *, params_file: str | Path | None = None,
                section: str = "dno", variant: str = "") -> dict[str, DNOOptions]:
    """Per option kind (``edit``/``refine``): the paper's options, then the params block
    ``blocks[kind]`` with ``checkpoint``, then ``overrides`` (an ablation variant).

    With ``params_file`` an error names it and the parameter as written there
    (``'dno.edit.lr'``, ``'dno.ablations.<variant>.steps'``)."""
    options = {}
    for kind, block in blocks.items():
        stages = ((f"{section}.{kind}", {"checkpoint": checkpoint, **block}),
                  (f"{section}.ablations.{variant}" if variant else f"{section} overrides", dict(overrides or {})))
        value = DNOOptions.for_task(kind)
        for where, values in stages:
            try:
                value = value.with_overrides(values)
            except (ArtifactError, TypeError) as exc:
                if params_file is None:
                    raise
                raise ArtifactError(_named_option_error(str(exc), params_file, where)) from None
        options[kind] = value
    return options


def _named_option_error(message: str, params_file: str | Path, where: str) -> str:
    """A DNOOptions error (``DNOOptions: parameter 'lr' ...``) as ``<params>: parameter '<where>.lr' ...``."""
    message = message.splitlines()[0] if message else "invalid options"
    if message.startswith("DNOOptions: "):
        message = message[len("DNOOptions: "):]
        message = re.sub(r"parameter '(\w+)'", lambda m: f"parameter '{where}.{m[1]}'", message, count=1)
        message = re.sub(r"unknown parameter\(s\) ", f"unknown parameter(s) in '{where}': ", message, count=1)
        return f"{params_file}: {message}"
    return f"{params_file}: '{where}': {message}"


@dataclass(frozen=True)
class RunSettings:
    """What one run does: ``method`` (:data:`METHODS`) on the tasks of ``family``; ``variant`` (an
    ablation name, DNO only) names the run ``<method>_<variant>``; ``seed`` seeds the perturbation
    noise; ``batch_size`` tasks per batch; ``source_ddim_steps``/``source_guidance`` generate prior
    inputs (None when no task has one); ``guided`` for the guided method; ``options`` per option
    kind for DNO (:func:`dno_options`)."""

    family: str
    method: str
    variant: str = ""
    seed: int = 0
    batch_size: int = 16
    source_ddim_steps: int | None = None
    source_guidance: float | None = None
    guided: GuidedBaseline | None = None
    options: Mapping[str, DNOOptions] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ArtifactError(f"RunSettings: parameter 'method' must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.variant and self.method != "dno":
            raise ArtifactError(f"--variant {self.variant!r} applies to --method dno only, got --method {self.method}")
        if self.method == "guided" and self.guided is None:
            raise ArtifactError("RunSettings: the guided method needs parameter 'guided'")
        if self.method == "dno" and self.options is None:
            raise ArtifactError("RunSettings: the dno method needs parameter 'options'")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ArtifactError(f"RunSettings: parameter 'batch_size' must be > 0, got {self.batch_size!r}")

    @property
    def run(self) -> str:
        """The run's file stem: the method, or ``<method>_<variant>``."""
        return f"{self.method}_{self.variant}" if self.variant else self.method


@dataclass(frozen=True)
class Prior:
    """The text-to-motion prior as a run uses it: the model (eval mode), its noise schedule and the
    feature statistics ``mean``/``std`` (263,) that normalise its inputs."""

    model: torch.nn.Module
    schedule: NoiseSchedule
    mean: np.ndarray
    std: np.ndarray


# -------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """An input motion: raw and normalised features (T, 263), joints (T, 22, 3); for prior sources
    also the x_T it was sampled from (T, 263) and its caption's condition (condition_dim,), else None."""

    features: np.ndarray
    normalised: np.ndarray
    joints: np.ndarray
    noise: np.ndarray | None
    text: np.ndarray | None


def joints_of(features: np.ndarray | torch.Tensor) -> np.ndarray:
    """Joints (..., T, 22, 3) float64 of raw features (..., T, 263)."""
    tensor = torch.as_tensor(features).double()
    with torch.no_grad():
        return recover_from_ric(tensor).numpy()


def features_of_joints(joints: np.ndarray) -> np.ndarray:
    """Raw features (T - 1, 263) of joints (T, 22, 3) on the clip's own bone lengths (the noisy input's FID)."""
    features, _ = joints_to_features(joints, offsets_from_rest_joints(joints[0]))
    return features


def source_keys(task: Task) -> list[tuple]:
    """(kind, ref, seed, start, length) of each of the task's sources."""
    return list(zip(task.source_kind, task.source_ref, task.source_seed, task.source_start, task.source_length))


def build_sources(tasks: list[Task], prior: Prior, settings: RunSettings, hml_dir: Path, embeddings_file: str | Path,
                  device: torch.device | str = "cpu") -> dict[tuple, Source]:
    """Every distinct input motion of the tasks, keyed by :func:`source_keys`.

    Prior sources need the caption embeddings (``embeddings_file``) and ``settings.source_*``;
    clip sources the corpus under ``hml_dir``. Each file is read only when a task needs it.
    """
    model, schedule, mean, std = prior.model, prior.schedule, prior.mean, prior.std
    keys = sorted({key for task in tasks for key in source_keys(task)})
    sources: dict[tuple, Source] = {}
    prior_keys = [k for k in keys if k[0] == "prior"]
    if prior_keys:
        if settings.source_ddim_steps is None or settings.source_guidance is None:
            raise ArtifactError("build_sources: prior sources need 'source_ddim_steps' and 'source_guidance'")
        captions = sorted({k[1] for k in prior_keys})
        # sentence embeddings from the corpus table (MiniLM for a user's new caption), then clauses
        embeddings = load_embeddings(embeddings_file)
        conditions = dict(zip(captions, caption_conditions(captions, embeddings, model.config.clause_slots,
                                                           word_tokens=model.config.word_tokens)))
        for length in sorted({k[4] for k in prior_keys}):
            group = [k for k in prior_keys if k[4] == length]
            noise = torch.stack([torch.randn(length, FEATURE_DIM, generator=torch.Generator().manual_seed(k[2])) for k in group])
            text = torch.from_numpy(np.stack([conditions[k[1]] for k in group])).float()
            denoiser = guided_denoiser(model, text.to(device), settings.source_guidance)
            x0 = ddim_sample(denoiser, noise.to(device), schedule, num_steps=settings.source_ddim_steps,
                             prediction=model.config.prediction).cpu().numpy()
            for b, key in enumerate(group):
                raw = denormalize_features(x0[b], mean, std)
                sources[key] = Source(raw, x0[b], joints_of(raw), noise[b].numpy(), conditions[key[1]])
    clips = [k for k in keys if k[0] == "clip"]
    if clips:
        corpus = load_motion_split(hml_dir / "index.parquet", hml_dir / "features.npz", None, ("train", "val", "test"))
        where = {str(c): i for i, c in enumerate(corpus.index["clip_id"])}
        for key in clips:
            _, clip_id, _, start, length = key
            if clip_id not in where:
                raise ArtifactError(f"{hml_dir / 'index.parquet'}: no clip {clip_id!r} (named by a task's source_ref)")
            clip = corpus.clip(where[clip_id])
            if start + length > len(clip):
                raise ArtifactError(f"clip {clip_id!r} has {len(clip)} frames; a task asks for {start}..{start + length}")
            raw = clip[start : start + length].astype(np.float32)
            sources[key] = Source(raw, normalize_features(raw, mean, std), joints_of(raw), None, None)
    return sources


# -------------------------------------------------------------------------------------------- batches


def batches(tasks: list[Task], batch_size: int) -> list[list[int]]:
    """Task indices grouped by start kind, sorted by length (less padding), chunked."""
    out = []
    for init in ("invert", "noise"):
        chosen = sorted((i for i, t in enumerate(tasks) if t.init == init), key=lambda i: tasks[i].length)
        out += [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)]
    return out


def padded(rows: list[np.ndarray], length: int) -> torch.Tensor:
    """(B, length, D) float32 with zeros after each row's frames."""
    out = torch.zeros(len(rows), length, rows[0].shape[-1])
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.as_tensor(row, dtype=torch.float32)
    return out


def start_noise(tasks: list[Task], length: int) -> torch.Tensor:
    """N(0, I) per task from its init_seed, (B, length, 263), zero on padded frames."""
    return padded([torch.randn(t.length, FEATURE_DIM, generator=torch.Generator().manual_seed(t.init_seed)).numpy()
                   for t in tasks], length)


def reconstruction_criterion(group: list[ResolvedTask], length: int, mask: torch.Tensor, mean, std):
    """Eq. 3 against each input's own joints on all its real frames: what :func:`fit_inversion` minimises."""
    targets = padded([r.clean.reshape(len(r.clean), -1) for r in group], length).reshape(len(group), length, -1, 3)
    targets = targets.to(mask.device)
    observed = mask[:, :, None, None].expand(targets.shape).to(targets.dtype)
    return motion_criterion(mean, std, {"reconstruction": (1.0, lambda joints: pose_loss(joints, targets, observed))})


def decode(x: torch.Tensor, lengths: list[int], mean, std) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw features and joints per task, cropped to their lengths, of normalised outputs (B, T, 263)."""
    raw = denormalize_features(x.detach().cpu().numpy(), mean, std)
    return [raw[b, :n] for b, n in enumerate(lengths)], [joints_of(raw[b, :n]) for b, n in enumerate(lengths)]


# ------------------------------------------------------------------------------------------------ run


@dataclass(frozen=True)
class MethodRun:
    """A run's outputs, as the dno stages write them (``<run>`` = :attr:`RunSettings.run`).

    ``table``: one row per task (``<run>.parquet``: ids, setting, kind, method, variant, length,
    the task's metrics and the method's extras); ``arrays``: output ``features`` (sum T, 263) and
    ``joints`` (sum T, 22, 3) float32, ragged with their ``*_offsets`` (K + 1,), plus the inputs'
    ``clean_*`` for the input method (``<run>.npz``); ``history``: every DNO loss term and ``lr`` per
    step, (steps, K) NaN-padded to the longest task (empty for the other methods;
    ``<run>_history.npz``); ``summary``: task count, options and means (``<run>.json``); ``timing``:
    the wall-clock figures, kept apart so that no stage ever depends on a file holding them
    (``reports/metrics/dno_time/<family>_<run>.json``).
    """

    table: pd.DataFrame
    arrays: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    summary: dict[str, Any]
    timing: dict[str, Any]


def run_method(tasks: list[Task], prior: Prior, settings: RunSettings, hml_dir: str | Path, embeddings_file: str | Path,
               device: torch.device | str = "cpu") -> MethodRun:
    """Solve ``tasks`` with ``settings.method`` on ``prior`` (see the module doc); the model is moved
    to ``device`` and made non-trainable."""
    hml_dir = Path(hml_dir)
    method = settings.method
    model, schedule, mean, std = prior.model, prior.schedule, prior.mean, prior.std
    model.requires_grad_(False)
    model.to(device)
    uncond = guided_denoiser(model, None)
    started = time.perf_counter()
    sources = build_sources(tasks, prior, settings, hml_dir, embeddings_file, device)
    source_seconds = time.perf_counter() - started
    resolved = [resolve_task(t, [sources[k].joints for k in source_keys(t)]) for t in tasks]

    started = time.perf_counter()
    features: list[np.ndarray | None] = [None] * len(tasks)
    joints: list[np.ndarray | None] = [None] * len(tasks)
    extra = [dict() for _ in tasks]
    histories: dict[str, list[np.ndarray]] = {}
    step_seconds: list[float] = []
    for batch_index, chosen in enumerate(tqdm(batches(tasks, settings.batch_size), desc=f"{settings.family}/{method}")):
        group: list[ResolvedTask] = [resolved[i] for i in chosen]
        group_tasks = [tasks[i] for i in chosen]
        lengths = [t.length for t in group_tasks]
        if method == "input":
            for i, r in zip(chosen, group):
                single = len(r.task.source_kind) == 1 and r.task.noise_std == 0
                features[i] = sources[source_keys(r.task)[0]].features if single else features_of_joints(r.noisy)
                joints[i] = r.noisy
            continue
        batch = collate_tasks(group).to(device)
        T = int(batch.mask.shape[1])
        kwargs = {"mask": batch.mask}
        criterion = task_criterion(batch, mean, std)
        init = group_tasks[0].init
        firsts = [sources[source_keys(t)[0]] for t in group_tasks]
        if method == "guided":
            guided = settings.guided
            with_text = init == "invert" and all(s.noise is not None for s in firsts)
            x_T = padded([s.noise for s in firsts], T) if with_text else start_noise(group_tasks, T)
            text = torch.from_numpy(np.stack([s.text for s in firsts])).float().to(device) if with_text else None
            denoiser = guided_denoiser(model, text, guided.text_guidance) if with_text else uncond
            x = ddim_sample(denoiser, x_T.to(device), schedule, num_steps=guided.ddim_steps, prediction=model.config.prediction,
                            model_kwargs=kwargs, guidance=Guidance(guidance_loss(criterion), guided.scale(init), guided.mode))
        else:
            opts = settings.options["edit" if init == "invert" else "refine"]
            solver = ddim_solver(uncond, schedule, opts.ddim_steps, model_kwargs=kwargs, checkpoint=opts.checkpoint,
                                 spacing=opts.spacing, prediction=model.config.prediction)
            if init == "invert":
                reconstruction = reconstruction_criterion(group, T, batch.mask, mean, std)
                z0, inversion_steps, start = invert_closest(uncond, schedule, padded([s.normalised for s in firsts], T).to(device),
                                                            solver, reconstruction,
                                                            (opts.inversion_steps, *opts.inversion_choices),
                                                            model_kwargs=kwargs, spacing=opts.spacing,
                                                            prediction=model.config.prediction)
                _, start_joints = decode(start, lengths, mean, std)
                for i, r, j, k in zip(chosen, group, start_joints, inversion_steps.tolist()):
                    extra[i].update(inversion_mpjpe_cm=mpjpe_cm(j, r.clean), inversion_steps=int(k))
                if opts.inversion_fit_steps:
                    fitted = fit_inversion(z0, solver, reconstruction, opts)
                    z0 = fitted.z
                    _, fitted_joints = decode(fitted.x, lengths, mean, std)
                    for i, r, j in zip(chosen, group, fitted_joints):
                        extra[i]["fitted_inversion_mpjpe_cm"] = mpjpe_cm(j, r.clean)
            else:
                z0 = start_noise(group_tasks, T).to(device)
            content_weight = torch.tensor([t.content_weight for t in group_tasks], dtype=torch.float32, device=device)
            result = optimize_noise(z0, solver, criterion, opts, lengths=batch.lengths, content_weight=content_weight,
                                    progress=True, generator=torch.Generator().manual_seed(settings.seed * 7919 + batch_index))
            x = result.x
            step_seconds.append(float(result.step_seconds.mean()))
            for b, i in enumerate(chosen):
                extra[i].update({f"final_{k}": float(v[b]) for k, v in result.final.items()})
                extra[i]["steps"] = opts.steps
            for name, values in {**result.history, "lr": np.repeat(result.lr[:, None], len(chosen), 1)}.items():
                histories.setdefault(name, [None] * len(tasks))
                for b, i in enumerate(chosen):
                    histories[name][i] = values[:, b]
        out_features, out_joints = decode(x, lengths, mean, std)
        for b, i in enumerate(chosen):
            features[i], joints[i] = out_features[b], out_joints[b]
    seconds = time.perf_counter() - started

    rows = []
    for task, r, j, more in zip(tasks, resolved, joints, extra):
        rows.append({"task_id": task.task_id, "setting": task.setting, "kind": task.kind, "method": method,
                     "variant": settings.variant, "length": task.length, **task_metrics(r, j), **more})
    flat_features, feature_offsets = concat_ragged([f.astype(np.float32) for f in features])
    flat_joints, joint_offsets = concat_ragged([j.astype(np.float32) for j in joints])
    arrays = {"features": flat_features, "feature_offsets": feature_offsets, "joints": flat_joints,
              "joint_offsets": joint_offsets}
    if method == "input":
        clean_features = [sources[source_keys(r.task)[0]].features if len(r.task.source_kind) == 1
                          else features_of_joints(r.clean) for r in resolved]
        arrays["clean_features"], arrays["clean_feature_offsets"] = concat_ragged([f.astype(np.float32) for f in clean_features])
        arrays["clean_joints"], arrays["clean_joint_offsets"] = concat_ragged([r.clean.astype(np.float32) for r in resolved])
    longest = max((len(v) for values in histories.values() for v in values if v is not None), default=0)
    history = {name: np.stack([np.pad(v, (0, longest - len(v)), constant_values=np.nan) if v is not None
                               else np.full(longest, np.nan) for v in values], 1)
               for name, values in histories.items()}
    frame = pd.DataFrame(rows)
    means = {c: float(frame[c].mean()) for c in frame.columns if frame[c].dtype.kind == "f" and frame[c].notna().any()}
    summary = {"family": settings.family, "method": method, "variant": settings.variant, "tasks": len(tasks),
               "batches": len(batches(tasks, settings.batch_size)),
               # only the options this method read: each is a parameter of its own stage
               **({"options": {k: v.to_dict() for k, v in settings.options.items()}} if method == "dno" else {}),
               **({"guided": settings.guided.to_dict()} if method == "guided" else {}),
               "means": means}
    timing = {"family": settings.family, "run": settings.run, "tasks": len(tasks), "seconds": round(seconds, 2),
              "source_seconds": round(source_seconds, 2), "mean_step_seconds": [round(v, 4) for v in step_seconds]}
    return MethodRun(frame, arrays, history, summary, timing)
