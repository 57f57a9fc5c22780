"""Training the perception network (the ``train_perception`` stage's logic).

The generic loop (:func:`humandiff.train.loop.train`) gets :func:`perception_loss_fn`: colour
jitter on the images, noised ground-truth keypoint evidence for a share of the regressor's inputs
(:class:`Augmentation`), then :func:`humandiff.perception.model.perception_loss` with
:class:`~humandiff.perception.model.LossWeights`. Also the run's resume fingerprint, the EMA model's
val accuracy and the stage's metrics.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from humandiff.io.artifacts import ArtifactError
from humandiff.io.digests import file_digest
from humandiff.perception.dataset import PerceptionDataset, colour_jitter
from humandiff.perception.model import (
    LossWeights,
    PerceptionConfig,
    count_parameters,
    evaluate_predictions,
    perception_loss,
    predict,
    teacher_evidence,
)
from humandiff.train.loop import LoopConfig, LoopResult, LossFn

#: params.yaml key -> LossWeights field, besides ``sigma`` and ``occluded_weight`` (same names).
WEIGHT_KEYS = {"w_heatmap": "heatmap", "w_keypoint": "keypoint", "w_depth": "depth", "w_joints3d": "joints3d",
               "w_joints2d": "joints2d", "w_rotations": "rotations", "w_betas": "betas"}
#: PerceptionConfig fields that the training images fix (see :func:`sized_config`), not params.yaml.
IMAGE_FIELDS = ("image_size", "num_joints", "num_betas")
#: The train_perception section holds the fields of LoopConfig, PerceptionConfig and Augmentation, and these.
EXTRA_PARAMS = {"threads": int, "device": str, "eval_batch_size": int, "sigma": float, "occluded_weight": float,
                **{key: float for key in WEIGHT_KEYS}}
#: Fields the section may leave at their defaults (IMAGE_FIELDS: it must, see :func:`refuse_image_fields`).
DEFAULT_PARAMS = ("min_lr_ratio", "ema_warmup", "log_every", "bf16", "length_buckets", "init_scale", *IMAGE_FIELDS)
#: The columns of the loss curve (a DVC plot): the step, the total and each term of the objective.
CURVE_COLUMNS = ("step", "loss", "heatmap", "keypoint", "depth", "joints3d", "joints2d", "rotations", "betas")


@dataclass(frozen=True)
class Augmentation:
    """What the loss does to a batch before the network sees it.

    ``colour_jitter``: relative size of the random brightness, contrast and channel gains
    (:func:`humandiff.perception.dataset.colour_jitter`), in [0, 1). ``teacher_fraction``: the
    share of images whose regressor reads noised ground-truth keypoints instead of the pose head's
    (:func:`humandiff.perception.model.teacher_evidence`), with noise of ``teacher_pixel_noise``
    pixels and ``teacher_depth_noise`` metres.
    """

    colour_jitter: float = 0.2
    teacher_fraction: float = 0.5
    teacher_pixel_noise: float = 2.0
    teacher_depth_noise: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.colour_jitter < 1:
            raise ArtifactError(f"Augmentation: 'colour_jitter' must lie in [0, 1), got {self.colour_jitter}")
        if not 0 <= self.teacher_fraction <= 1:
            raise ArtifactError(f"Augmentation: 'teacher_fraction' must lie in [0, 1], got {self.teacher_fraction}")
        for name in ("teacher_pixel_noise", "teacher_depth_noise"):
            if not getattr(self, name) >= 0:
                raise ArtifactError(f"Augmentation: '{name}' must be >= 0, got {getattr(self, name)}")


def loss_weights(params_file: str | Path, section: str, values: dict[str, Any]) -> LossWeights:
    """The LossWeights of a params section (``w_<term>`` keys, ``sigma``, ``occluded_weight``); an
    invalid weight is a one-line error naming ``params_file`` and ``section.key``."""
    fields = {field: values[key] for key, field in WEIGHT_KEYS.items()}
    try:
        return LossWeights(**fields, sigma=values["sigma"], occluded_weight=values["occluded_weight"])
    except ArtifactError as exc:
        message = str(exc).removeprefix("LossWeights: ")
        for key, field in WEIGHT_KEYS.items():
            message = message.replace(f"'{field}'", f"'{key}'")
        message = re.sub(r"'(\w+)'", lambda m: f"'{section}.{m[1]}'", message, count=1)
        raise ArtifactError(f"{params_file}: parameter {message}") from None


def refuse_image_fields(params_file: str | Path, section: str, values: dict[str, Any]) -> None:
    """A one-line error if the params section sets a PerceptionConfig field that the images fix."""
    given = [name for name in IMAGE_FIELDS if name in values]
    if given:
        raise ArtifactError(f"{params_file}: parameter(s) {', '.join(f'{section}.{k}' for k in given)} come from the "
                            "training images, not from the params")


def sized_config(config: PerceptionConfig, dataset: PerceptionDataset) -> PerceptionConfig:
    """``config`` (the architecture params) with the image size and number of betas of ``dataset``."""
    return dataclasses.replace(config, image_size=dataset.image_size, num_betas=int(dataset.targets["betas"].shape[1]))


def perception_loss_fn(body_model, image_size: int, weights: LossWeights, augmentation: Augmentation) -> LossFn:
    """The loop's ``loss_fn(net, batch, generator)``: augment the batch with ``generator``'s draws
    (colour jitter, teacher evidence, which images use it), run the network, score it. The draws
    come from the CPU generator and move to the batch's device, so every device draws alike."""

    def loss_fn(net: nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator):
        images = colour_jitter(batch["images"], generator, augmentation.colour_jitter)
        teacher = teacher_evidence(batch["joints_2d"], batch["joints_cam"], image_size, generator,
                                   augmentation.teacher_pixel_noise, augmentation.teacher_depth_noise)
        use_teacher = torch.rand(len(images), generator=generator).to(images.device) < augmentation.teacher_fraction
        return perception_loss(net(images, teacher, use_teacher), batch, body_model, weights, image_size)

    return loss_fn


