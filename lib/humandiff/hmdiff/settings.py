"""The ``hmdiff`` section of params.yaml, read and checked once for every HMDiff stage.

Layout (one section; each stage depends on the keys it reads, so tuning one run reruns only it)::

    hmdiff:
      seed, threads, hierarchy (coarse levels: ratios or counts), fit_poses
      architecture: {heads, ff_dim, ...}          # VertexDenoiserConfig fields (not the sized ones)
      train: {steps, batch_size, lr, ...}         # LoopConfig fields, plus images (0: the whole train set)
      weights: {diffusion, vertex, joint, normal, edge, alpha_bar, upsample}
      models: {<name>: {context, mode, stack}}    # one train_hmdiff stage each
      eval: {images, batch_images, num_samples, threshold, gamma, figure_images, min_alpha_bar, dat_mode}
      runs: {<name>: {kind, model, ablation, steps, options}}   # one eval_hmdiff stage each
      report: {sheet_images, spread_images}

Every error is one line naming ``params_file`` and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from humandiff.hmdiff.dat import ABLATIONS, HMDiffOptions
from humandiff.hmdiff.losses import LossWeights
from humandiff.hmdiff.training import ModelSpec
from humandiff.io.artifacts import ArtifactError, load_params
from humandiff.train.loop import LoopConfig

SECTION = "hmdiff"
KINDS = ("diffusion", "regression", "head")


@dataclass(frozen=True)
class EvalSettings:
    """``images``: the first this many test images (0: all); ``batch_images`` images (x N chains) sampled
    at once; ``num_samples`` N, ``threshold`` r, ``gamma``: DAT's (paper: 25, 0.05, 0.2);
    ``min_alpha_bar``, ``dat_mode``: DAT's noise floor and step space (:class:`HMDiffOptions`; the
    paper's Algorithm 1 is 0.0 and "xt", the defaults 1e-2 and "x0": docs/hmdiff.md);
    ``figure_images``: test images whose meshes and samples are kept for the report's pictures."""

    images: int = 0
    batch_images: int = 8
    num_samples: int = 25
    threshold: float = 0.05
    gamma: float = 0.2
    figure_images: int = 4
    min_alpha_bar: float = 1e-2
    dat_mode: str = "x0"

    def __post_init__(self) -> None:
        for name in ("images", "batch_images", "figure_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "images" else 1):
                raise ArtifactError(f"parameter 'hmdiff.eval.{name}' must be an integer >= {0 if name == 'images' else 1}, "
                                    f"got {value!r}")
        try:
            self.options()
        except ArtifactError as exc:
            message = str(exc).replace("HMDiffOptions: parameter 'num_samples'", "parameter 'hmdiff.eval.num_samples'")
            message = message.replace("HMDiffOptions: parameter '", "parameter 'hmdiff.eval.")
            raise ArtifactError(message) from None

    def options(self, **overrides: Any) -> HMDiffOptions:
        return HMDiffOptions(num_samples=self.num_samples, threshold=self.threshold, gamma=self.gamma,
                             min_alpha_bar=self.min_alpha_bar, dat_mode=self.dat_mode).with_overrides(overrides)


@dataclass(frozen=True)
class RunSpec:
    """One evaluated row: ``kind`` diffusion (a DAT / no-DAT / ablation run of ``model`` at each of
    ``steps``, the best kept), regression (Baseline A / B: ``model``'s one pass) or head (the perception
    network's HMR-style SMPL regression); ``ablation`` one of :data:`ABLATIONS`; ``options``
    :class:`HMDiffOptions` overrides."""

    kind: str = "diffusion"
    model: str | None = "image"
    ablation: str = "full"
    steps: tuple[int, ...] = (40,)
    options: Mapping[str, Any] = field(default_factory=dict)

    def hmdiff_options(self, settings: EvalSettings, steps: int) -> HMDiffOptions:
        shared = {"num_samples": settings.num_samples, "threshold": settings.threshold, "gamma": settings.gamma,
                  "min_alpha_bar": settings.min_alpha_bar, "dat_mode": settings.dat_mode, "ddim_steps": steps}
        return HMDiffOptions.for_ablation(self.ablation, **{**shared, **dict(self.options)})  # the run's options win


@dataclass(frozen=True)
class HMDiffParams:
    seed: int
    threads: int
    hierarchy: tuple[float | int, ...]
    fit_poses: int
    architecture: dict[str, Any]
    loop: LoopConfig
    train_images: int
    weights: LossWeights
    upsample_weight: float
    models: dict[str, ModelSpec]
    eval: EvalSettings
    runs: dict[str, RunSpec]
    report: dict[str, int]


def _mapping(params_file: str | Path, key: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ArtifactError(f"{params_file}: parameter 'hmdiff.{key}' must be a mapping, got {value!r}")
    return dict(value)


def _build(params_file: str | Path, key: str, cls, values: Mapping[str, Any]):
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ArtifactError(f"{params_file}: unknown parameter(s) {', '.join(f'hmdiff.{key}.{u}' for u in unknown)}")
    try:
        return cls(**values)
    except ArtifactError as exc:
        message = str(exc)
        for prefix in (f"{cls.__name__}: parameter '", f"{cls.__name__}: field '"):
            message = message.replace(prefix, f"parameter 'hmdiff.{key}.")
        raise ArtifactError(f"{params_file}: {message}") from None
    except TypeError as exc:
        raise ArtifactError(f"{params_file}: parameter 'hmdiff.{key}': {exc}") from None


def _run(params_file: str | Path, name: str, values: Mapping[str, Any], models: Mapping[str, ModelSpec],
         settings: EvalSettings) -> RunSpec:
    values = dict(values)
    if "steps" in values:
        steps = values["steps"]
        if not isinstance(steps, list) or not steps or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.runs.{name}.steps' must be a list of integers >= 1, "
                                f"got {steps!r}")
        values["steps"] = tuple(steps)
    spec = _build(params_file, f"runs.{name}", RunSpec, values)
    if spec.kind not in KINDS:
        raise ArtifactError(f"{params_file}: parameter 'hmdiff.runs.{name}.kind' must be one of {', '.join(KINDS)}, "
                            f"got {spec.kind!r}")
    if spec.kind != "head":
        if spec.model not in models:
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.runs.{name}.model' must name one of hmdiff.models "
                                f"({', '.join(models)}), got {spec.model!r}")
        wanted = "regression" if spec.kind == "regression" else "diffusion"
        if models[spec.model].mode != wanted:
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.runs.{name}.model': model '{spec.model}' is not a "
                                f"{wanted} model")
    if spec.kind == "diffusion":
        if spec.ablation not in ABLATIONS:
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.runs.{name}.ablation' must be one of "
                                f"{', '.join(ABLATIONS)}, got {spec.ablation!r}")
        try:
            spec.hmdiff_options(settings, spec.steps[0])
        except ArtifactError as exc:
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.runs.{name}.options': "
                                f"{str(exc).replace('HMDiffOptions: ', '')}") from None
    return spec


