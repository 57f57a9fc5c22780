"""Stage dno: run one task family (edit | control | refine | ablate) with one method.

Methods: ``input`` (the input motion unchanged: the noisy joints for refinement), ``guided`` (the
GMD-style baseline: DDIM sampling where the criterion's gradient w.r.t. ``x0_hat`` moves every
step's clean estimate, ``Guidance(mode="x0")``; editing samples from the input's own ``x_T`` with
its caption, as GMD gets the prompt and the target; refinement from the task's N(0, I) without
text), ``dno`` (Diffusion Noise Optimisation through DDIM-10 of the prior with an empty text).
``--variant`` applies ``dno.ablations.<variant>`` on top of the options (Table 3).

Input motions come from the prior (caption + seed: DDIM with classifier-free guidance from a
seeded ``x_T``) or from corpus clips. Writes ``<out-dir>/<family>/<run>.npz`` (output features and
joints per task, ragged), ``<run>.parquet`` (per-task metrics), ``<run>.json`` (timing and means)
and ``<run>_history.npz`` (dno: every loss term per step (steps, tasks), NaN-padded to the longest
run; empty for the other methods). ``<run>`` is the method, or ``<method>_<variant>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from humandiff.data import load_embeddings, load_mean_std, load_motion_split
from humandiff.diffusion import Guidance, ddim_sample
from humandiff.eval.dno_metrics import mpjpe_cm, task_metrics
from humandiff.io import ArtifactError, concat_ragged, save_json, save_npz, save_parquet
from humandiff.methods.criteria import guidance_loss, motion_criterion, pose_loss
from humandiff.methods.dno import DNOOptions, ddim_solver, fit_inversion, invert_closest, optimize_noise
from humandiff.methods.tasks import ResolvedTask, Task, collate_tasks, load_tasks, resolve_task, task_criterion
from humandiff.models.mdm import guided_denoiser, load_mdm
from humandiff.motion.hml3d import denormalize_features, joints_to_features, normalize_features, offsets_from_rest_joints, recover_from_ric
from humandiff.stage import positive, run_stage, stage_params
from humandiff.text.clauses import caption_conditions

SECTION = "dno"
COMMON_PARAMS = {"seed": int, "threads": int, "batch_size": int, "max_tasks": int, "source_ddim_steps": int,
                 "source_guidance": float}
#: What each method reads beyond the common keys, as its stage declares in dvc.yaml; DNO also reads
#: ``dno.edit`` and/or ``dno.refine`` (by the tasks' start kinds) and ``dno.ablations.<variant>``.
METHOD_PARAMS = {"input": {}, "guided": {"guided": dict}, "dno": {"checkpoint": bool}}
GUIDED = {"ddim_steps": int, "scale_edit": float, "scale_refine": float, "text_guidance": float}
METHODS = ("input", "guided", "dno")
FEATURE_DIM = 263


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
    return list(zip(task.source_kind, task.source_ref, task.source_seed, task.source_start, task.source_length))


def caption_embeddings(captions: list[str], embeddings_file: str, clause_slots: int) -> dict[str, np.ndarray]:
    """The prior's conditions of ``captions`` (:func:`humandiff.text.clauses.caption_conditions`):
    sentence embeddings from the corpus table (encoded with MiniLM when missing), then clauses."""
    conditions = caption_conditions(captions, load_embeddings(embeddings_file), clause_slots)
    return dict(zip(captions, conditions))


def build_sources(tasks: list[Task], model, schedule, mean, std, p: dict, hml_dir: Path, embeddings_file: str) -> dict:
    """Every distinct input motion of the tasks, keyed by (kind, ref, seed, start, length)."""
    keys = sorted({key for task in tasks for key in source_keys(task)})
    sources: dict[tuple, Source] = {}
    prior = [k for k in keys if k[0] == "prior"]
    if prior:
        embeddings = caption_embeddings(sorted({k[1] for k in prior}), embeddings_file, model.config.clause_slots)
        for length in sorted({k[4] for k in prior}):
            group = [k for k in prior if k[4] == length]
            noise = torch.stack([torch.randn(length, FEATURE_DIM, generator=torch.Generator().manual_seed(k[2])) for k in group])
            text = torch.from_numpy(np.stack([embeddings[k[1]] for k in group])).float()
            denoiser = guided_denoiser(model, text, p["source_guidance"])
            x0 = ddim_sample(denoiser, noise, schedule, num_steps=p["source_ddim_steps"], prediction="x0").numpy()
            for b, key in enumerate(group):
                raw = denormalize_features(x0[b], mean, std)
                sources[key] = Source(raw, x0[b], joints_of(raw), noise[b].numpy(), embeddings[key[1]])
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
    observed = mask[:, :, None, None].expand(targets.shape).to(targets.dtype)
    return motion_criterion(mean, std, {"reconstruction": (1.0, lambda joints: pose_loss(joints, targets, observed))})


def decode(x: torch.Tensor, lengths: list[int], mean, std) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Raw features and joints per task, cropped to their lengths, of normalised outputs (B, T, 263)."""
    raw = denormalize_features(x.detach().numpy(), mean, std)
    return [raw[b, :n] for b, n in enumerate(lengths)], [joints_of(raw[b, :n]) for b, n in enumerate(lengths)]


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--family", required=True, type=click.Choice(["edit", "control", "refine", "ablate"]))
@click.option("--method", required=True, type=click.Choice(METHODS))
@click.option("--variant", default="", show_default=True, help="a key of dno.ablations (DNO options override)")
@click.option("--tasks-dir", default="data/dno/tasks", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True, type=click.Path())
@click.option("--model-dir", default="data/mdm", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/dno", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, family: str, method: str, variant: str, tasks_dir: str, hml_dir: str, embeddings_file: str,
         model_dir: str, out_dir: str) -> None:
    p = stage_params(params_file, SECTION, {**COMMON_PARAMS, **METHOD_PARAMS[method]})
    positive(params_file, SECTION, p, "threads", "batch_size", "source_ddim_steps")
    if p["max_tasks"] < 0:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.max_tasks' must be >= 0 (0 = all)")
    if variant and method != "dno":
        raise ArtifactError(f"--variant {variant!r} applies to --method dno only, got --method {method}")
    guided: dict = {}
    options: dict[str, DNOOptions] = {}
    if method == "guided":
        guided = p["guided"]
        for key, kind in GUIDED.items():
            value = guided.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value < 0:
                raise ArtifactError(f"{params_file}: parameter '{SECTION}.guided.{key}' must be a {kind.__name__} >= 0, got {value!r}")
    torch.set_num_threads(p["threads"])
    torch.manual_seed(p["seed"])

    tasks = load_tasks(Path(tasks_dir) / f"{family}.parquet", family)
    if p["max_tasks"]:
        tasks = tasks[: p["max_tasks"]]
    if method == "dno":
        kinds = sorted({"edit" if t.init == "invert" else "refine" for t in tasks})
        read = stage_params(params_file, SECTION, {kind: dict for kind in kinds} | ({"ablations": dict} if variant else {}))
        if variant and variant not in read["ablations"]:
            raise ArtifactError(f"{params_file}: parameter '{SECTION}.ablations' has no variant {variant!r}")
        overrides = dict(read["ablations"][variant]) if variant else {}
        options = {kind: DNOOptions.for_task(kind).with_overrides({"checkpoint": p["checkpoint"], **read[kind]})
                   .with_overrides(overrides) for kind in kinds}
    model, config = load_mdm(Path(model_dir) / "model.pt", Path(model_dir) / "config.json")
    model.requires_grad_(False)
    schedule = config.noise_schedule()
    mean, std = load_mean_std(Path(hml_dir) / "mean_std.npz")
    uncond = guided_denoiser(model, None)
    started = time.perf_counter()
    sources = build_sources(tasks, model, schedule, mean, std, p, Path(hml_dir), embeddings_file)
    source_seconds = time.perf_counter() - started
    resolved = [resolve_task(t, [sources[k].joints for k in source_keys(t)]) for t in tasks]

    started = time.perf_counter()
    features: list[np.ndarray | None] = [None] * len(tasks)
    joints: list[np.ndarray | None] = [None] * len(tasks)
    extra = [dict() for _ in tasks]
    histories: dict[str, list[np.ndarray]] = {}
    step_seconds: list[float] = []
    for batch_index, chosen in enumerate(tqdm(batches(tasks, p["batch_size"]), desc=f"{family}/{method}")):
        group: list[ResolvedTask] = [resolved[i] for i in chosen]
        group_tasks = [tasks[i] for i in chosen]
        lengths = [t.length for t in group_tasks]
        if method == "input":
            for i, r in zip(chosen, group):
                single = len(r.task.source_kind) == 1 and r.task.noise_std == 0
                features[i] = sources[source_keys(r.task)[0]].features if single else features_of_joints(r.noisy)
                joints[i] = r.noisy
            continue
        batch = collate_tasks(group)
        T = int(batch.mask.shape[1])
        kwargs = {"mask": batch.mask}
        criterion = task_criterion(batch, mean, std)
        init = group_tasks[0].init
        firsts = [sources[source_keys(t)[0]] for t in group_tasks]
        if method == "guided":
            with_text = init == "invert" and all(s.noise is not None for s in firsts)
            x_T = padded([s.noise for s in firsts], T) if with_text else start_noise(group_tasks, T)
            text = torch.from_numpy(np.stack([s.text for s in firsts])).float() if with_text else None
            denoiser = guided_denoiser(model, text, guided["text_guidance"]) if with_text else uncond
            scale = guided["scale_edit"] if init == "invert" else guided["scale_refine"]
            x = ddim_sample(denoiser, x_T, schedule, num_steps=guided["ddim_steps"], prediction="x0", model_kwargs=kwargs,
                            guidance=Guidance(guidance_loss(criterion), scale, "x0"))
        else:
            opts = options["edit" if init == "invert" else "refine"]
            solver = ddim_solver(uncond, schedule, opts.ddim_steps, model_kwargs=kwargs, checkpoint=opts.checkpoint,
                                 spacing=opts.spacing)
            if init == "invert":
                reconstruction = reconstruction_criterion(group, T, batch.mask, mean, std)
                z0, inversion_steps, start = invert_closest(uncond, schedule, padded([s.normalised for s in firsts], T),
                                                            solver, reconstruction,
                                                            (opts.inversion_steps, *opts.inversion_choices),
                                                            model_kwargs=kwargs, spacing=opts.spacing)
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
                z0 = start_noise(group_tasks, T)
            result = optimize_noise(z0, solver, criterion, opts, lengths=batch.lengths, progress=True,
                                    generator=torch.Generator().manual_seed(p["seed"] * 7919 + batch_index))
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

    run = f"{method}_{variant}" if variant else method
    out = Path(out_dir) / family
    rows = []
    for task, r, j, more in zip(tasks, resolved, joints, extra):
        rows.append({"task_id": task.task_id, "setting": task.setting, "kind": task.kind, "method": method,
                     "variant": variant, "length": task.length, **task_metrics(r, j), **more})
    save_parquet(out / f"{run}.parquet", pd.DataFrame(rows))
    flat_features, feature_offsets = concat_ragged([f.astype(np.float32) for f in features])
    flat_joints, joint_offsets = concat_ragged([j.astype(np.float32) for j in joints])
    arrays = {"features": flat_features, "feature_offsets": feature_offsets, "joints": flat_joints,
              "joint_offsets": joint_offsets}
    if method == "input":
        clean_features = [sources[source_keys(r.task)[0]].features if len(r.task.source_kind) == 1
                          else features_of_joints(r.clean) for r in resolved]
        arrays["clean_features"], arrays["clean_feature_offsets"] = concat_ragged([f.astype(np.float32) for f in clean_features])
        arrays["clean_joints"], arrays["clean_joint_offsets"] = concat_ragged([r.clean.astype(np.float32) for r in resolved])
    save_npz(out / f"{run}.npz", arrays)
    # always written (empty for input / guided) so that every run has the same outputs
    longest = max((len(v) for values in histories.values() for v in values if v is not None), default=0)
    save_npz(out / f"{run}_history.npz", {
        name: np.stack([np.pad(v, (0, longest - len(v)), constant_values=np.nan) if v is not None
                        else np.full(longest, np.nan) for v in values], 1)
        for name, values in histories.items()})
    frame = pd.DataFrame(rows)
    means = {c: float(frame[c].mean()) for c in frame.columns if frame[c].dtype.kind == "f" and frame[c].notna().any()}
    save_json(out / f"{run}.json", {"family": family, "method": method, "variant": variant, "tasks": len(tasks),
                                    "seconds": round(seconds, 2), "source_seconds": round(source_seconds, 2),
                                    "batches": len(batches(tasks, p["batch_size"])),
                                    "mean_step_seconds": [round(v, 4) for v in step_seconds],
                                    # only the options this method read: each is a parameter of its own stage
                                    **({"options": {k: v.to_dict() for k, v in options.items()}} if method == "dno" else {}),
                                    **({"guided": guided} if method == "guided" else {}),
                                    "means": means})


if __name__ == "__main__":
    main()
