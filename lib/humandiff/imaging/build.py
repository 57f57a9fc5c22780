"""Writing the image sets to disk: the raw motions read and checked, the render settings from
params.yaml, every unit rendered into NPZ shards with an index, a contact sheet and the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from humandiff.imaging.draw import contact_sheet, draw_keypoints, label
from humandiff.imaging.sets import SPLIT_OF_SET, RenderSettings, RenderUnit, SetSizes, render_units
from humandiff.imaging.shards import SET_NAMES, ShardWriter, atomic_directory, load_image_set
from humandiff.io import ArtifactError, load_npz, load_parquet, save_parquet

#: The keys of a render section (params.yaml) that :func:`render_config` reads, with their types.
CONFIG_PARAMS = {
    "image_size": int, "focal_range": list, "elevation_range": list, "fill_range": list, "offcentre": float,
    "occluder_probability": float, "video_occluders": bool, "video_orbit_deg_per_s": float,
    "train_images": int, "val_images": int, "test_images": int,
    "multiview_instants": int, "multiview_views": int, "video_sequences": int, "video_frames": int,
}


def _pair(values: dict, key: str, where: str) -> tuple[float, float]:
    value = values[key]
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ArtifactError(f"{where}.{key}' must be a list of two numbers, got {value!r}")
    return float(value[0]), float(value[1])


def render_config(values: dict, fps: float, params_file: str | Path, section: str = "render",
                  ) -> tuple[RenderSettings, SetSizes]:
    """The render settings and set sizes of a render section's checked ``values`` (:data:`CONFIG_PARAMS`;
    the set sizes as ``<set>_images``), at the motions' ``fps``. A range that is not two numbers is
    one line naming ``params_file`` and ``section.key``."""
    where = f"{params_file}: parameter '{section}"
    settings = RenderSettings(
        image_size=values["image_size"], focal_range=_pair(values, "focal_range", where),
        elevation_range=_pair(values, "elevation_range", where), fill_range=_pair(values, "fill_range", where),
        offcentre=values["offcentre"], occluder_probability=values["occluder_probability"],
        video_occluders=values["video_occluders"], video_orbit_deg_per_s=values["video_orbit_deg_per_s"], fps=fps,
    )
    sizes = SetSizes(train=values["train_images"], val=values["val_images"], test=values["test_images"],
                     multiview_instants=values["multiview_instants"], multiview_views=values["multiview_views"],
                     video_sequences=values["video_sequences"], video_frames=values["video_frames"])
    return settings, sizes


def load_raw_motions(motions_file: str | Path, clips_file: str | Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], float]:
    """synth_motion's raw clips: clips.parquet's rows, motions.npz's SMPL arrays (global_orient,
    body_pose, transl, betas, offsets) checked against each other, and the clips' fps (20 if unsaid)."""
    clip_rows = load_parquet(clips_file, ["clip_id"])
    fps = float(clip_rows["fps"].iloc[0]) if "fps" in clip_rows and len(clip_rows) else 20.0
    arrays = load_npz(motions_file, {"global_orient": (-1, 3), "body_pose": (-1, 69), "transl": (-1, 3),
                                     "betas": (-1, -1), "offsets": (-1,)})
    if len(arrays["betas"]) != len(clip_rows):
        raise ArtifactError(f"{motions_file}: field 'betas' has {len(arrays['betas'])} rows for {len(clip_rows)} clips "
                            f"in {clips_file}")
    if int(arrays["offsets"][-1]) != len(arrays["global_orient"]):
        raise ArtifactError(f"{motions_file}: field 'offsets' ends at {int(arrays['offsets'][-1])}, not at the "
                            f"{len(arrays['global_orient'])} frames")
    return clip_rows, arrays, fps


def check_betas(motions_file: str | Path, arrays: dict[str, np.ndarray], body_model, body_path: str | Path) -> None:
    """motions.npz's ``betas`` (clips, B) must have as many shape coefficients as the body model takes."""
    width = arrays["betas"].shape[1]
    if width != body_model.num_betas:
        raise ArtifactError(f"{motions_file}: field 'betas' has {width} shape coefficients per clip, "
                            f"the body model {body_path} takes {body_model.num_betas}")


