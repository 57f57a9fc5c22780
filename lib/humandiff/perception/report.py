"""The perception network's scores against the rendered ground truth, and reports/perception.md.

Per set: :func:`set_metrics` (PCK, regression MPJPE / PA-MPJPE, ... of
:func:`humandiff.perception.model.evaluate_predictions`, plus :func:`video_metrics` on the video
set); :func:`perception_metrics` gathers them into the stage's metrics JSON,
:func:`perception_report` writes the Markdown around them and :func:`sheet_tiles` draws the
predicted keypoints of a few test images for its figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from humandiff.eval.mesh import acceleration_error
from humandiff.imaging.draw import contact_sheet, draw_keypoints, label
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import evaluate_predictions

#: Keypoints drawn filled in the figure: confidence at least this.
CONFIDENT = 0.5
#: Tiles per row of the figure, at most.
SHEET_COLUMNS = 8


def video_metrics(rows: pd.DataFrame, predictions: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """Acceleration error (mm/s^2, pelvis-aligned joints) of the per-frame regression over each
    sequence of at least 3 frames (``rows``: the set's index rows, in the order of the arrays);
    empty without such a sequence."""
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


def set_metrics(set_name: str, rows: pd.DataFrame, predictions: dict[str, np.ndarray], truth: dict[str, np.ndarray]
                ) -> dict[str, float]:
    """One set's scores: :func:`evaluate_predictions`, its image count and, for ``video``, :func:`video_metrics`."""
    values = evaluate_predictions(predictions, truth)
    values["images"] = len(rows)
    if set_name == "video":
        values.update(video_metrics(rows, predictions, truth))
    return values


def perception_metrics(per_set: dict[str, dict[str, float]], image_size: int, network_seconds: float) -> dict[str, Any]:
    """The stage's metrics JSON: the test set's headline scores, the throughputs (extraction: all
    sets' images over ``network_seconds``) and every set's scores (4 decimals)."""
    test = per_set["test"]
    total_images = sum(int(values["images"]) for values in per_set.values())
    return {
        "image_size": image_size,
        "test_images": test["images"],
        "joint_set": "SMPL 24 (joints inside the image); *_lsp14: the 14 LSP-style joints",
        "pck_0.05": round(test["pck_0.05"], 4),
        "pck_0.1": round(test["pck_0.1"], 4),
        "regression_mpjpe_mm": round(test["regression_mpjpe_mm"], 2),
        "regression_pa_mpjpe_mm": round(test["regression_pa_mpjpe_mm"], 2),
        "extract_images_per_s": round(total_images / max(network_seconds, 1e-9), 2),
        "sets": {name: {k: round(float(v), 4) for k, v in values.items()} for name, values in per_set.items()},
    }


def sheet_tiles(truth: dict[str, np.ndarray], predictions: dict[str, np.ndarray], image_ids: np.ndarray, count: int
                ) -> list[np.ndarray]:
    """``count`` images spread evenly over the set, with the predicted keypoints drawn (filled when
    confident) and labelled with the image id and the mean error of its joints inside the image."""
    picks = np.linspace(0, len(truth["image"]) - 1, min(count, len(truth["image"]))).round().astype(int)
    tiles = []
    for i in picks:
        tile = draw_keypoints(truth["image"][i], predictions["keypoints"][i], predictions["confidence"][i] >= CONFIDENT)
        error = np.linalg.norm(predictions["keypoints"][i] - truth["joints_2d"][i], axis=-1)[truth["in_image"][i]].mean()
        tiles.append(label(tile, f"{image_ids[i]} err {error:.1f}px"))
    return tiles


def prediction_sheet(tiles: list[np.ndarray]) -> np.ndarray:
    """The figure: the tiles of :func:`sheet_tiles` in rows of up to SHEET_COLUMNS (RGB)."""
    return contact_sheet(tiles, min(SHEET_COLUMNS, len(tiles)))


def figure_link(figure_file: str | Path, report_file: str | Path) -> str:
    """The figure's path as the report links it: relative to the report's folder when inside it."""
    figure, folder = Path(figure_file), Path(report_file).parent
    return (figure.relative_to(folder) if figure.is_relative_to(folder) else figure).as_posix()


def perception_report(metrics: dict[str, Any], per_set: dict[str, dict[str, float]], figure: str) -> str:
    """reports/perception.md: the test set's scores, the other sets', the throughput and the figure."""
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
    lines += ["", f"Throughput: extraction {metrics['extract_images_per_s']} images/s (network and decoding; "
              "rendering's rate is in reports/metrics/render.json, which no stage reads: a timing is never a dependency).", "",
              f"![predicted keypoints (filled: confidence >= {CONFIDENT})]({figure})", ""]
    return "\n".join(lines)
