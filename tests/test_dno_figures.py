"""DNO's pictures keep the walker, its targets and obstacles in view, and draw an obstacle as one shape."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from humandiff.dno.figures import COLOURS, draw_obstacle, side_by_side_video, task_sheet
from humandiff.motion.video import project


def _mask(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> np.ndarray:
    return (np.abs(image.astype(int) - np.array(colour)).max(-1) <= tolerance).astype(np.uint8)


def test_projection_puts_the_camera_centre_at_the_panel_middle_and_up_is_up():
    centre = np.array([2.0, 0.85, -1.0])
    assert np.allclose(project(centre, (200, 300), centre, 50.0), [150.0, 124.0])
    above = project(centre + [0.0, 1.0, 0.0], (200, 300), centre, 50.0)
    assert above[1] < 124.0 and abs(above[0] - 150.0) < 1e-9


def test_an_obstacle_is_one_upright_cylinder_where_it_stands():
    canvas = np.full((240, 240, 3), 255, np.uint8)
    centre = np.array([3.0, 0.85, 2.0])
    draw_obstacle(canvas, np.array([3.0, 2.0]), 0.4, centre, 60.0)
    mask = _mask(canvas, COLOURS["obstacle"], 120) | (canvas.min(-1) < 250)
    count, _ = cv2.connectedComponents(mask)
    assert count == 2  # background + one shape (two loose rings would be two or more)
    ys, xs = np.nonzero(mask)
    assert abs(xs.mean() - 120) < 4  # the obstacle stands at the camera's centre
    base, top = project(np.array([[3.0, 0.0, 2.0], [3.0, 1.0, 2.0]]), canvas.shape, centre, 60.0)
    assert ys.max() >= base[1] and ys.min() <= top[1]  # it spans the floor to its top


def _walker_task(frames: int = 80):
    """A walker going 6 m along +x past an obstacle at x = 4 and a ground target at x = 6."""
    T = frames
    x = np.linspace(0.0, 6.0, T)
    skeleton = np.zeros((22, 3))
    skeleton[:, 1] = np.linspace(0.0, 1.7, 22)  # a vertical stick body
    clean = np.tile(skeleton, (T, 1, 1))
    clean[..., 0] += x[:, None]
    resolved = SimpleNamespace(clean=clean, target_points=np.array([[6.0, 0.0, 0.0]]), target_frames=np.array([T - 1]),
                               obstacle_radii=np.array([0.5]), obstacle_centres=np.tile([4.0, 0.8], (1, T, 1)))
    task = SimpleNamespace(task_id="control/obstacle/static", target_axes="xz", obstacle_anchor_frame=T // 2)
    return task, resolved, {"input": clean, "dno": clean + np.array([0.0, 0.0, -0.5])}


def test_every_sheet_panel_shows_the_walker_and_the_obstacle():
    task, resolved, motions = _walker_task()
    size = 120
    sheet = task_sheet(task, resolved, motions, panels=5, size=size)[22:]  # below the header line
    columns = sheet.shape[1] // size - 1  # the last column is the top view
    assert columns >= 3
    for row in range(len(motions)):
        for column in range(columns):
            panel = sheet[row * size:(row + 1) * size, column * size:(column + 1) * size]
            body = _mask(panel, (70, 70, 70), 30)
            assert body.sum() > 20, (row, column)
            assert _mask(panel, COLOURS["obstacle"], 60).sum() > 20, (row, column)


def test_the_video_keeps_the_walker_in_frame_from_start_to_end(tmp_path):
    task, resolved, motions = _walker_task(40)
    side_by_side_video(tmp_path / "v.mp4", task, resolved, motions, size=120)
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    frames = []
    ok, image = capture.read()
    while ok:
        frames.append(image)
        ok, image = capture.read()
    capture.release()
    assert len(frames) == 40
    for image in (frames[0], frames[-1]):
        for panel in (image[:, :120], image[:, 120:]):
            assert _mask(panel, (70, 70, 70), 40).sum() > 10
