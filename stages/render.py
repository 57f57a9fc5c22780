"""Stage render: the image sets (train, val, test, multiview, video) from the motion dataset.

Poses the body model with the raw clips' SMPL parameters, renders each image with a random
perspective camera, clothing or body-part colouring, lighting, a procedural background and
optional occluders, and writes NPZ shards plus a Parquet index with the full ground truth (see
humandiff.imaging.shards). The set of a clip follows its split in the prepared motion index, so
no test clip reaches training. Also writes a contact sheet with the ground-truth 2D joints and
metrics (counts, throughput).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from humandiff.body.model import load_body_model
from humandiff.imaging import (
    RenderSettings,
    SetSizes,
    ShardWriter,
    atomic_directory,
    clip_table,
    load_image_set,
    plan_units,
    render_units,
)
from humandiff.imaging.draw import contact_sheet, draw_keypoints, label
from humandiff.io import ArtifactError, load_npz, load_parquet, save_json, save_parquet
from humandiff.motion.video import write_image
from humandiff.io.stage import positive, run_stage, stage_params

SECTION = "render"
PARAMS = {
    "seed": int, "workers": int, "image_size": int, "shard_size": int,
    "train_images": int, "val_images": int, "test_images": int,
    "multiview_instants": int, "multiview_views": int, "video_sequences": int, "video_frames": int,
    "focal_range": list, "elevation_range": list, "fill_range": list, "offcentre": float,
    "occluder_probability": float, "video_occluders": bool, "video_orbit_deg_per_s": float,
    "sheet_columns": int,
}


def _pair(params_file: str, values: dict, key: str) -> tuple[float, float]:
    value = values[key]
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.{key}' must be a list of two numbers, got {value!r}")
    return float(value[0]), float(value[1])


def _sheet(root: Path, index, columns: int) -> np.ndarray:
    """Rows of samples per set with their ground-truth 2D joints (rings: hidden joints)."""
    tiles = []
    for set_name in ("train", "val", "test", "multiview", "video"):
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


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--motions", default="data/motion/raw/motions.npz", show_default=True, type=click.Path())
@click.option("--clips", default="data/motion/raw/clips.parquet", show_default=True, type=click.Path())
@click.option("--split-index", default="data/motion/hml/index.parquet", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/images", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/render", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/render.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, motions: str, clips: str, split_index: str, out_dir: str, report_dir: str,
         metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "workers", "image_size", "shard_size", "sheet_columns")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    clip_rows = load_parquet(clips, ["clip_id"])
    fps = float(clip_rows["fps"].iloc[0]) if "fps" in clip_rows and len(clip_rows) else 20.0
    settings = RenderSettings(
        image_size=p["image_size"], focal_range=_pair(params_file, p, "focal_range"),
        elevation_range=_pair(params_file, p, "elevation_range"), fill_range=_pair(params_file, p, "fill_range"),
        offcentre=p["offcentre"], occluder_probability=p["occluder_probability"], video_occluders=p["video_occluders"],
        video_orbit_deg_per_s=p["video_orbit_deg_per_s"], fps=fps,
    )
    sizes = SetSizes(train=p["train_images"], val=p["val_images"], test=p["test_images"],
                     multiview_instants=p["multiview_instants"], multiview_views=p["multiview_views"],
                     video_sequences=p["video_sequences"], video_frames=p["video_frames"])
    load_body_model(body_path)  # fail early, with one line, on a missing or bad model
    arrays = load_npz(motions, {"global_orient": (-1, 3), "body_pose": (-1, 69), "transl": (-1, 3),
                                "betas": (-1, -1), "offsets": (-1,)})
    if len(arrays["betas"]) != len(clip_rows):
        raise ArtifactError(f"{motions}: field 'betas' has {len(arrays['betas'])} rows for {len(clip_rows)} clips in {clips}")
    if int(arrays["offsets"][-1]) != len(arrays["global_orient"]):
        raise ArtifactError(f"{motions}: field 'offsets' ends at {int(arrays['offsets'][-1])}, not at the {len(arrays['global_orient'])} frames")
    table = clip_table(clip_rows, load_parquet(split_index, ["source_id", "split", "mirror"]), arrays["offsets"])
    units = plan_units(table, arrays, sizes, p["seed"])
    total = sum(u.image_count for u in units)

    with atomic_directory(out_dir) as tmp:
        writer = ShardWriter(tmp, p["shard_size"])
        bar = tqdm(total=total, desc="render", unit="img", dynamic_ncols=True)
        started = time.perf_counter()
        joint_counts = np.zeros(3)  # joints seen, in the image, visible
        for unit, records in render_units(units, body_path, settings, p["workers"], on_unit=lambda u: bar.update(u.image_count)):
            for record in records:
                writer.add(unit.set_name, unit.clip_id, unit.sequence, record)
                joint_counts += [record["in_image"].size, record["in_image"].sum(), record["visible"].sum()]
        seconds = time.perf_counter() - started
        bar.close()
        index = writer.close()
        save_parquet(tmp / "index.parquet", index)
        sheet = _sheet(tmp, index, p["sheet_columns"])

    write_image(Path(report_dir) / "contact_sheet.png", sheet[..., ::-1])
    splits = dict(zip(table["clip_id"], table["split"]))
    leaks = sorted({s for s, c in zip(index["set"], index["clip_id"]) if splits[c] != {"train": "train", "val": "val"}.get(s, "test")})
    if leaks:  # plan_units draws each set from its own split only; this guards the whole chain
        raise ArtifactError(f"render: set(s) {leaks} hold clips of another split")
    counts = index["set"].value_counts()
    save_json(metrics_file, {
        "image_size": p["image_size"],
        "images": int(len(index)),
        "images_per_set": {name: int(counts.get(name, 0)) for name in ("train", "val", "test", "multiview", "video")},
        "render_seconds": round(seconds, 2),
        "render_images_per_s": round(len(index) / seconds, 2),
        "workers": p["workers"],
        "occluded_fraction": round(float(index["occluded"].mean()), 4),
        "joints_in_image_fraction": round(float(joint_counts[1] / joint_counts[0]), 4),
        "joints_visible_fraction": round(float(joint_counts[2] / joint_counts[0]), 4),
        "backgrounds": {k: int(v) for k, v in index["background"].value_counts().sort_index().items()},
        "colourings": {k: int(v) for k, v in index["colouring"].value_counts().sort_index().items()},
    })


if __name__ == "__main__":
    main()
