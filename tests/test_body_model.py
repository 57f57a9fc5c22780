"""The embedded SMPL-format body model and its loader: conventions, shape space, posing, file checks."""

from __future__ import annotations

import contextlib
import pickle
import pickletools
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from humandiff.body import (
    DEFAULT_BODY_MODEL,
    LANDMARK_NAMES,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    load_body_arrays,
    load_body_model,
    posed_body,
    posed_joints,
    rest_joints,
)
from humandiff.io import ArtifactError
from script_loader import load_script

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return load_body_arrays(DEFAULT_BODY_MODEL)


@pytest.fixture(scope="module")
def model():
    return load_body_model()


@pytest.fixture(scope="module")
def model64():
    return load_body_model().double()


def _pose(batch: int = 1, dtype=torch.float32, **joints: tuple[float, float, float]) -> dict[str, torch.Tensor]:
    """posed_body inputs: zero pose except the named joints' axis-angle rotations."""
    body_pose = torch.zeros(batch, 69, dtype=dtype)
    for name, rotation in joints.items():
        body_pose[:, 3 * (J[name] - 1) : 3 * J[name]] = torch.tensor(rotation, dtype=dtype)
    zeros = torch.zeros(batch, 3, dtype=dtype)
    return {"global_orient": zeros, "body_pose": body_pose, "betas": torch.zeros(batch, 10, dtype=dtype), "transl": zeros}


