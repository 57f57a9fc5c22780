"""Stage extract: run the perception network on the image sets and write what the methods consume.

Per image (see humandiff.perception.extraction): 2D keypoints with confidences from the heatmaps
(never from the ground truth), the xy and depth heatmaps (quantised), the pooled feature and the
spatial tokens, and the SMPL regression. Also evaluates the network against the ground truth
(PCK, regression MPJPE / PA-MPJPE, acceleration error on video) and writes reports/perception.md
with a figure of predicted keypoints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from humandiff.body.model import load_body_model
from humandiff.eval.mesh import acceleration_error
from humandiff.imaging import SET_NAMES, atomic_directory, load_image_set, load_index
from humandiff.imaging.draw import contact_sheet, draw_keypoints, label
from humandiff.perception.extraction import pack_predictions, save_extraction
from humandiff.io import ArtifactError, save_json
from humandiff.io.artifacts import atomic_path
from humandiff.perception.model import HEATMAP_STRIDE, evaluate_predictions, load_perception, predict
from humandiff.motion.video import write_image
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.train.device import on_device, resolve_device

SECTION = "extract"
PARAMS = {"sets": list, "batch_size": int, "threads": int, "refine_window": int, "chunk_images": int, "sheet_images": int}
GT_FIELDS = ("image", "intrinsics", "joints_2d", "in_image", "visible", "joints_cam", "bbox")


def _extract_set(model, body_model, images_dir: str, set_name: str, index, p: dict, sigma: float, bar: tqdm
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """(packed arrays, the float predictions needed for metrics, ground truth, seconds in the network)."""
    rows, truth = load_image_set(images_dir, set_name, GT_FIELDS, index=index)
    packed_parts: list[dict[str, np.ndarray]] = []
    kept: dict[str, list[np.ndarray]] = {name: [] for name in ("keypoints", "confidence", "depth", "joints_cam")}
    seconds = 0.0
    for start in range(0, len(rows), p["chunk_images"]):
        stop = min(start + p["chunk_images"], len(rows))
        began = time.perf_counter()
        predictions = predict(model, truth["image"][start:stop], truth["intrinsics"][start:stop], body_model,
                              p["batch_size"], sigma, p["refine_window"], progress=bar.update)
        seconds += time.perf_counter() - began
        packed_parts.append(pack_predictions(predictions, rows["image_id"].to_numpy()[start:stop],
                                             truth["intrinsics"][start:stop], HEATMAP_STRIDE, model.config.image_size))
        for name in kept:
            kept[name].append(predictions[name])
    packed = {name: (np.concatenate([part[name] for part in packed_parts]) if packed_parts[0][name].ndim else packed_parts[0][name])
              for name in packed_parts[0]}
    return packed, {name: np.concatenate(parts) for name, parts in kept.items()}, truth, seconds


def _video_metrics(rows, predictions: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Acceleration error (mm/s^2, pelvis-aligned joints) of the per-frame regression over each sequence."""
    errors = []
    for _, group in rows.groupby("sequence"):
        order = group.sort_values("frame").index.to_numpy()
        if len(order) < 3:
            continue
        pred = predictions["joints_cam"][order] - predictions["joints_cam"][order][:, :1]
        gt = truth["joints_cam"][order] - truth["joints_cam"][order][:, :1]
        fps = float(group["fps"].iloc[0]) if "fps" in group else 20.0
        errors.append(acceleration_error(pred, gt, fps=fps) * 1000)
    return {"regression_accel_error_mm_s2": float(np.mean(errors))} if errors else {}


