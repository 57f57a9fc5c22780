"""DNO's report pictures: contact sheets and side-by-side videos of tasks, loss curves.

Motions are joints (T, 22, 3) in metres, y up, 20 fps; a run is one entry of
:func:`humandiff.dno.report.load_runs` (``"joints"``, ``"clean_joints"``, ``"table"``,
``"history"``). Images are (H, W, 3) uint8, BGR as OpenCV writes them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from humandiff.dno.tasks import load_tasks, resolve_joined
from humandiff.eval.report import line_plot, write_curves_csv, write_png
from humandiff.io import atomic_path
from humandiff.motion.video import draw_skeleton, project

METHOD_LABELS = {"input": "Input", "guided": "Guided (GMD-style)", "dno": "DNO"}
COLOURS = {"input": (150, 150, 150), "guided": (200, 120, 40), "dno": (40, 40, 210), "target": (40, 170, 40),
           "obstacle": (30, 140, 230)}


#: Obstacles are drawn as upright cylinders of this height (m): the criterion keeps the pelvis out of
#: a disc on the ground, so any height reads; about the walker's hip height keeps the body visible.
OBSTACLE_HEIGHT = 1.0


def obstacle_ring(centre_xz: np.ndarray, radius: float, height: float = 0.0, points: int = 24) -> np.ndarray:
    """(points, 3) world points of the obstacle disc's rim at ``height``."""
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return np.stack([centre_xz[0] + radius * np.cos(angles), np.full(points, height),
                     centre_xz[1] + radius * np.sin(angles)], -1)