def _winding_numbers(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Generalised winding number (P,) of each point w.r.t. the triangle mesh: 1 inside, 0 outside."""
    a, b, c = (vertices[faces[:, k]][None] - points[:, None] for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pti,pti->pt", a, np.cross(b, c))
    dot = lambda x, y: np.einsum("pti,pti->pt", x, y)  # noqa: E731
    denominator = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb
    return (2.0 * np.arctan2(det, denominator)).sum(1) / (4.0 * np.pi)


# --- the embedded asset -------------------------------------------------------------------------


def test_embedded_file_is_small_and_well_formed(arrays):
    assert DEFAULT_BODY_MODEL.stat().st_size < 1_000_000
    num_vertices = arrays["v_template"].shape[0]
    assert arrays["shapedirs"].shape == (num_vertices, 3, 10)
    assert arrays["posedirs"].shape == (num_vertices, 3, 207) and not arrays["posedirs"].any()
    regressor, weights = arrays["J_regressor"], arrays["weights"]
    assert regressor.min() >= 0 and np.allclose(regressor.sum(1), 1.0, atol=1e-5)
    assert ((regressor > 0).sum(1) <= 40).all()  # sparse
    assert weights.min() >= 0 and np.allclose(weights.sum(1), 1.0, atol=1e-5)
    assert arrays["f"].min() == 0 and arrays["f"].max() == num_vertices - 1
    assert tuple(arrays["kintree_table"][0]) == SMPL_PARENTS
    assert arrays["landmark_vertices"].shape == (len(LANDMARK_NAMES),)


def test_mesh_is_closed_and_every_joint_lies_inside_the_body(arrays):
    vertices, faces = arrays["v_template"].astype(np.float64), arrays["f"]
    far_and_inside = _winding_numbers(np.array([[0.0, 0.0, 2.0], [0.0, 0.2, 0.0]]), vertices, faces)
    np.testing.assert_allclose(far_and_inside, [0.0, 1.0], atol=0.02)  # closed, faces wound outwards
    for direction in range(10):
        for sign in (-2.0, 2.0):
            shaped = vertices + sign * arrays["shapedirs"][:, :, direction]
            winding = _winding_numbers(arrays["J_regressor"] @ shaped, shaped, faces)
            assert winding.min() > 0.9, (direction, sign, SMPL_JOINT_NAMES[int(winding.argmin())])


def test_kinematic_tree_matches_smpl(model):
    assert len(SMPL_JOINT_NAMES) == 24 and SMPL_JOINT_NAMES[0] == "pelvis" and SMPL_JOINT_NAMES[23] == "right_hand"
    assert tuple(model.parents.tolist()) == SMPL_PARENTS
    assert model.num_betas == 10 and not list(model.parameters())


def test_rest_pose_is_smpl_t_pose_facing_plus_z(arrays, model):
    joints = rest_joints(model)
    x, y, z = joints.T
    assert abs(joints[J["pelvis"]]).max() < 1e-3  # the mean body's pelvis is the origin
    assert x[J["left_wrist"]] > 0.5 and x[J["right_wrist"]] < -0.5  # left arm towards +x
    for side in ("left", "right"):
        arm = [J[f"{side}_{part}"] for part in ("shoulder", "elbow", "wrist", "hand")]
        assert np.ptp(y[arm]) < 0.03 and np.ptp(z[arm]) < 0.05  # arms straight out, horizontal
        leg = [J[f"{side}_{part}"] for part in ("hip", "knee", "ankle")]
        assert np.ptp(x[leg]) < 0.02 and np.ptp(z[leg]) < 0.03  # legs straight down
        assert z[J[f"{side}_foot"]] > z[J[f"{side}_ankle"]] + 0.08  # toes point forwards (+z)
    assert y[J["head"]] > y[J["neck"]] > y[J["spine3"]] > y[J["spine2"]] > y[J["spine1"]] > y[J["pelvis"]]
    assert set(np.argsort(y)[:2]) == {J["left_foot"], J["right_foot"]}  # feet lowest
    nose = arrays["v_template"][arrays["landmark_vertices"][LANDMARK_NAMES.index("nose")]]
    assert nose[2] > z[J["head"]] + 0.05 and abs(nose[0]) < 0.01  # the face looks towards +z
    # Palms down, thumbs forwards: the flat hand spreads front-to-back and is thin top-to-bottom.
    hand = arrays["weights"][:, J["left_hand"]] + arrays["weights"][:, J["left_wrist"]] > 0.5
    extent = np.ptp(arrays["v_template"][hand], axis=0)
    assert extent[2] > 1.5 * extent[1]


def test_smpl_pose_conventions(model):
    """SMPL's axes: hip flexion is -x, knee flexion +x, left elbow flexion -y, arms down by -z/+z."""

    def joints(**rotations) -> np.ndarray:
        return posed_joints(model, **_pose(**rotations))[0].numpy()

    rest = joints()
    lifted = joints(left_hip=(-1.2, 0.0, 0.0))
    assert lifted[J["left_knee"], 2] > rest[J["left_knee"], 2] + 0.2  # thigh swings forwards
    bent = joints(left_knee=(1.2, 0.0, 0.0))
    assert bent[J["left_ankle"], 2] < rest[J["left_ankle"], 2] - 0.2  # shin swings backwards
    arms_down = joints(left_shoulder=(0.0, 0.0, -1.5), right_shoulder=(0.0, 0.0, 1.5))
    for side in ("left", "right"):
        assert arms_down[J[f"{side}_wrist"], 1] < rest[J[f"{side}_shoulder"], 1] - 0.3
    elbow = joints(left_elbow=(0.0, -1.5, 0.0))
    assert elbow[J["left_wrist"], 2] > rest[J["left_wrist"], 2] + 0.15  # forearm swings forwards
    forward = joints(spine2=(0.5, 0.0, 0.0))
    assert forward[J["head"], 2] > rest[J["head"], 2] + 0.1  # spine flexion bends the trunk forwards
    turned = posed_joints(model, **{**_pose(), "global_orient": torch.tensor([[0.0, np.pi / 2, 0.0]])})[0].numpy()
    assert turned[J["left_foot"], 0] > turned[J["left_ankle"], 0] + 0.08  # yaw +90 deg: facing +x


# --- shape space --------------------------------------------------------------------------------


def _statures_and_waists(model, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stature, waist width and waist depth (each (N,), metres) at the zero pose."""
    inputs = _pose(len(betas))
    vertices, joints = posed_body(model, **{**inputs, "betas": torch.as_tensor(betas, dtype=torch.float32)})
    vertices, joints = vertices.numpy(), joints.numpy()
    stature = vertices[..., 1].max(1) - vertices[..., 1].min(1)
    widths, depths = [], []
    for v, j in zip(vertices, joints):
        band = (np.abs(v[:, 1] - j[J["spine1"], 1]) < 0.03) & (np.abs(v[:, 0]) < 0.3)
        widths.append(np.ptp(v[band, 0]))
        depths.append(np.ptp(v[band, 2]))
    return stature, np.array(widths), np.array(depths)


def test_shape_directions_change_stature_and_girth(model):
    betas = np.zeros((20, 10), np.float32)
    for k in range(10):
        betas[2 * k, k], betas[2 * k + 1, k] = -2.0, 2.0
    stature, width, depth = (values[1::2] - values[0::2] for values in _statures_and_waists(model, betas))
    assert np.abs(stature).max() > 0.15  # some direction changes stature by many centimetres
    assert stature[0] > 0.15  # beta_0 > 0 is a taller body
    girth_change = np.maximum(np.abs(width), np.abs(depth))
    assert girth_change.max() > 0.04  # some direction widens or deepens the waist by > 4 cm
    # ... and not only by scaling the whole body: the waist grows much more than uniform scaling would.
    assert (girth_change - np.abs(stature) * 0.3 > 0.03).any()


def test_unit_betas_span_the_adult_population(model):
    betas = np.random.default_rng(0).standard_normal((300, 10)).astype(np.float32)
    stature, _, _ = _statures_and_waists(model, betas)
    assert 1.6 < stature.mean() < 1.8 and 0.07 < stature.std() < 0.13


def test_regressor_gives_the_zero_pose_joints_for_any_shape(model, arrays):
    betas = torch.as_tensor(np.random.default_rng(1).standard_normal((4, 10)), dtype=torch.float32)
    vertices, joints = posed_body(model, **{**_pose(4), "betas": betas})
    regressed = torch.einsum("jv,bvc->bjc", torch.as_tensor(arrays["J_regressor"]), vertices)
    torch.testing.assert_close(joints, regressed, atol=1e-5, rtol=0)
    for b in range(4):
        np.testing.assert_allclose(rest_joints(model, betas[b].numpy()), joints[b].numpy(), atol=1e-5)
    template = posed_body(model, **_pose())
    np.testing.assert_allclose(template[0][0].numpy(), arrays["v_template"], atol=1e-6)
    np.testing.assert_allclose(template[1][0].numpy(), arrays["J_regressor"] @ arrays["v_template"], atol=1e-5)


# --- posing ---------------------------------------------------------------------------------------


def test_posed_body_matches_smplx_forward_for_any_batch(model64):
    rng = np.random.default_rng(2)
    for batch in (1, 7, 300):  # 300 > the default chunk of 256
        inputs = {
            "global_orient": torch.as_tensor(rng.normal(0, 1.0, (batch, 3))),
            "body_pose": torch.as_tensor(rng.normal(0, 0.5, (batch, 69))),
            "betas": torch.as_tensor(rng.normal(0, 1.0, (batch, 10))),
            "transl": torch.as_tensor(rng.normal(0, 1.0, (batch, 3))),
        }
        vertices, joints = posed_body(model64, **inputs)
        reference = model64(**inputs)
        assert vertices.shape == (batch, model64.v_template.shape[0], 3) and joints.shape == (batch, 24, 3)
        # smplx adds 1e-8 to every rotation vector before Rodrigues, hence the tolerance.
        torch.testing.assert_close(vertices, reference.vertices, atol=1e-6, rtol=0)
        torch.testing.assert_close(joints, reference.joints[:, :24], atol=1e-6, rtol=0)
        torch.testing.assert_close(posed_joints(model64, **inputs), joints, atol=1e-12, rtol=0)
    one_shape = {**inputs, "betas": inputs["betas"][:1]}
    torch.testing.assert_close(
        posed_body(model64, **one_shape)[0], posed_body(model64, **{**one_shape, "betas": inputs["betas"][:1].expand(300, -1)})[0]
    )


def test_pose_correctives_are_applied_like_smplx(arrays, tmp_path):
    path = tmp_path / "with_posedirs.npz"
    rng = np.random.default_rng(3)
    np.savez(path, **{**arrays, "posedirs": rng.normal(0, 0.01, arrays["posedirs"].shape).astype(np.float32)})
    model = load_body_model(path).double()
    inputs = {**_pose(5, torch.float64), "body_pose": torch.as_tensor(rng.normal(0, 0.4, (5, 69)))}
    vertices, _ = posed_body(model, **inputs, chunk_size=2)
    torch.testing.assert_close(vertices, model(**inputs).vertices, atol=1e-6, rtol=0)
    assert (vertices - posed_body(load_body_model().double(), **inputs)[0]).abs().max() > 1e-3


def test_posed_body_is_differentiable(model64):
    rng = np.random.default_rng(4)
    inputs = {
        "global_orient": torch.as_tensor(rng.normal(0, 0.3, (2, 3))),
        "body_pose": torch.as_tensor(rng.normal(0, 0.3, (2, 69))),
        "betas": torch.as_tensor(rng.normal(0, 1.0, (2, 10))),
        "transl": torch.as_tensor(rng.normal(0, 0.3, (2, 3))),
    }
    probe_vertices = torch.as_tensor(rng.normal(size=(2, model64.v_template.shape[0], 3)))
    probe_joints = torch.as_tensor(rng.normal(size=(2, 24, 3)))

    def loss(values: dict[str, torch.Tensor]) -> torch.Tensor:
        vertices, joints = posed_body(model64, **values)
        return (vertices * probe_vertices).sum() + (joints * probe_joints).sum()

    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    loss(leaves).backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0, name
    step = 1e-6
    for name, index in (("body_pose", (0, 3 * (J["left_elbow"] - 1) + 1)), ("body_pose", (1, 3 * (J["right_knee"] - 1))),
                        ("global_orient", (0, 2)), ("betas", (1, 0))):  # fmt: skip
        plus, minus = dict(inputs), dict(inputs)
        plus[name], minus[name] = inputs[name].clone(), inputs[name].clone()
        plus[name][index] += step
        minus[name][index] -= step
        numeric = (loss(plus) - loss(minus)) / (2 * step)
        assert torch.isclose(leaves[name].grad[index], numeric, rtol=1e-5, atol=1e-6), (name, index)


def test_posed_body_rejects_bad_inputs(model):
    good = _pose(3)
    with pytest.raises(ArtifactError, match=r"'body_pose' has shape \(3, 72\), expected \(B, 69\)"):
        posed_body(model, **{**good, "body_pose": torch.zeros(3, 72)})
    with pytest.raises(ArtifactError, match="'transl' has batch 2"):
        posed_body(model, **{**good, "transl": torch.zeros(2, 3)})
    with pytest.raises(ArtifactError, match="'betas' has batch 2"):
        posed_body(model, **{**good, "betas": torch.zeros(2, 10)})
    with pytest.raises(ArtifactError, match="11 betas given"):
        rest_joints(model, np.zeros(11))


# --- loading official-format files ------------------------------------------------------------------


def _official_style_dict(arrays: dict[str, np.ndarray]) -> dict:
    """What a chumpy-free conversion of the official SMPL pickle holds: plain arrays, a sparse
    regressor, a uint32 kintree with 4294967295 as the root's parent, and a few extra fields."""
    kintree = arrays["kintree_table"].astype(np.uint32)
    kintree[0, 0] = 4294967295
    return {
        "v_template": arrays["v_template"].astype(np.float64),
        "shapedirs": arrays["shapedirs"].astype(np.float64),
        "posedirs": np.zeros_like(arrays["posedirs"], dtype=np.float64),
        "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"].astype(np.float64)),
        "weights": arrays["weights"].astype(np.float64),
        "kintree_table": kintree,
        "f": arrays["f"].astype(np.uint32),
        "J": arrays["J_regressor"] @ arrays["v_template"],
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "pose_training_info": {"nsubj": 0},
    }