def sets_contact_sheet(root: str | Path, index: pd.DataFrame, columns: int) -> np.ndarray:
    """Rows of samples per set with their ground-truth 2D joints (rings: hidden joints), RGB:
    evenly spread images of each single-image set, the views of the first multi-view instant and
    evenly spread frames of the first video sequence, each row padded to ``columns``."""
    tiles = []
    for set_name in SET_NAMES:
        rows = index[index["set"] == set_name]
        if rows.empty:
            continue
        if set_name == "multiview":
            picks = rows.index[rows["sequence"] == rows["sequence"].iloc[0]][:columns]
        elif set_name == "video":
            first = rows[rows["sequence"] == rows["sequence"].iloc[0]]
            picks = first.index[np.linspace(0, len(first) - 1, min(columns, len(first))).round().astype(int)]
        else:
            picks = rows.index[np.linspace(0, len(rows) - 1, min(columns, len(rows))).round().astype(int)]
        _, arrays = load_image_set(root, set_name, ["image", "joints_2d", "visible"], index=index)
        positions = [rows.index.get_loc(p) for p in picks]
        for position in positions:
            tile = draw_keypoints(arrays["image"][position], arrays["joints_2d"][position], arrays["visible"][position])
            row = index.loc[rows.index[position]]
            tag = f"{set_name} {row.clip_id}:{row.frame}" + (f" v{row.view}" if set_name == "multiview" else "")
            tiles.append(label(tile, tag))
        tiles += [np.full_like(tiles[-1], 255)] * ((-len(positions)) % columns)
    return contact_sheet(tiles, columns)


@dataclass
class RenderedSets:
    """What :func:`write_image_sets` wrote: the index, joint counts (seen, in the image, visible),
    the rendering wall time (s) and the contact sheet (RGB)."""

    index: pd.DataFrame
    joint_counts: np.ndarray
    seconds: float
    sheet: np.ndarray


def write_image_sets(out_dir: str | Path, units: Sequence[RenderUnit], body_path: str, settings: RenderSettings,
                     workers: int, shard_size: int, sheet_columns: int, progress: bool = True) -> RenderedSets:
    """Render ``units`` into shards of ``shard_size`` images with index.parquet under ``out_dir``,
    which is replaced whole only once everything (the contact sheet included) has succeeded."""
    with atomic_directory(out_dir) as tmp:
        writer = ShardWriter(tmp, shard_size)
        bar = tqdm(total=sum(u.image_count for u in units), desc="render", unit="img", dynamic_ncols=True,
                   disable=not progress)
        started = time.perf_counter()
        joint_counts = np.zeros(3)  # joints seen, in the image, visible
        for unit, records in render_units(units, body_path, settings, workers, on_unit=lambda u: bar.update(u.image_count)):
            for record in records:
                writer.add(unit.set_name, unit.clip_id, unit.sequence, record)
                joint_counts += [record["in_image"].size, record["in_image"].sum(), record["visible"].sum()]
        seconds = time.perf_counter() - started
        bar.close()
        index = writer.close()
        save_parquet(tmp / "index.parquet", index)
        sheet = sets_contact_sheet(tmp, index, sheet_columns)
    return RenderedSets(index, joint_counts, seconds, sheet)


def check_sets_follow_splits(index: pd.DataFrame, table: pd.DataFrame) -> None:
    """ArtifactError unless every image's clip is of its set's split (``table``: :func:`clip_table`).

    :func:`plan_units` draws each set from its own split only; this guards the whole chain."""
    splits = dict(zip(table["clip_id"], table["split"]))
    leaks = sorted({s for s, c in zip(index["set"], index["clip_id"]) if splits[c] != SPLIT_OF_SET[s]})
    if leaks:
        raise ArtifactError(f"render: set(s) {leaks} hold clips of another split")


def render_metrics(rendered: RenderedSets, image_size: int, workers: int) -> dict:
    """reports/metrics/render.json: image counts per set, throughput, occlusion, joint visibility,
    backgrounds and colourings."""
    index, joint_counts, seconds = rendered.index, rendered.joint_counts, rendered.seconds
    counts = index["set"].value_counts()
    return {
        "image_size": image_size,
        "images": int(len(index)),
        "images_per_set": {name: int(counts.get(name, 0)) for name in SET_NAMES},
        "render_seconds": round(seconds, 2),
        "render_images_per_s": round(len(index) / seconds, 2),
        "workers": workers,
        "occluded_fraction": round(float(index["occluded"].mean()), 4),
        "joints_in_image_fraction": round(float(joint_counts[1] / joint_counts[0]), 4),
        "joints_visible_fraction": round(float(joint_counts[2] / joint_counts[0]), 4),
        "backgrounds": {k: int(v) for k, v in index["background"].value_counts().sort_index().items()},
        "colourings": {k: int(v) for k, v in index["colouring"].value_counts().sort_index().items()},
    }
