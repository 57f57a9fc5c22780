"""Running the perception network over image sets (the ``extract`` stage's logic).

:class:`ExtractSettings` are the stage's params; :func:`check_image_sets` reads every shard of the
sets before the network runs, so a damaged shard of the last set fails the stage at once rather
than after the other sets; :func:`extract_set` runs the network on one set in chunks and packs its
outputs in the stored layout (:mod:`humandiff.perception.extraction`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from humandiff.imaging.shards import SET_NAMES, load_image_set
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.extraction import pack_predictions
from humandiff.perception.model import HEATMAP_STRIDE, PerceptionNet, predict

#: The shard fields extraction reads: the network's inputs and the ground truth it is scored on.
TRUTH_FIELDS = ("image", "intrinsics", "joints_2d", "in_image", "visible", "joints_cam", "bbox")
#: The float predictions the metrics and the figure need besides the packed arrays.
KEPT_FIELDS = ("keypoints", "confidence", "depth", "joints_cam")


@dataclass(frozen=True)
class ExtractSettings:
    """``sets``: the image sets to run, distinct, ``test`` among them (the report's set);
    ``batch_size``: images per forward pass; ``refine_window``: odd side of the window around a
    heatmap peak that refines it; ``chunk_images``: images predicted (and held as floats) at once;
    ``sheet_images``: test images in the report's figure."""

    sets: tuple[str, ...]
    batch_size: int = 128
    refine_window: int = 5
    chunk_images: int = 1000
    sheet_images: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "sets", tuple(self.sets))
        if any(s not in SET_NAMES for s in self.sets) or "test" not in self.sets or len(set(self.sets)) != len(self.sets):
            raise ArtifactError(f"ExtractSettings: 'sets' must list distinct sets of {SET_NAMES} including 'test', "
                                f"got {list(self.sets)}")
        for name in ("batch_size", "refine_window", "chunk_images", "sheet_images"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"ExtractSettings: '{name}' must be > 0, got {getattr(self, name)!r}")
        if self.refine_window % 2 == 0:
            raise ArtifactError(f"ExtractSettings: 'refine_window' must be odd, got {self.refine_window}")


def check_image_sets(root: str | Path, index: pd.DataFrame, sets: Sequence[str], listed_in: str = "the params") -> None:
    """Raise a one-line error unless each of ``sets`` has images in ``index`` and every shard that
    holds them reads and checks (fields, shapes, dtypes, finite values, rows the index points at).
    ``listed_in`` names where the sets were asked for, for the error."""
    absent = [s for s in sets if not (index["set"] == s).any()]
    if absent:
        raise ArtifactError(f"{Path(root) / 'index.parquet'}: no image of set(s) {absent} listed in {listed_in}")
    for set_name in sets:
        load_image_set(root, set_name, ("in_image",), index=index)  # reads and checks every shard of the set


@dataclass
class SetExtraction:
    """One set's extraction: ``packed`` (the stored layout), ``predictions`` (KEPT_FIELDS as float
    arrays) and ``seconds`` spent in the network and decoding."""

    packed: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    seconds: float


def extract_set(model: PerceptionNet, body_model, rows: pd.DataFrame, truth: dict[str, np.ndarray],
                settings: ExtractSettings, sigma: float, progress: Callable[[int], object] | None = None) -> SetExtraction:
    """Run ``model`` on a set's images (``truth``: its TRUTH_FIELDS arrays, ``rows``: its index rows)
    ``settings.chunk_images`` at a time; ``progress`` is called with each batch's image count."""
    packed_parts: list[dict[str, np.ndarray]] = []
    kept: dict[str, list[np.ndarray]] = {name: [] for name in KEPT_FIELDS}
    seconds = 0.0
    for start in range(0, len(rows), settings.chunk_images):
        stop = min(start + settings.chunk_images, len(rows))
        began = time.perf_counter()
        predictions = predict(model, truth["image"][start:stop], truth["intrinsics"][start:stop], body_model,
                              settings.batch_size, sigma, settings.refine_window, progress=progress)
        seconds += time.perf_counter() - began
        packed_parts.append(pack_predictions(predictions, rows["image_id"].to_numpy()[start:stop],
                                             truth["intrinsics"][start:stop], HEATMAP_STRIDE, model.config.image_size))
        for name in kept:
            kept[name].append(predictions[name])
    packed = {name: (np.concatenate([part[name] for part in packed_parts]) if packed_parts[0][name].ndim else packed_parts[0][name])
              for name in packed_parts[0]}
    return SetExtraction(packed, {name: np.concatenate(parts) for name, parts in kept.items()}, seconds)