def _as_python2_pickle(payload: dict) -> bytes:
    """Rewrite a protocol-3 pickle the way Python 2 wrote it: byte and text strings become py2
    ``str`` (which only ``encoding='latin1'`` reads back) and numpy/scipy live at their old paths."""
    data = bytearray(pickle.dumps(payload, protocol=3))
    data[1] = 2
    py2_opcode = {b"B"[0]: b"T"[0], b"C"[0]: b"U"[0], b"X"[0]: b"T"[0]}  # same length-prefixed layouts
    for opcode, _, position in pickletools.genops(bytes(data)):
        if opcode.name in ("BINBYTES", "SHORT_BINBYTES", "BINUNICODE"):
            data[position] = py2_opcode[data[position]]
    data = bytes(data).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return data.replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n")


def test_loader_reads_official_format_pickles(arrays, tmp_path):
    payload = _official_style_dict(arrays)
    modern = tmp_path / "SMPL_NEUTRAL.pkl"
    modern.write_bytes(pickle.dumps(payload, protocol=4))
    python2 = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    python2.write_bytes(_as_python2_pickle(payload))
    with pytest.raises(UnicodeDecodeError):  # the rewrite really needs latin1
        pickle.loads(python2.read_bytes())
    for path in (modern, python2):
        loaded = load_body_arrays(path)
        assert loaded["kintree_table"][0, 0] == -1 and tuple(loaded["kintree_table"][0]) == SMPL_PARENTS
        assert loaded["J_regressor"].dtype == np.float32 and isinstance(loaded["J_regressor"], np.ndarray)
        np.testing.assert_allclose(loaded["J_regressor"], arrays["J_regressor"], atol=1e-7)
        np.testing.assert_array_equal(loaded["f"], arrays["f"])
        assert "landmark_vertices" not in loaded
        model = load_body_model(path)
        vertices, joints = posed_body(model, **_pose(2, left_elbow=(0.0, -1.0, 0.0)))
        reference = posed_body(load_body_model(), **_pose(2, left_elbow=(0.0, -1.0, 0.0)))
        torch.testing.assert_close(vertices, reference[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(joints, reference[1], atol=1e-5, rtol=0)


def test_loader_reads_npz_and_fills_missing_posedirs(arrays, tmp_path):
    path = tmp_path / "user_model.npz"
    official = _official_style_dict(arrays)
    official["J_regressor"] = official["J_regressor"].toarray()
    np.savez(path, **{k: v for k, v in official.items() if k not in ("posedirs", "pose_training_info")})
    loaded = load_body_arrays(path)
    assert loaded["posedirs"].shape == (arrays["v_template"].shape[0], 3, 207) and not loaded["posedirs"].any()
    assert tuple(loaded["kintree_table"][0]) == SMPL_PARENTS
    assert load_body_model(path, num_betas=4).num_betas == 4
    with pytest.raises(ArtifactError, match="user_model.npz: num_betas=11"):
        load_body_model(path, num_betas=11)


def _write_npz(path: Path, arrays: dict[str, np.ndarray], **changes) -> Path:
    np.savez(path, **{k: v for k, v in {**arrays, **changes}.items() if v is not None})
    return path


def test_loader_rejects_bad_files_naming_file_and_field(arrays, tmp_path):
    with pytest.raises(ArtifactError, match="absent.npz: body model file not found"):
        load_body_model(tmp_path / "absent.npz")
    cases = [
        ({"weights": None}, "missing field 'weights'"),
        ({"J_regressor": arrays["J_regressor"][:23]}, r"field 'J_regressor' has shape \(23, 1229\), expected \(24, 1229\)"),
        ({"shapedirs": arrays["shapedirs"][:-1]}, "field 'shapedirs' has shape"),
        ({"v_template": np.where(np.arange(1229)[:, None] == 5, np.nan, arrays["v_template"])}, "field 'v_template' contains NaN"),
        ({"kintree_table": np.stack([np.r_[-1, np.zeros(23, int)], np.arange(24)])}, "field 'kintree_table' is not SMPL's"),
        ({"f": arrays["f"] + 5}, "field 'f' indexes vertices outside"),
        ({"f": arrays["f"].astype(np.float32)}, "field 'f' must hold integers"),
    ]
    for i, (changes, message) in enumerate(cases):
        path = _write_npz(tmp_path / f"bad_{i}.npz", arrays, **changes)
        with pytest.raises(ArtifactError, match=f"bad_{i}.npz: {message}"):
            load_body_arrays(path)
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactError, match="garbage.npz: cannot read as NPZ"):
        load_body_arrays(tmp_path / "garbage.npz")
    (tmp_path / "truncated.pkl").write_bytes(pickle.dumps(_official_style_dict(arrays))[:1000])
    with pytest.raises(ArtifactError, match="truncated.pkl: cannot read as pickle"):
        load_body_arrays(tmp_path / "truncated.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ArtifactError, match="list.pkl: expected a pickled dict"):
        load_body_arrays(tmp_path / "list.pkl")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_loader_refuses_malicious_and_chumpy_pickles(arrays, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({**_official_style_dict(arrays), "v_template": _Exploit(marker)}, protocol=2))
    with pytest.raises(ArtifactError, match=r"evil.pkl: refusing to unpickle '(posix|nt|os)\.system'"):
        load_body_arrays(path)
    assert not marker.exists()
    path = tmp_path / "builtin.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1q\x01\x85q\x02Rq\x03.")
    with pytest.raises(ArtifactError, match=r"builtin.pkl: refusing to unpickle 'builtins.eval'"):
        load_body_arrays(path)
    # a chumpy object whose state holds no array, where an array is needed: one line naming file and field
    path = tmp_path / "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"
    with _fake_chumpy() as (ch, ops):
        payload = {**_official_style_dict(arrays), "v_template": ops.add(ch.Ch(arrays["v_template"]), ch.Ch(0.0))}
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ArtifactError, match=r"basicmodel_m_lbs_10_207_0_v1.0.0.pkl: field 'v_template' is a chumpy "
                                            r"chumpy.ch_ops.add without an array"):
        load_body_arrays(path)
    # a chumpy-looking name outside the stand-in does not open the door to other globals
    path = tmp_path / "mixed.pkl"
    path.write_bytes(b"\x80\x02cchumpy.ch\nCh\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00xcos\nsystem\nq\x03sb.")
    with pytest.raises(ArtifactError, match=r"mixed.pkl: refusing to unpickle 'os.system'"):
        load_body_arrays(path)


