"""Motion metrics on known answers; stick-figure pictures and videos are written and readable."""

import cv2
import numpy as np

from humandiff.motion.metrics import foot_skating_ratio, jitter
from humandiff.motion.video import contact_sheet_row, write_image, write_video


def _standing(T=11):
    joints = np.zeros((T, 22, 3))
    joints[:, :, 1] = np.linspace(0.0, 1.6, 22)
    joints[:, 10:12, 1] = 0.0
    return joints


def test_foot_skating_counts_low_fast_feet_only():
    joints = _standing()
    assert foot_skating_ratio(joints) == 0.0
    sliding = joints.copy()
    sliding[:, 10, 0] = np.arange(11) * 0.03  # 3 cm per frame on the floor: skating
    assert foot_skating_ratio(sliding) == 1.0
    slow = joints.copy()
    slow[:, 10, 0] = np.arange(11) * 0.02  # below the 2.5 cm threshold
    assert foot_skating_ratio(slow) == 0.0
    lifted = sliding.copy()
    lifted[:, 10, 1] = 0.2  # a swinging foot in the air may move fast
    assert foot_skating_ratio(lifted) == 0.0
    half = joints.copy()
    half[5:, 11, 2] = np.arange(6) * 0.05
    assert np.isclose(foot_skating_ratio(half), 5 / 10)


def test_jitter_is_zero_for_constant_velocity_and_known_for_a_cubic():
    t = np.arange(30)[:, None, None] / 20.0
    linear = np.broadcast_to(t * np.array([1.0, 0.0, 0.5]), (30, 22, 3))
    assert jitter(linear, 20.0) < 1e-9
    cubic = np.broadcast_to(t**3 * np.array([1.0, 0.0, 0.0]), (30, 22, 3))
    assert np.isclose(jitter(cubic, 20.0), 6.0)  # third derivative of t^3 is 6 m/s^3


def test_pictures_and_video_are_written(tmp_path):
    joints = _standing(20).astype(np.float32)
    joints[:, :, 2] += np.arange(20)[:, None] * 0.05
    row = contact_sheet_row(joints, "a person walks forward.", panels=4, panel_size=96)
    assert row.dtype == np.uint8 and row.shape[1] == 5 * 96 and (row < 255).any()
    write_image(tmp_path / "sheet.png", row)
    assert cv2.imread(str(tmp_path / "sheet.png")).shape == row.shape
    write_video(tmp_path / "clip.mp4", joints, "a person walks forward.", size=128)
    video = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    video.release()