def read_params(params_file: str | Path) -> HMDiffParams:
    """The checked ``hmdiff`` section (see the module doc)."""
    p = load_params(params_file, SECTION)
    p = _mapping(params_file, "", p) if not isinstance(p, dict) else p
    required = ("seed", "threads", "hierarchy", "fit_poses", "architecture", "train", "weights", "models", "eval", "runs",
                "report")
    missing = [key for key in required if key not in p]
    if missing:
        raise ArtifactError(f"{params_file}: missing parameter(s) {', '.join(f'hmdiff.{k}' for k in missing)}")
    unknown = sorted(set(p) - set(required))
    if unknown:
        raise ArtifactError(f"{params_file}: unknown parameter(s) {', '.join(f'hmdiff.{k}' for k in unknown)}")
    for key in ("seed", "threads", "fit_poses"):
        if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < (0 if key == "seed" else 1):
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.{key}' must be an integer >= {0 if key == 'seed' else 1}, "
                                f"got {p[key]!r}")
    hierarchy = p["hierarchy"]
    if not isinstance(hierarchy, list) or not hierarchy or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                               for v in hierarchy):
        raise ArtifactError(f"{params_file}: parameter 'hmdiff.hierarchy' must be a list of ratios or vertex counts, "
                            f"got {hierarchy!r}")
    architecture = _mapping(params_file, "architecture", p["architecture"])
    sized = {"num_vertices", "image_dim", "image_tokens", "pose_joints", "pose_dim", "context", "mode", "stack"}
    if sized & set(architecture):
        raise ArtifactError(f"{params_file}: parameter(s) {', '.join(sorted(sized & set(architecture)))} of "
                            "'hmdiff.architecture' come from the data or hmdiff.models")
    train = _mapping(params_file, "train", p["train"])
    train_images = train.pop("images", 0)
    if not isinstance(train_images, int) or isinstance(train_images, bool) or train_images < 0:
        raise ArtifactError(f"{params_file}: parameter 'hmdiff.train.images' must be an integer >= 0, got {train_images!r}")
    loop = _build(params_file, "train", LoopConfig, {**train, "seed": p["seed"]})
    weights = _mapping(params_file, "weights", p["weights"])
    upsample = weights.pop("upsample", 1.0)
    if isinstance(upsample, bool) or not isinstance(upsample, (int, float)) or not upsample >= 0:
        raise ArtifactError(f"{params_file}: parameter 'hmdiff.weights.upsample' must be a number >= 0, got {upsample!r}")
    models = {name: _build(params_file, f"models.{name}", ModelSpec, _mapping(params_file, f"models.{name}", spec))
              for name, spec in _mapping(params_file, "models", p["models"]).items()}
    for name, spec in models.items():
        if spec.context not in ("image", "pose", "both") or spec.mode not in ("diffusion", "regression") \
                or not isinstance(spec.stack, int) or spec.stack < 1 or (spec.mode == "diffusion" and spec.stack != 1):
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.models.{name}' must have context image|pose|both, "
                                f"mode diffusion|regression and stack >= 1 (1 in diffusion mode), got {dict(spec.__dict__)}")
    settings = _build(params_file, "eval", EvalSettings, _mapping(params_file, "eval", p["eval"]))
    runs = {name: _run(params_file, name, _mapping(params_file, f"runs.{name}", spec), models, settings)
            for name, spec in _mapping(params_file, "runs", p["runs"]).items()}
    report = _mapping(params_file, "report", p["report"])
    for key in ("sheet_images", "spread_images"):
        if not isinstance(report.get(key), int) or isinstance(report.get(key), bool) or report[key] < 1:
            raise ArtifactError(f"{params_file}: parameter 'hmdiff.report.{key}' must be an integer >= 1, got {report.get(key)!r}")
    return HMDiffParams(p["seed"], p["threads"], tuple(hierarchy), p["fit_poses"], architecture, loop, train_images,
                        _build(params_file, "weights", LossWeights, weights), float(upsample), models, settings, runs, report)


def pick(params_file: str | Path, table: Mapping[str, Any], name: str, what: str) -> Any:
    """``table[name]`` or a one-line error naming ``hmdiff.<what>``."""
    if name not in table:
        raise ArtifactError(f"{params_file}: no entry '{name}' in parameter 'hmdiff.{what}' (has: {', '.join(table)})")
    return table[name]