# --- official SMPL files as downloaded: pickles of chumpy objects ---------------------------------


@contextlib.contextmanager
def _fake_chumpy():
    """Classes named as chumpy's (``chumpy.ch.Ch``, ``chumpy.ch_ops.add``) that pickle as chumpy does:
    ``__getstate__`` returns the object's ``__dict__``, a Ch's array under ``x``. The fake modules live in
    sys.modules only while the fixture is written."""
    import types

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty = False

        def __getstate__(self):
            return dict(self.__dict__)

    class add:  # noqa: N801 (chumpy's name)
        def __init__(self, a, b):
            self.a, self.b = a, b

        def __getstate__(self):
            return dict(self.__dict__)

    names = {"chumpy": None, "chumpy.ch": Ch, "chumpy.ch_ops": add}
    saved = {name: sys.modules.get(name) for name in names}
    modules = {}
    for name, cls in names.items():
        module = types.ModuleType(name)
        if cls is not None:
            cls.__module__, cls.__qualname__ = name, cls.__name__
            setattr(module, cls.__name__, cls)
        modules[name] = sys.modules[name] = module
    try:
        yield modules["chumpy.ch"], modules["chumpy.ch_ops"]
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _chumpy_style_dict(arrays: dict[str, np.ndarray], ch, ops) -> dict:
    """The official SMPL pickle's content: chumpy arrays, a sparse regressor, a chumpy operation for J."""
    payload = _official_style_dict(arrays)
    for key in ("v_template", "shapedirs", "posedirs", "weights"):
        payload[key] = ch.Ch(payload[key])
    payload["J"] = ops.add(ch.Ch(payload["J"]), ch.Ch(np.zeros(3)))
    return payload


