"""Readers of the real mesh benchmarks (3DPW, EMDB, H36M) on small fixtures written in the published formats."""

from __future__ import annotations

import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from humandiff.body.model import load_body_model, posed_joints
from humandiff.datasets.emdb import EMDB_KEYPOINT_NAMES, emdb_frames, iter_emdb, load_emdb_sequence
from humandiff.datasets.frames import box_from_keypoints, body_model_pelvis
from humandiff.datasets.h36m import (EVAL14_INDICES, SPIN24_KEYPOINT_NAMES, h36m_frames, load_h36m_npz,
                                     protocol2_mask)
from humandiff.datasets.threedpw import THREEDPW_KEYPOINT_NAMES, iter_3dpw, load_3dpw_sequence, threedpw_frames
from humandiff.geometry.rotations import axis_angle_to_matrix_np
from humandiff.io.artifacts import ArtifactError

RNG_SEED = 7


# --------------------------------------------------------------------------- a Python 2 pickler


class _Global:
    """``module.name(argument)`` in a pickle: what a malicious file holds."""

    def __init__(self, module: str, name: str, argument: str) -> None:
        self.module, self.name, self.argument = module, name, argument


def _py2_pickle(payload) -> bytes:
    """Protocol 2 as Python 2 wrote it: every str is a py2 ``str`` (SHORT_BINSTRING/BINSTRING, raw
    latin-1 bytes), numpy arrays by ``numpy.core.multiarray._reconstruct`` with their data in a str."""
    out = bytearray(b"\x80\x02")

    def string(raw: bytes) -> None:
        out.extend(b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw)

    def global_(module: str, name: str) -> None:
        out.extend(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def write(value) -> None:
        if value is None:
            out.extend(b"N")
        elif isinstance(value, (bool, np.bool_)):
            out.extend(b"\x88" if value else b"\x89")
        elif isinstance(value, (int, np.integer)):
            out.extend(b"J" + struct.pack("<i", int(value)))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        elif isinstance(value, str):
            string(value.encode("latin-1"))
        elif isinstance(value, tuple):
            out.extend(b"(")
            for item in value:
                write(item)
            out.extend(b"t")
        elif isinstance(value, list):
            out.extend(b"](")
            for item in value:
                write(item)
            out.extend(b"e")
        elif isinstance(value, dict):
            out.extend(b"}(")
            for key, item in value.items():
                write(key)
                write(item)
            out.extend(b"u")
        elif isinstance(value, np.ndarray):
            global_("numpy.core.multiarray", "_reconstruct")
            global_("numpy", "ndarray")
            write((0,))
            string(b"b")
            out.extend(b"\x87R")  # TUPLE3 REDUCE
            out.extend(b"(")  # state: (version, shape, dtype, fortran, data)
            write(1)
            write(tuple(value.shape))
            global_("numpy", "dtype")
            write((value.dtype.str[1:], 0, 1))
            out.extend(b"R")
            write((3, value.dtype.str[0], None, None, None, -1, -1, 0))
            out.extend(b"b")  # BUILD the dtype
            write(False)
            string(np.ascontiguousarray(value).tobytes())
            out.extend(b"tb")  # BUILD the array
        elif isinstance(value, _Global):
            global_(value.module, value.name)
            write((value.argument,))
            out.extend(b"R")
        else:
            raise TypeError(type(value))

    write(payload)
    out.extend(b".")
    return bytes(out)


# --------------------------------------------------------------------------- fixtures


def _rotations(rng, count: int) -> np.ndarray:
    return axis_angle_to_matrix_np(rng.normal(0, 0.8, (count, 3)))


def _threedpw_payload(frames: int = 6) -> dict:
    rng = np.random.default_rng(RNG_SEED)
    cam_poses = np.tile(np.eye(4), (frames, 1, 1))
    cam_poses[:, :3, :3] = _rotations(rng, frames)
    cam_poses[:, :3, 3] = rng.normal(0, 2, (frames, 3))
    keypoints = [np.stack([rng.uniform(0, 1080, (frames, 18)), rng.uniform(0, 1920, (frames, 18)),
                           rng.uniform(0, 1, (frames, 18))], axis=1) for _ in range(2)]
    keypoints[0][:, 2, :4] = 0.0  # four undetected joints in every frame of person 0
    return {
        "sequence": "downtown_walking_00",
        "genders": ["m", "f"],
        "betas": [rng.normal(0, 1, 10), rng.normal(0, 1, 10)],
        "betas_clothed": [rng.normal(0, 1, 10), rng.normal(0, 1, 10)],
        "poses": [rng.normal(0, 0.3, (frames, 72)), rng.normal(0, 0.3, (frames, 72))],
        "trans": [rng.normal(0, 1, (frames, 3)), rng.normal(0, 1, (frames, 3))],
        "poses_60Hz": [rng.normal(0, 0.3, (2 * frames, 72)) for _ in range(2)],
        "trans_60Hz": [rng.normal(0, 1, (2 * frames, 3)) for _ in range(2)],
        "jointPositions": [rng.normal(0, 1, (frames, 72)), rng.normal(0, 1, (frames, 72))],
        "poses2d": keypoints,
        "campose_valid": [np.array([1, 1, 0, 1, 1, 1], dtype=bool), np.array([0, 0, 1, 1, 0, 0], dtype=bool)],
        "cam_poses": cam_poses,
        "cam_intrinsics": np.array([[1961.9, 0.0, 540.0], [0.0, 1969.2, 960.0], [0.0, 0.0, 1.0]]),
        "img_frame_ids": np.arange(frames, dtype=np.int64) * 2,
        "v_template_clothed": [rng.normal(0, 0.3, (40, 3)), rng.normal(0, 0.3, (40, 3))],
        "texture_maps": ["t\xe9xture_m.jpg", "t\xe9xture_f.jpg"],  # a latin-1 character in a py2 str
    }


def _write_3dpw(root: Path, payload: dict, split: str = "test", name: str = "downtown_walking_00") -> Path:
    path = root / "sequenceFiles" / split / f"{name}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_py2_pickle(payload))
    return path


def _emdb_payload(name: str = "P8_69_outdoor_cartwheel", emdb1: bool = True, frames: int = 5) -> dict:
    rng = np.random.default_rng(RNG_SEED + 1)
    extrinsics = np.tile(np.eye(4), (frames, 1, 1))
    extrinsics[:, :3, :3] = _rotations(rng, frames)
    extrinsics[:, :3, 3] = rng.normal(0, 2, (frames, 3))
    boxes = np.stack([rng.uniform(0, 300, frames), rng.uniform(0, 500, frames),
                      rng.uniform(400, 700, frames), rng.uniform(900, 1400, frames)], axis=1)
    boxes[3, 2] = boxes[3, 0]  # a box without area
    good = np.array([True, False, True, True, True])
    return {
        "gender": "female",
        "name": name,
        "emdb1": emdb1,
        "emdb2": not emdb1,
        "n_frames": frames,
        "good_frames_mask": good,
        "camera": {"intrinsics": np.array([[1493.6, 0.0, 719.8], [0.0, 1493.6, 964.2], [0.0, 0.0, 1.0]]),
                   "extrinsics": extrinsics, "width": 1440, "height": 1920},
        "smpl": {"poses_root": rng.normal(0, 0.5, (frames, 3)), "poses_body": rng.normal(0, 0.3, (frames, 69)),
                 "trans": rng.normal(0, 1, (frames, 3)), "betas": rng.normal(0, 1, 10)},
        "kp2d": rng.uniform(0, 1400, (frames, 24, 2)),
        "bboxes": {"bboxes": boxes, "invalid_idxs": np.array([1, 3])},
    }


def _write_emdb(root: Path, payload: dict) -> Path:
    subject, sequence = payload["name"].split("_", 1)
    path = root / subject / sequence / f"{payload['name']}_data.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


_H36M_NAMES = ["images/S9_Directions_1.60457274_000001.jpg", "images/S9_Directions_1.60457274_000006.jpg",
               "images/S11_Sitting_Down_2.60457274_000011.jpg", "images/S9_Directions_1.54138969_000001.jpg",
               "images/S1_Walking.60457274_000001.jpg", "images/S11_Eating.60457274_000003.jpg"]


def _h36m_spin_arrays() -> dict:
    rng = np.random.default_rng(RNG_SEED + 2)
    n = len(_H36M_NAMES)
    S = np.zeros((n, 24, 4))
    S[:, :19, :3] = rng.normal(0, 0.4, (n, 19, 3))
    S[:, :19, 3] = 1.0
    part = np.zeros((n, 24, 3))
    part[:, :19, :2] = rng.uniform(0, 1000, (n, 19, 2))
    part[:, :19, 2] = 1.0
    return {"imgname": np.array(_H36M_NAMES), "center": rng.uniform(300, 700, (n, 2)),
            "scale": rng.uniform(1.5, 3.0, n), "S": S, "part": part,
            "pose": rng.normal(0, 0.3, (n, 72)), "shape": rng.normal(0, 1, (n, 10))}


# --------------------------------------------------------------------------- 3DPW


def test_3dpw_python2_pickle_reads_field_by_field(tmp_path):
    payload = _threedpw_payload()
    path = _write_3dpw(tmp_path / "3DPW", payload)
    raw = path.read_bytes()
    strings = {op.name for op, _, _ in pickletools.genops(raw) if "STRING" in op.name or "UNICODE" in op.name}
    assert strings <= {"SHORT_BINSTRING", "BINSTRING"}  # only Python 2 str, as the release
    with pytest.raises(UnicodeDecodeError):  # only latin-1 reads it back
        pickle.loads(raw)
    seq = load_3dpw_sequence(path)
    assert (seq.sequence, seq.split, seq.genders, seq.num_people, seq.num_frames) == (
        "downtown_walking_00", "test", ("m", "f"), 2, 6)
    np.testing.assert_array_equal(seq.betas, np.stack(payload["betas"]))
    np.testing.assert_array_equal(seq.poses, np.stack(payload["poses"]))
    np.testing.assert_array_equal(seq.trans, np.stack(payload["trans"]))
    np.testing.assert_array_equal(seq.joints_3d, np.stack(payload["jointPositions"]).reshape(2, 6, 24, 3))
    assert seq.keypoints_2d.shape == (2, 6, 18, 3)
    np.testing.assert_array_equal(seq.keypoints_2d[1, 4, 7], payload["poses2d"][1][4, :, 7])
    np.testing.assert_array_equal(seq.campose_valid, np.stack(payload["campose_valid"]))
    assert seq.campose_valid.dtype == bool and seq.img_frame_ids.dtype == np.int64
    np.testing.assert_array_equal(seq.cam_poses, payload["cam_poses"])
    np.testing.assert_array_equal(seq.intrinsics, payload["cam_intrinsics"])
    np.testing.assert_array_equal(seq.img_frame_ids, payload["img_frame_ids"])
    np.testing.assert_array_equal(seq.v_template_clothed, np.stack(payload["v_template_clothed"]))
    assert seq.image_paths[0] == "imageFiles/downtown_walking_00/image_00000.jpg"
    assert seq.image_paths[5] == "imageFiles/downtown_walking_00/image_00005.jpg"
    assert len(THREEDPW_KEYPOINT_NAMES) == 18
    assert [s.sequence for s in iter_3dpw(tmp_path / "3DPW", "test")] == ["downtown_walking_00"]
    column = _write_3dpw(tmp_path, {**payload, "betas": [b[:, None] for b in payload["betas"]]}, name="column")
    np.testing.assert_array_equal(load_3dpw_sequence(column).betas, seq.betas)  # the readme's "10x1"
    with pytest.raises(ArtifactError, match="sequenceFiles/validation: folder not found"):
        list(iter_3dpw(tmp_path / "3DPW", "validation"))


def test_3dpw_frames_in_camera_frame_match_the_posed_world_body(tmp_path):
    payload = _threedpw_payload()
    seq = load_3dpw_sequence(_write_3dpw(tmp_path / "3DPW", payload))
    model = load_body_model()
    frames = threedpw_frames(seq, body_model_pelvis(model))
    valid = np.stack(payload["campose_valid"])
    assert len(frames) == valid.sum() == 7
    assert frames.frame.tolist() == [0, 1, 3, 4, 5, 2, 3] and frames.person.tolist() == [0] * 5 + [1] * 2
    assert frames.image_paths[5] == "imageFiles/downtown_walking_00/image_00002.jpg"
    assert frames.keypoint_names == THREEDPW_KEYPOINT_NAMES and frames.trans is not None
    np.testing.assert_array_equal(frames.intrinsics[3], payload["cam_intrinsics"])
    # the body posed in the world and seen through the extrinsics = the body posed with the camera-frame parameters
    for row in range(len(frames)):
        person, t = frames.person[row], frames.frame[row]
        betas = torch.from_numpy(seq.betas[person][None]).float()
        world = posed_joints(model, torch.from_numpy(seq.poses[person, t, :3][None]).float(),
                             torch.from_numpy(seq.poses[person, t, 3:][None]).float(), betas,
                             torch.from_numpy(seq.trans[person, t][None]).float())[0].numpy()
        extrinsics = seq.cam_poses[t]
        expected = world @ extrinsics[:3, :3].T + extrinsics[:3, 3]
        camera = posed_joints(model, torch.from_numpy(frames.pose[row, :3][None]).float(),
                              torch.from_numpy(frames.pose[row, 3:][None]).float(), betas,
                              torch.from_numpy(frames.trans[row][None]).float())[0].numpy()
        np.testing.assert_allclose(camera, expected, atol=2e-4)
        np.testing.assert_array_equal(frames.pose[row, 3:], seq.poses[person, t, 3:])
    # SPIN's box: visible joints only, 1.2 x the longer side
    keypoints = seq.keypoints_2d[0, 0]
    visible = keypoints[keypoints[:, 2] > 0, :2]
    np.testing.assert_allclose(frames.center[0], (visible.min(0) + visible.max(0)) / 2)
    np.testing.assert_allclose(frames.box_size[0], 1.2 * (visible.max(0) - visible.min(0)).max())


def test_box_from_keypoints_without_visible_joints():
    keypoints = np.zeros((2, 3, 3))
    keypoints[0] = [[10, 20, 1], [30, 60, 0.5], [500, 500, 0]]
    center, size = box_from_keypoints(keypoints)
    np.testing.assert_allclose(center[0], [20, 40])
    assert size[0] == pytest.approx(48.0) and size[1] == 0 and np.isnan(center[1]).all()


# --------------------------------------------------------------------------- EMDB


def test_emdb_pickle_reads_field_by_field_and_subset_1(tmp_path):
    payload = _emdb_payload()
    path = _write_emdb(tmp_path / "EMDB", payload)
    _write_emdb(tmp_path / "EMDB", _emdb_payload("P0_09_outdoor_walk", emdb1=False))
    seq = load_emdb_sequence(path)
    assert (seq.name, seq.subject, seq.gender, seq.emdb1, seq.emdb2, seq.num_frames, seq.width, seq.height) == (
        "P8_69_outdoor_cartwheel", "P8", "female", True, False, 5, 1440, 1920)
    smpl = payload["smpl"]
    np.testing.assert_array_equal(seq.poses, np.concatenate([smpl["poses_root"], smpl["poses_body"]], axis=1))
    np.testing.assert_array_equal(seq.betas, smpl["betas"])
    np.testing.assert_array_equal(seq.trans, smpl["trans"])
    np.testing.assert_array_equal(seq.intrinsics, payload["camera"]["intrinsics"])
    np.testing.assert_array_equal(seq.extrinsics, payload["camera"]["extrinsics"])
    np.testing.assert_array_equal(seq.keypoints_2d[..., :2], payload["kp2d"])
    assert (seq.keypoints_2d[..., 2] == 1).all()
    np.testing.assert_array_equal(seq.bboxes, payload["bboxes"]["bboxes"])
    assert seq.good_frames.tolist() == [True, False, True, True, True]
    assert seq.bbox_valid.tolist() == [True, False, True, False, True]
    assert seq.image_paths[4] == "P8/69_outdoor_cartwheel/images/00004.jpg"
    assert [s.name for s in iter_emdb(tmp_path / "EMDB")] == ["P8_69_outdoor_cartwheel"]
    assert [s.name for s in iter_emdb(tmp_path / "EMDB", subset=None)] == ["P0_09_outdoor_walk", "P8_69_outdoor_cartwheel"]

    pelvis = np.array([0.01, -0.2, 0.03])
    frames = emdb_frames(seq, lambda betas, gender: pelvis)
    assert frames.frame.tolist() == [0, 2, 4] and frames.keypoint_names == EMDB_KEYPOINT_NAMES
    for row, t in enumerate(frames.frame):
        extrinsics = seq.extrinsics[t]
        # the root joint sits at pelvis + trans: in the camera it is R (pelvis + t_w) + t = pelvis + t_c
        np.testing.assert_allclose(pelvis + frames.trans[row], extrinsics[:3, :3] @ (pelvis + seq.trans[t]) + extrinsics[:3, 3])
        np.testing.assert_allclose(axis_angle_to_matrix_np(frames.pose[row, :3]),
                                   extrinsics[:3, :3] @ axis_angle_to_matrix_np(seq.poses[t, :3]), atol=1e-9)
    box = seq.bboxes[2]
    np.testing.assert_allclose(frames.center[1], [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    assert frames.box_size[1] == pytest.approx(1.2 * max(box[2] - box[0], box[3] - box[1]))


# --------------------------------------------------------------------------- H36M


def test_h36m_spin_npz_reads_field_by_field_and_protocol_2(tmp_path):
    arrays = _h36m_spin_arrays()
    path = tmp_path / "h36m_valid_protocol2.npz"
    np.savez(path, **arrays)
    data = load_h36m_npz(path)
    assert data.layout == "spin" and len(data) == 6 and data.image_paths == tuple(_H36M_NAMES)
    assert data.subject.tolist() == [9, 9, 11, 9, 1, 11]
    assert data.camera[3] == "54138969" and data.action[2] == "Sitting_Down_2"
    assert data.frame_number.tolist() == [1, 6, 11, 1, 1, 3]
    np.testing.assert_array_equal(data.center, arrays["center"])
    np.testing.assert_allclose(data.box_size, 200 * arrays["scale"])
    np.testing.assert_array_equal(data.joints_3d, arrays["S"])
    np.testing.assert_array_equal(data.keypoints_2d, arrays["part"])
    np.testing.assert_array_equal(data.pose, arrays["pose"])
    np.testing.assert_array_equal(data.betas, arrays["shape"])
    assert data.has_smpl.all()
    assert protocol2_mask(data).tolist() == [True, True, True, False, False, False]
    frames = h36m_frames(data)
    assert frames.trans is None and frames.intrinsics is None and frames.keypoint_names == SPIN24_KEYPOINT_NAMES
    assert frames.sequence[2] == "S11_Sitting_Down_2.60457274" and frames.frame.tolist()[:3] == [0, 5, 10]
    assert [SPIN24_KEYPOINT_NAMES[i] for i in EVAL14_INDICES][-2:] == ["neck_lsp", "head_h36m"]
    # SPIN's own validation file has only imgname, center, scale and S
    np.savez(tmp_path / "minimal.npz", **{k: arrays[k] for k in ("imgname", "center", "scale", "S")})
    minimal = load_h36m_npz(tmp_path / "minimal.npz")
    assert not minimal.has_smpl.any() and not minimal.keypoints_2d.any() and minimal.joints_3d.any()


def test_h36m_prohmr_npz_layout(tmp_path):
    arrays = _h36m_spin_arrays()
    path = tmp_path / "h36m_val_p2.npz"
    n = len(_H36M_NAMES)
    np.savez(path, imgname=arrays["imgname"], center=arrays["center"], scale=200 * arrays["scale"],
             extra_keypoints_2d=arrays["part"][:, :19], extra_keypoints_3d=arrays["S"][:, :19],
             body_keypoints_2d=np.zeros((n, 25, 3)), body_pose=arrays["pose"], has_body_pose=np.ones(n),
             betas=arrays["shape"], has_betas=np.r_[np.ones(n - 1), 0.0])
    data = load_h36m_npz(path)
    assert data.layout == "prohmr"
    np.testing.assert_allclose(data.box_size, 200 * arrays["scale"])
    np.testing.assert_array_equal(data.keypoints_2d, arrays["part"])
    np.testing.assert_array_equal(data.joints_3d, arrays["S"])
    assert data.has_smpl.tolist() == [True] * (n - 1) + [False]
    np.savez(path, imgname=arrays["imgname"], center=arrays["center"], scale=np.stack([arrays["scale"]] * 2, 1),
             extra_keypoints_2d=arrays["part"][:, :19])
    np.testing.assert_allclose(load_h36m_npz(path).box_size, arrays["scale"])


# --------------------------------------------------------------------------- refusals


def _one_line(error: pytest.ExceptionInfo, name: str) -> str:
    message = str(error.value)
    assert "\n" not in message and name in message, message
    return message


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("posix", "system"),
                                         ("subprocess", "check_output")])
def test_malicious_pickles_are_refused_before_running(tmp_path, module, name):
    marker = tmp_path / "pwned"
    evil = _Global(module, name, f"touch {marker}")
    payload = _threedpw_payload()
    payload["poses"] = [evil, payload["poses"][1]]
    path = _write_3dpw(tmp_path / "3DPW", payload, name="evil_00")
    with pytest.raises(ArtifactError, match=f"refusing to unpickle '{module}.{name}'") as error:
        load_3dpw_sequence(path)
    assert "numpy arrays and plain Python containers" in _one_line(error, "evil_00.pkl")
    emdb = _emdb_payload()
    emdb["smpl"]["betas"] = evil
    path = tmp_path / "P8_69_outdoor_cartwheel_data.pkl"
    path.write_bytes(_py2_pickle(emdb))
    with pytest.raises(ArtifactError, match=f"refusing to unpickle '{module}.{name}'") as error:
        load_emdb_sequence(path)
    _one_line(error, "P8_69_outdoor_cartwheel_data.pkl")
    assert not marker.exists()


def test_sparse_and_chumpy_globals_stay_refused_for_datasets(tmp_path):
    path = tmp_path / "sparse.pkl"
    path.write_bytes(_py2_pickle({"sequence": _Global("scipy.sparse.csc", "csc_matrix", "x")}))
    with pytest.raises(ArtifactError, match="refusing to unpickle 'scipy.sparse.csc.csc_matrix'") as error:
        load_3dpw_sequence(path)
    _one_line(error, "sparse.pkl")
    path.write_bytes(_py2_pickle({"sequence": _Global("copy_reg", "_reconstructor", "x")}))
    with pytest.raises(ArtifactError, match="refusing to unpickle 'copy_reg._reconstructor'"):
        load_3dpw_sequence(path)


def _without(payload: dict, key: str) -> dict:
    payload = dict(payload)
    if "." in key:
        outer, inner = key.split(".")
        payload[outer] = {k: v for k, v in payload[outer].items() if k != inner}
    else:
        payload.pop(key)
    return payload


def test_3dpw_bad_files_name_the_file(tmp_path):
    good = _threedpw_payload()
    cases = [
        ("missing_cam", _without(good, "cam_poses"), "missing field 'cam_poses'"),
        ("missing_genders", _without(good, "genders"), "missing field 'genders'"),
        ("short_trans", {**good, "trans": [good["trans"][0][:5], good["trans"][1]]},
         r"field 'trans\[0\]' has shape \(5, 3\), expected \(6, 3\)"),
        ("flat_poses2d", {**good, "poses2d": [p.reshape(6, 54) for p in good["poses2d"]]},
         r"field 'poses2d\[0\]' has shape \(6, 54\), expected \(6, 3, 18\)"),
        ("one_gender", {**good, "genders": ["m"]}, "field 'genders' has 1 entries for 2 people"),
        ("bad_gender", {**good, "genders": ["m", "x"]}, r"field 'genders\[1\]' is 'x'"),
        ("nan_pose", {**good, "poses": [np.full((6, 72), np.nan), good["poses"][1]]}, r"field 'poses\[0\]' contains NaN"),
        ("bad_conf", {**good, "poses2d": [good["poses2d"][0] * 3, good["poses2d"][1]]}, "confidences outside"),
        ("bad_K", {**good, "cam_intrinsics": np.eye(4)}, r"field 'cam_intrinsics' has shape \(4, 4\)"),
        ("path_name", {**good, "sequence": "../etc"}, "field 'sequence' is not a plain folder name"),
    ]
    for name, payload, message in cases:
        path = _write_3dpw(tmp_path, payload, name=name)
        with pytest.raises(ArtifactError, match=message) as error:
            load_3dpw_sequence(path)
        _one_line(error, f"{name}.pkl")
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(_py2_pickle(good)[:700])
    with pytest.raises(ArtifactError, match="cannot read as pickle") as error:
        load_3dpw_sequence(truncated)
    _one_line(error, "truncated.pkl")
    with pytest.raises(ArtifactError, match="absent.pkl: file not found"):
        load_3dpw_sequence(tmp_path / "absent.pkl")
    listed = tmp_path / "list.pkl"
    listed.write_bytes(_py2_pickle([1, 2]))
    with pytest.raises(ArtifactError, match="list.pkl: expected a pickled dict"):
        load_3dpw_sequence(listed)


def test_emdb_bad_files_name_the_file(tmp_path):
    good = _emdb_payload()
    cases = [
        ("missing_smpl", _without(good, "smpl"), "missing field 'smpl.poses_root'"),
        ("missing_extrinsics", _without(good, "camera.extrinsics"), "missing field 'camera.extrinsics'"),
        ("missing_mask", _without(good, "good_frames_mask"), "missing field 'good_frames_mask'"),
        ("short_body", {**good, "smpl": {**good["smpl"], "poses_body": good["smpl"]["poses_body"][:, :63]}},
         r"field 'smpl.poses_body' has shape \(5, 63\), expected \(5, 69\)"),
        ("kp2d_conf", {**good, "kp2d": np.zeros((5, 24, 3))}, r"field 'kp2d' has shape \(5, 24, 3\)"),
        ("frames", {**good, "n_frames": 7}, r"field 'smpl.poses_root' has shape \(5, 3\), expected \(7, 3\)"),
        ("gender", {**good, "gender": "f"}, "field 'gender' is 'f'"),
        ("flag", {**good, "emdb1": "yes"}, "field 'emdb1' is str, expected a bool"),
        ("index", {**good, "bboxes": {**good["bboxes"], "invalid_idxs": np.array([9])}}, "indexes frames outside"),
    ]
    for name, payload, message in cases:
        path = tmp_path / f"{name}_data.pkl"
        path.write_bytes(pickle.dumps(payload, protocol=4))
        with pytest.raises(ArtifactError, match=message) as error:
            load_emdb_sequence(path)
        _one_line(error, f"{name}_data.pkl")
    truncated = tmp_path / "truncated_data.pkl"
    truncated.write_bytes(pickle.dumps(good, protocol=4)[:-40])
    with pytest.raises(ArtifactError, match="cannot read as pickle") as error:
        load_emdb_sequence(truncated)
    _one_line(error, "truncated_data.pkl")
    with pytest.raises(ArtifactError, match="EMDB subset 3"):
        list(iter_emdb(tmp_path, subset=3))


def test_h36m_bad_files_name_the_file(tmp_path):
    good = _h36m_spin_arrays()
    cases = [
        ("no_center", {k: v for k, v in good.items() if k != "center"}, "missing field 'center'"),
        ("short_S", {**good, "S": good["S"][:, :17]}, r"field 'S' has shape \(6, 17, 4\), expected \(6, 24, 4\)"),
        ("pose_only", {k: v for k, v in good.items() if k != "shape"}, "has 'pose' without 'shape'"),
        ("bad_name", {**good, "imgname": np.array(["images/frame_0001.jpg"] + _H36M_NAMES[1:])}, r"imgname\[0\]"),
        ("absolute", {**good, "imgname": np.array(["/data/" + _H36M_NAMES[0]] + _H36M_NAMES[1:])}, "not a relative"),
        ("nan", {**good, "center": np.full((6, 2), np.nan)}, "field 'center' contains NaN"),
        ("zero_scale", {**good, "scale": np.zeros(6)}, "field 'scale' must be > 0"),
    ]
    for name, arrays, message in cases:
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ArtifactError, match=message) as error:
            load_h36m_npz(path)
        _one_line(error, f"{name}.npz")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**good, "imgname": np.array(_H36M_NAMES, dtype=object)})
    with pytest.raises(ArtifactError, match="cannot read as NPZ") as error:
        load_h36m_npz(pickled)
    _one_line(error, "pickled.npz")
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, **good)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ArtifactError, match="cannot read as NPZ") as error:
        load_h36m_npz(truncated)
    _one_line(error, "truncated.npz")