def draw_obstacle(canvas: np.ndarray, centre_xz: np.ndarray, radius: float, centre: np.ndarray, scale: float,
                  height: float = OBSTACLE_HEIGHT) -> np.ndarray:
    """Draw one upright cylinder (its silhouette, the convex hull of the projected rims, half filled,
    and its top rim) in :func:`~humandiff.motion.video.draw_skeleton`'s view; in place, returns it."""
    rims = project(np.concatenate([obstacle_ring(centre_xz, radius, 0.0), obstacle_ring(centre_xz, radius, height)]),
                   canvas.shape, centre, scale)
    hull = cv2.convexHull(np.round(rims).astype(np.int32))
    shaded = canvas.copy()
    cv2.fillConvexPoly(shaded, hull, COLOURS["obstacle"], cv2.LINE_AA)
    cv2.addWeighted(shaded, 0.45, canvas, 0.55, 0, dst=canvas)
    cv2.polylines(canvas, [hull], True, COLOURS["obstacle"], 2, cv2.LINE_AA)
    top = np.round(rims[len(rims) // 2:]).astype(np.int32)
    cv2.polylines(canvas, [top], True, COLOURS["obstacle"], 1, cv2.LINE_AA)
    return canvas


def target_markers(task, resolved, frame: int | None = None) -> list:
    """Targets (of ``frame``, or all) as draw_skeleton markers (green); ground targets on the floor."""
    marks = [(p, COLOURS["target"]) for p, f in zip(resolved.target_points, resolved.target_frames) if frame is None or f == frame]
    if task.target_axes == "xz":
        marks = [(np.array([p[0], 0.0, p[2]]), c) for p, c in marks]
    return marks


def draw_frame(canvas: np.ndarray, task, resolved, joints: np.ndarray, frame: int, centre: np.ndarray, scale: float,
               all_targets: bool = False) -> np.ndarray:
    """One pose with the frame's obstacles (drawn first, behind) and targets; in place, returns it."""
    for k, radius in enumerate(resolved.obstacle_radii):
        draw_obstacle(canvas, resolved.obstacle_centres[k, frame], radius, centre, scale)
    return draw_skeleton(canvas, joints, centre, scale, markers=target_markers(task, resolved, None if all_targets else frame))


def framing(points_xz: np.ndarray, size: int, margin: float = 1.6, least: float = 2.6) -> tuple[np.ndarray, float]:
    """The camera (centre (3,), pixels per metre) that keeps ``points_xz`` (N, 2) on the ground and a
    body above them in a ``size`` square panel."""
    low, high = points_xz.min(0), points_xz.max(0)
    middle = (low + high) / 2
    return np.array([middle[0], 0.85, middle[1]]), size / max(least, float((high - low).max()) + margin)


def scene_points(resolved, frame: int | slice) -> np.ndarray:
    """Ground positions (N, 2) of the targets and of the obstacles (with their radius) at ``frame``."""
    points = [resolved.target_points[:, [0, 2]]]
    for k, radius in enumerate(resolved.obstacle_radii):
        centres = np.asarray(resolved.obstacle_centres[k, frame]).reshape(-1, 2)
        points += [centres - radius, centres + radius]
    return np.concatenate(points, 0)


def top_view(paths: dict[str, np.ndarray], resolved, size: int = 240) -> np.ndarray:
    """Pelvis paths (T, 3) seen from above with targets and obstacles; (size, size, 3)."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    points = [p[:, [0, 2]] for p in paths.values()] + [resolved.target_points[:, [0, 2]]]
    if len(resolved.obstacle_radii):
        points.append(resolved.obstacle_centres.reshape(-1, 2))
    stacked = np.concatenate([p for p in points if len(p)], 0)
    low, high = stacked.min(0) - 0.5, stacked.max(0) + 0.5
    span = float((high - low).max())

    def px(xz: np.ndarray) -> np.ndarray:
        scaled = (xz - (low + high) / 2) / span * (size * 0.9)
        return np.stack([size / 2 + scaled[..., 0], size / 2 - scaled[..., 1]], -1).round().astype(np.int32)

    for k, radius in enumerate(resolved.obstacle_radii):
        centre = resolved.obstacle_centres[k]
        cv2.polylines(canvas, [px(centre)], False, COLOURS["obstacle"], 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(px(centre[len(centre) // 2])), max(2, int(radius / span * size * 0.9)), COLOURS["obstacle"], 2)
    for name, path in paths.items():
        cv2.polylines(canvas, [px(path[:, [0, 2]])], False, COLOURS[name], 2, cv2.LINE_AA)
    for point in resolved.target_points:
        cv2.circle(canvas, tuple(px(point[[0, 2]])), 4, COLOURS["target"], -1, cv2.LINE_AA)
    cv2.putText(canvas, f"top view, {span:.1f} m", (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (60, 60, 60), 1, cv2.LINE_AA)
    return canvas


def task_sheet(task, resolved, motions: dict[str, np.ndarray], panels: int = 5, size: int = 240) -> np.ndarray:
    """One row per method (input, guided, dno): poses around the task's key frame with its targets /
    obstacles drawn, plus a top view of every method's pelvis path. (H, W, 3) uint8."""
    T = resolved.clean.shape[0]
    key = int(np.median(resolved.target_frames)) if len(resolved.target_frames) else (
        task.obstacle_anchor_frame if task.obstacle_anchor_frame >= 0 else T // 2)
    frames = np.unique(np.clip(np.linspace(key - 30, key + 30, panels).round().astype(int), 0, T - 1))
    rows = []
    for name, joints in motions.items():
        row = np.full((size, size * len(frames), 3), 255, np.uint8)
        for i, frame in enumerate(frames):
            panel = row[:, i * size:(i + 1) * size]
            # the camera follows this walker: its pelvis, the targets and the frame's obstacles stay in view
            centre, scale = framing(np.concatenate([joints[frame:frame + 1, 0, [0, 2]], scene_points(resolved, frame)]), size)
            draw_frame(panel, task, resolved, joints[frame], frame, centre, scale)
            cv2.putText(panel, f"{METHOD_LABELS[name]} t={frame / 20:.1f}s", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (20, 20, 20), 1, cv2.LINE_AA)
        rows.append(row)
    strip = np.concatenate(rows, 0)
    view = top_view({n: j[:, 0] for n, j in motions.items()}, resolved, size)
    side = np.full((strip.shape[0], size, 3), 255, np.uint8)
    side[:size] = view
    header = np.full((22, strip.shape[1] + size, 3), 255, np.uint8)
    cv2.putText(header, f"{task.task_id}: rows input / guided / DNO around the key frame; green targets, orange "
                "obstacles; top view: grey input, blue guided, red DNO", (6, 16),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([header, np.concatenate([strip, side], 1)], 0)


def side_by_side_video(path: Path, task, resolved, motions: dict[str, np.ndarray], size: int = 300) -> None:
    """MP4: one panel per method, a fixed camera on the input's mean pelvis, targets and obstacles drawn."""
    # one camera for the whole clip: every method's path, the targets and the obstacles' sweep in view
    centre, scale = framing(np.concatenate([j[:, 0, [0, 2]] for j in motions.values()]
                                           + [scene_points(resolved, slice(None))]), size, margin=1.5, least=2.5)
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (size * len(motions), size))
        try:
            for frame in range(resolved.clean.shape[0]):
                panels = []
                for name, joints in motions.items():
                    canvas = np.full((size, size, 3), 255, np.uint8)
                    draw_frame(canvas, task, resolved, joints[frame], frame, centre, scale, all_targets=True)
                    cv2.putText(canvas, METHOD_LABELS[name], (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
                    panels.append(canvas)
                writer.write(np.concatenate(panels, 1))
        finally:
            writer.release()


def pictures(family: str, runs: dict[str, dict], tasks_file: Path, report_dir: Path, sheet_tasks: int, videos: int) -> list[str]:
    """Contact sheets (and videos) of the first tasks of a family (the first of each action for edits);
    returns the written paths relative to ``reports/``."""
    methods = [m for m in ("input", "guided", "dno") if m in runs]
    if "input" not in methods or runs["input"]["clean_joints"] is None or len(methods) < 2 or not tasks_file.is_file():
        return []
    tasks = {t.task_id: t for t in load_tasks(tasks_file, family)}
    table = runs["input"]["table"]
    chosen = table.groupby("setting", sort=False).head(1).index if family == "edit" else table.index
    written = []
    for count, index in enumerate(chosen[:sheet_tasks]):
        task = tasks.get(str(table.at[index, "task_id"]))
        if task is None:
            continue
        resolved = resolve_joined(task, runs["input"]["clean_joints"][index])
        motions = {m: runs[m]["joints"][index].astype(np.float64) for m in methods}
        name = task.task_id.replace("/", "_")
        write_png(report_dir / f"{name}.png", task_sheet(task, resolved, motions))
        written.append(f"{report_dir.name}/{name}.png")
        if count < videos:
            side_by_side_video(report_dir / "videos" / f"{name}.mp4", task, resolved, motions)
            written.append(f"{report_dir.name}/videos/{name}.mp4")
    return written


def loss_curves(family: str, runs: dict[str, dict], plots_dir: Path) -> list[str]:
    """Mean DNO loss terms per step (CSV for dvc plots, PNG for people)."""
    entry = runs.get("dno")
    if entry is None or not entry["history"]:
        return []
    history = entry["history"]
    columns = {name: np.nanmean(values, 1) for name, values in history.items() if name not in ("grad_norm",)}
    write_curves_csv(plots_dir / f"dno_{family}_loss.csv", columns, index_name="step")
    shown = {k: v for k, v in columns.items() if k not in ("lr",)}
    write_png(plots_dir / f"dno_{family}_loss.png", line_plot(shown, f"DNO {family}: mean loss terms", xlabel="step"))
    return [f"plots/dno_{family}_loss.png"]