def test_official_chumpy_pickle_loads_as_downloaded(arrays, tmp_path):
    modern, python2 = tmp_path / "SMPL_NEUTRAL.pkl", tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    with _fake_chumpy() as (ch, ops):
        payload = _chumpy_style_dict(arrays, ch, ops)
        modern.write_bytes(pickle.dumps(payload, protocol=2))
        python2.write_bytes(_as_python2_pickle(payload))
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    assert b"chumpy.ch\nCh\n" in python2.read_bytes()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_official_style_dict(arrays), protocol=2))
    expected = load_body_arrays(plain)
    for path in (modern, python2):
        loaded = load_body_arrays(path)
        assert set(loaded) == set(expected)
        for key, value in expected.items():
            assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key
        vertices, _ = posed_body(load_body_model(path), **_pose(1, left_elbow=(0.0, -1.0, 0.0)))
        reference, _ = posed_body(load_body_model(plain), **_pose(1, left_elbow=(0.0, -1.0, 0.0)))
        torch.testing.assert_close(vertices, reference, atol=0, rtol=0)
    assert "chumpy" not in sys.modules  # the loader never imports chumpy


def _smpl_topology_arrays(seed: int = 0) -> dict:
    """Random but well-formed arrays of the official topology (6,890 vertices, 13,776 faces)."""
    rng = np.random.default_rng(seed)
    vertices = 6890
    weights = rng.random((vertices, 24))
    regressor = scipy.sparse.random(24, vertices, density=0.002, random_state=seed, format="csc") + scipy.sparse.csc_matrix(
        (np.ones(24), (np.arange(24), np.arange(24) * 200)), shape=(24, vertices))
    regressor = scipy.sparse.csc_matrix(regressor.multiply(1.0 / regressor.sum(1)))
    kintree = np.stack([np.array(SMPL_PARENTS), np.arange(24)]).astype(np.uint32)
    return {
        "v_template": rng.normal(scale=0.3, size=(vertices, 3)),
        "shapedirs": rng.normal(scale=0.01, size=(vertices, 3, 10)),
        "posedirs": rng.normal(scale=0.001, size=(vertices, 3, 207)),
        "J_regressor": regressor,
        "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": kintree,
        "f": rng.integers(0, vertices, size=(13776, 3)).astype(np.uint32),
        "bs_style": "lbs",
    }