def _report(metrics: dict, per_set: dict[str, dict], figure: str) -> str:
    test = per_set["test"]
    lines = [
        "# Perception network: keypoints, depth maps and SMPL regression",
        "",
        "The image backbone whose outputs condition ScoreHMR and HMDiff (stage `extract`), evaluated",
        "against the rendered ground truth. Keypoints are the refined peaks of the xy heatmaps (never",
        "ground truth); the regression is the HMR-style head (camera-frame SMPL, weak-perspective camera",
        "turned into a translation with the image's focal length).",
        "",
        f"Single-view test set: {metrics['test_images']} images of {metrics['image_size']} x {metrics['image_size']} px from held-out (test) motions.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| PCK@0.05 (all 24 SMPL joints inside the image) | {test['pck_0.05']:.3f} |",
        f"| PCK@0.1 (all 24 SMPL joints inside the image) | {test['pck_0.1']:.3f} |",
        f"| PCK@0.05 / @0.1, visible joints only | {test['pck_0.05_visible']:.3f} / {test['pck_0.1_visible']:.3f} |",
        f"| PCK@0.05 / @0.1, LSP-14 joints | {test['pck_0.05_lsp14']:.3f} / {test['pck_0.1_lsp14']:.3f} |",
        f"| mean keypoint error (px) | {test['keypoint_error_px']:.2f} |",
        f"| share of PCK@0.1 misses that are left/right swaps | {test['swap_share_of_misses_0.1']:.2f} |",
        f"| regression MPJPE (mm, 24 joints, pelvis-aligned) | {test['regression_mpjpe_mm']:.1f} |",
        f"| regression PA-MPJPE (mm, 24 joints) | {test['regression_pa_mpjpe_mm']:.1f} |",
        f"| regression MPJPE / PA-MPJPE (mm, LSP-14) | {test['regression_mpjpe_lsp14_mm']:.1f} / {test['regression_pa_mpjpe_lsp14_mm']:.1f} |",
        f"| regression PCK@0.1 (its projected joints) | {test['regression_pck_0.1']:.3f} |",
        f"| depth-map error, root-relative (mm) | {test['heatmap_depth_error_mm']:.1f} |",
        "",
        "PCK: a keypoint is correct within alpha x the larger side of the person's silhouette bounding",
        "box; joints outside the image are not counted. MPJPE after aligning the pelvis (joint 0);",
        "PA-MPJPE after a similarity Procrustes alignment. A swap is a miss that lands on the ground",
        "truth of the joint's left/right twin: a front/back confusion of the body rather than an",
        "imprecise peak.",
        "",
        "Other sets (same network):",
        "",
        "| set | images | PCK@0.1 | regression MPJPE (mm) | regression PA-MPJPE (mm) |",
        "|---|---|---|---|---|",
    ]
    for set_name, values in per_set.items():
        lines.append(f"| {set_name} | {values['images']} | {values['pck_0.1']:.3f} | {values['regression_mpjpe_mm']:.1f} | "
                     f"{values['regression_pa_mpjpe_mm']:.1f} |")
    if "regression_accel_error_mm_s2" in per_set.get("video", {}):
        lines += ["", f"Video: per-frame regression acceleration error {per_set['video']['regression_accel_error_mm_s2']:.0f} mm/s^2 "
                  "(pelvis-aligned joints), the jitter ScoreHMR's temporal guidance removes."]
    lines += ["", f"Throughput: rendering {metrics['render_images_per_s']} images/s, extraction "
              f"{metrics['extract_images_per_s']} images/s (network and decoding).", "",
              f"![predicted keypoints (filled: confidence >= 0.5)]({figure})", ""]
    return "\n".join(lines)


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--model", "model_file", default="data/models/perception.pt", show_default=True, type=click.Path())
@click.option("--render-metrics", default="reports/metrics/render.json", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/perception.md", show_default=True, type=click.Path())
@click.option("--figure", "figure_file", default="reports/perception/predictions.png", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/perception.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, images_dir: str, model_file: str, render_metrics: str, out_dir: str, report_file: str,
         figure_file: str, metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "batch_size", "threads", "refine_window", "chunk_images", "sheet_images")
    if p["refine_window"] % 2 == 0:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.refine_window' must be odd, got {p['refine_window']}")
    unknown = [s for s in p["sets"] if s not in SET_NAMES]
    if unknown or "test" not in p["sets"] or len(set(p["sets"])) != len(p["sets"]):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.sets' must list distinct sets of {SET_NAMES} including 'test', got {p['sets']}")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    device = resolve_device(p.get("device", "cpu"), f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    index = load_index(images_dir)
    absent = [s for s in p["sets"] if not (index["set"] == s).any()]
    if absent:
        raise ArtifactError(f"{Path(images_dir) / 'index.parquet'}: no image of set(s) {absent} listed in '{SECTION}.sets'")
    try:
        render_rate = float(json.loads(Path(render_metrics).read_text())["render_images_per_s"])
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{render_metrics}: cannot read field 'render_images_per_s' ({type(exc).__name__})") from None
    model, extra = load_perception(model_file)
    model = on_device(model.fast_layout(), device)  # the network on the device; decoding on the CPU
    sigma = float(extra.get("sigma", 1.0))
    body_model = load_body_model(body_path)

    per_set: dict[str, dict] = {}
    network_seconds, total_images = 0.0, 0
    sheet_tiles = []
    bar = tqdm(total=int(index["set"].isin(p["sets"]).sum()), desc="extract", unit="img", dynamic_ncols=True)
    with atomic_directory(out_dir) as tmp:
        for set_name in p["sets"]:
            packed, predictions, truth, seconds = _extract_set(model, body_model, images_dir, set_name, index, p, sigma, bar)
            save_extraction(tmp / f"{set_name}.npz", packed)
            network_seconds += seconds
            total_images += len(packed["image_id"])
            values = evaluate_predictions(predictions, truth)
            values["images"] = len(packed["image_id"])
            if set_name == "video":
                values.update(_video_metrics(index[index["set"] == "video"].reset_index(drop=True), predictions, truth))
            per_set[set_name] = values
            if set_name == "test":
                picks = np.linspace(0, len(truth["image"]) - 1, min(p["sheet_images"], len(truth["image"]))).round().astype(int)
                for i in picks:
                    tile = draw_keypoints(truth["image"][i], predictions["keypoints"][i], predictions["confidence"][i] >= 0.5)
                    error = np.linalg.norm(predictions["keypoints"][i] - truth["joints_2d"][i], axis=-1)[truth["in_image"][i]].mean()
                    sheet_tiles.append(label(tile, f"{packed['image_id'][i]} err {error:.1f}px"))
    bar.close()

    test = per_set["test"]
    metrics = {
        "image_size": model.config.image_size,
        "test_images": test["images"],
        "joint_set": "SMPL 24 (joints inside the image); *_lsp14: the 14 LSP-style joints",
        "pck_0.05": round(test["pck_0.05"], 4),
        "pck_0.1": round(test["pck_0.1"], 4),
        "regression_mpjpe_mm": round(test["regression_mpjpe_mm"], 2),
        "regression_pa_mpjpe_mm": round(test["regression_pa_mpjpe_mm"], 2),
        "render_images_per_s": render_rate,
        "extract_images_per_s": round(total_images / max(network_seconds, 1e-9), 2),
        "sets": {name: {k: round(float(v), 4) for k, v in values.items()} for name, values in per_set.items()},
    }
    columns = min(8, len(sheet_tiles))
    write_image(figure_file, contact_sheet(sheet_tiles, columns)[..., ::-1])
    save_json(metrics_file, metrics)
    figure = Path(figure_file)
    relative = figure.relative_to(Path(report_file).parent) if figure.is_relative_to(Path(report_file).parent) else figure
    with atomic_path(report_file, suffix=".md") as handle:
        handle.write_text(_report(metrics, per_set, relative.as_posix()))


if __name__ == "__main__":
    main()