def run_fingerprint(index_file: str | Path, config: PerceptionConfig, weights: LossWeights, body_path: str | Path,
                    augmentation: Augmentation) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint's (besides the loop config and the code):
    the image index's digest, the architecture, the loss weights, the body model and the augmentation."""
    return {"index": file_digest(index_file), "config": config.to_dict(), "weights": weights.__dict__,
            "body": str(body_path), **dataclasses.asdict(augmentation)}


def validation_metrics(model: nn.Module, val: dict[str, np.ndarray], body_model, batch_size: int, sigma: float
                       ) -> dict[str, float]:
    """``val_<metric>`` of :func:`~humandiff.perception.model.evaluate_predictions` (4 decimals) for
    ``model`` on the val images (shard fields of TRAINING_FIELDS), their count and throughput."""
    started = time.perf_counter()
    predictions = predict(model, val["image"], val["intrinsics"], body_model, batch_size, sigma)
    seconds = time.perf_counter() - started
    metrics: dict[str, float] = {f"val_{k}": round(v, 4) for k, v in evaluate_predictions(predictions, val).items()}
    metrics["val_images"] = len(val["image"])
    metrics["val_images_per_s"] = round(len(val["image"]) / seconds, 2)
    return metrics


def training_metrics(result: LoopResult, model: nn.Module, loop: LoopConfig, train_images: int, threads: int,
                     cpu_seconds: float) -> dict[str, Any]:
    """The stage's metrics of a finished run: size, data, steps and timing. ``cpu_seconds``: this
    process's CPU time (all threads) over the steps it ran."""
    steps_run = max(result.steps_run, 1)
    return {
        "parameters": count_parameters(model),
        "train_images": train_images,
        "steps": result.step,
        "batch_size": loop.batch_size,
        "epochs": round(result.step * loop.batch_size / train_images, 2),
        "threads": threads,
        "train_seconds": round(result.total_seconds, 1),
        "seconds_per_step": round(result.wall_seconds / steps_run, 4),
        # CPU seconds of this process per step (all threads): on a machine shared with other jobs the
        # wall time above overstates what the step costs; this does not
        "cpu_seconds_per_step": round(cpu_seconds / steps_run, 4),
        "resumed_from": result.resumed_from,
        "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
    }