def test_official_topology_model_through_the_loader(tmp_path):
    smpl = _smpl_topology_arrays()
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    with _fake_chumpy() as (ch, _):
        path.write_bytes(_as_python2_pickle({k: ch.Ch(v) if k in ("v_template", "shapedirs", "posedirs", "weights") else v
                                             for k, v in smpl.items()}))
    loaded = load_body_arrays(path)
    assert loaded["v_template"].shape == (6890, 3) and loaded["shapedirs"].shape == (6890, 3, 10)
    assert loaded["J_regressor"].shape == (24, 6890) and loaded["f"].shape == (13776, 3)
    model = load_body_model(path)
    vertices, joints = posed_body(model, **_pose(2))
    assert vertices.shape == (2, 6890, 3) and torch.isfinite(vertices).all()
    rest = smpl["J_regressor"] @ smpl["v_template"]
    np.testing.assert_allclose(rest_joints(model), rest, atol=1e-5)


# --- the conversion tool's numerical helpers (anny itself is not needed) ------------------------------


@pytest.fixture(scope="module")
def convert_tool():
    return load_script("tools", "convert_anny")


def test_tool_shares_the_loader_conventions(convert_tool):
    assert convert_tool.SMPL_JOINT_NAMES == SMPL_JOINT_NAMES and convert_tool.SMPL_PARENTS == SMPL_PARENTS
    assert convert_tool.LANDMARK_NAMES == LANDMARK_NAMES


def test_tool_rotation_helpers(convert_tool):
    rng = np.random.default_rng(5)
    a1, a2 = (torch.as_tensor(rng.normal(size=(6, 3))) for _ in range(2))
    b1, b2 = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    rotation = convert_tool.frame_rotation(a1, a2, b1, b2)
    eye = torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
    torch.testing.assert_close(rotation @ rotation.transpose(-1, -2), eye)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close((rotation @ a1[..., None])[..., 0], b1.expand(6, 3) * a1.norm(dim=-1, keepdim=True))
    minimal = convert_tool.minimal_rotation(a1, b1)
    torch.testing.assert_close((minimal @ a1[..., None])[..., 0], b1.expand(6, 3) * a1.norm(dim=-1, keepdim=True))
    twist = convert_tool._axis_angle(b1, torch.full((6,), 0.4, dtype=torch.float64))
    torch.testing.assert_close(convert_tool.twist_angle(twist, b1), torch.full((6,), np.rad2deg(0.4), dtype=torch.float64))


def test_tool_regressor_pca_and_reproducible_file(convert_tool, tmp_path):
    rng = np.random.default_rng(6)
    vertices = rng.normal(size=(60, 30, 3))
    truth = np.zeros((2, 30))
    truth[0, [1, 4, 7]], truth[1, [10, 20]] = [0.2, 0.5, 0.3], [0.5, 0.5]
    joints = np.einsum("jv,nvc->njc", truth, vertices)
    regressor = convert_tool.fit_joint_regressor(vertices, joints, [np.arange(15), np.arange(8, 30)])
    np.testing.assert_allclose(regressor, truth, atol=1e-6)
    # Two latent factors with std 3 and 1 along known directions: PCA finds them and their spread.
    directions = np.linalg.qr(rng.normal(size=(90, 2)))[0].T
    factors = rng.normal(size=(4000, 2)) * [3.0, 1.0]
    samples = (factors @ directions).reshape(4000, 30, 3) + 5.0
    mean, shapedirs, explained = convert_tool.shape_pca(samples, 2)
    np.testing.assert_allclose(mean, 5.0, atol=0.2)
    np.testing.assert_allclose(np.linalg.norm(shapedirs.reshape(90, 2), axis=0), [3.0, 1.0], rtol=0.05)
    np.testing.assert_allclose(explained, [0.9, 0.1], atol=0.02)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    for path in (first, second):
        convert_tool.save_npz_reproducibly(path, {"x": np.arange(5.0), "k": np.eye(2, dtype=np.int64)})
    assert first.read_bytes() == second.read_bytes()
    with np.load(first, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["x"], np.arange(5.0))
