"""Coarse-mesh hierarchy of a body model (the METRO family's) and the coarse joint regressor.

METRO, Mesh Graphormer, FastMETRO and HMDiff regress a coarse mesh and up-sample it: on SMPL
6890 -> 1723 -> 431 vertices with fixed sparse down- and up-sampling matrices (COMA, Ranjan et al.
2018). :func:`build_hierarchy` computes such a hierarchy from whatever mesh is loaded, never from
a hard-coded vertex count.

Conventions, written once:

- Levels: ``0`` is the given mesh (``V_0`` vertices, the body model's ``v_template`` and ``f``),
  ``1 .. L`` ever coarser (``V_1 > V_2 > ...``). Sizes are asked for as ratios of ``V_0`` (a float
  in (0, 1): ``ceil(ratio * V_0)`` vertices) or as counts (an int). The default ``(1/4, 1/16)``
  gives exactly SMPL's 6890 -> 1723 -> 431 (``ceil(6890 / 4) = 1723``, ``ceil(6890 / 16) = 431``).
- Decimation (:func:`coarsen`): quadric-error (Garland & Heckbert) half-edge collapses, the
  collapsed vertex merging into one of its neighbours that stays where it is; one collapse sequence
  runs down to the coarsest size and each level is a snapshot of it, so every level's vertices are
  a subset of the finer levels' (``keep``) and its faces a valid closed (manifold) mesh: a collapse
  that breaks the link condition, flips a face or leaves a vertex of valence < 3 is refused.
- Down-sampling ``D_l`` (``V_l x V_{l-1}``) selects those vertices (one 1 per row), as COMA's.
- Up-sampling ``U_l`` (``V_{l-1} x V_l``): each vertex of the finer level is the barycentric
  combination of the closest triangle of level ``l`` at the template (rows sum to 1, at most 3
  non-zeros; a kept vertex maps to itself), as COMA's. So ``U_l D_l`` is exact on kept vertices and
  drops the removed vertices' offset from the coarse surface.
- Vertex arrays are ``(..., V, 3)``; :meth:`MeshHierarchy.down` / :meth:`MeshHierarchy.up` act on
  axis -2, take numpy arrays or torch tensors (differentiable) and return the same kind.

The coarse joint regressor (DAT's mesh-to-pose function f) is fitted, not derived:
:func:`fit_joint_regressor` solves least squares from the coarse vertices of posed bodies to the
body model's joints, each joint's weights non-negative and summing to 1 (so f commutes with
translations and rotations). :func:`fit_pose_to_mesh` is the reverse linear map (joints to coarse
vertices), used to turn a pose distribution into a mesh distribution (HMDiff's ``H_U`` ablation).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor

from humandiff.io.artifacts import ArtifactError, load_npz, save_npz

#: Ratios of the METRO family's SMPL hierarchy: 6890 -> 1723 -> 431.
METRO_RATIOS: tuple[float, float] = (0.25, 0.0625)
#: Smallest closed surface a decimation may reach (a tetrahedron).
MIN_VERTICES = 4
#: A collapse may turn a face's normal by at most this much (cosine of about 78 degrees).
MIN_NORMAL_COSINE = 0.2

ArrayLike = TypeVar("ArrayLike", np.ndarray, Tensor)


# --------------------------------------------------------------------------------- sizes
def resolve_sizes(num_vertices: int, sizes: Sequence[float | int]) -> tuple[int, ...]:
    """Vertex counts of the coarse levels: a float in (0, 1) is a ratio of ``num_vertices`` (rounded
    up), an int a count; they must decrease strictly, stay below ``num_vertices`` and reach no lower
    than :data:`MIN_VERTICES`."""
    if len(sizes) < 1:
        raise ArtifactError("mesh hierarchy: parameter 'sizes' must name at least one coarse level")
    counts = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
            raise ArtifactError(f"mesh hierarchy: parameter 'sizes' holds {size!r}, expected a ratio in (0, 1) or a count")
        if isinstance(size, (float, np.floating)):
            if not 0.0 < size < 1.0:
                raise ArtifactError(f"mesh hierarchy: parameter 'sizes' ratio {size} must lie in (0, 1)")
            count = math.ceil(float(size) * num_vertices - 1e-9)
        else:
            count = int(size)
        counts.append(count)
    for previous, count in zip((num_vertices,) + tuple(counts), counts):
        if not MIN_VERTICES <= count < previous:
            raise ArtifactError(f"mesh hierarchy: cannot coarsen a {num_vertices}-vertex mesh to sizes {counts}: "
                                f"each level needs between {MIN_VERTICES} and its finer level's count minus 1 vertices")
    return tuple(counts)


# --------------------------------------------------------------------------------- decimation
def _face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised normals (F, 3) (twice the area times the unit normal)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


def _vertex_quadrics(vertices: np.ndarray, faces: np.ndarray, boundary_weight: float) -> np.ndarray:
    """Area-weighted plane quadrics summed per vertex (V, 4, 4); boundary edges add a perpendicular plane."""
    normals = _face_normals(vertices, faces)
    doubled_area = np.linalg.norm(normals, axis=1)
    unit = normals / np.maximum(doubled_area, 1e-30)[:, None]
    planes = np.concatenate([unit, -(unit * vertices[faces[:, 0]]).sum(1, keepdims=True)], 1)
    face_quadrics = 0.5 * doubled_area[:, None, None] * planes[:, :, None] * planes[:, None, :]
    quadrics = np.zeros((len(vertices), 4, 4))
    for corner in range(3):
        np.add.at(quadrics, faces[:, corner], face_quadrics)
    # Boundary edges (one face): a plane through the edge, perpendicular to its face.
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    owner = np.tile(np.arange(len(faces)), 3)
    key = np.sort(edges, 1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    lone = counts[inverse.reshape(-1)] == 1
    if lone.any():
        a, b = vertices[edges[lone, 0]], vertices[edges[lone, 1]]
        side = np.cross(b - a, unit[owner[lone]])
        length = np.linalg.norm(side, axis=1)
        side = side / np.maximum(length, 1e-30)[:, None]
        planes = np.concatenate([side, -(side * a).sum(1, keepdims=True)], 1)
        extra = boundary_weight * (length**2)[:, None, None] * planes[:, :, None] * planes[:, None, :]
        np.add.at(quadrics, edges[lone, 0], extra)
        np.add.at(quadrics, edges[lone, 1], extra)
    return quadrics


class _Decimator:
    """Mutable state of one half-edge-collapse run (see :func:`coarsen`)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, boundary_weight: float) -> None:
        self.positions = vertices
        self.homogeneous = np.concatenate([vertices, np.ones((len(vertices), 1))], 1)
        self.quadrics = _vertex_quadrics(vertices, faces, boundary_weight)
        self.faces = faces.copy()
        self.face_alive = np.ones(len(faces), dtype=bool)
        self.alive = np.ones(len(vertices), dtype=bool)
        self.count = len(vertices)
        self.version = [0] * len(vertices)
        self.vertex_faces: list[set[int]] = [set() for _ in range(len(vertices))]
        self.neighbours: list[set[int]] = [set() for _ in range(len(vertices))]
        for index, (a, b, c) in enumerate(faces.tolist()):
            for u, v in ((a, b), (b, c), (c, a)):
                self.neighbours[u].add(v)
                self.neighbours[v].add(u)
            for u in (a, b, c):
                self.vertex_faces[u].add(index)
        self.heap: list[tuple[float, int, int, int, int]] = []

    def cost(self, a: int, b: int) -> float:
        """Quadric error of collapsing ``a`` into ``b`` (``b`` keeps its position)."""
        point = self.homogeneous[b]
        return float(point @ (self.quadrics[a] + self.quadrics[b]) @ point)

    def push_edges(self, vertex: int) -> None:
        for other in self.neighbours[vertex]:
            for a, b in ((vertex, other), (other, vertex)):
                heapq.heappush(self.heap, (self.cost(a, b), a, b, self.version[a], self.version[b]))

    def rebuild(self) -> None:
        self.heap = []
        for vertex in np.flatnonzero(self.alive).tolist():
            for other in self.neighbours[vertex]:
                heapq.heappush(self.heap, (self.cost(vertex, other), vertex, other,
                                           self.version[vertex], self.version[other]))

    def valid(self, a: int, b: int) -> bool:
        shared = self.vertex_faces[a] & self.vertex_faces[b]
        common = self.neighbours[a] & self.neighbours[b]
        if not shared or len(common) != len(shared):  # link condition: no pinched, non-manifold result
            return False
        if len(shared) == 2 and any(len(self.vertex_faces[a] & self.vertex_faces[n]) == 1 for n in self.neighbours[a]):
            return False  # a boundary vertex may only slide along a boundary edge, else the boundary moves
        if len(self.neighbours[a] | self.neighbours[b]) - 2 < 3 or self.count <= MIN_VERTICES:
            return False
        for n in common:  # the opposite vertices lose an edge; keep their valence >= 3
            if len(self.neighbours[n]) <= 3:
                return False
        position = self.positions
        for face in self.vertex_faces[a] - shared:
            corners = self.faces[face]
            before = position[corners]
            after = before.copy()
            after[corners.tolist().index(a)] = position[b]
            n_before = np.cross(before[1] - before[0], before[2] - before[0])
            n_after = np.cross(after[1] - after[0], after[2] - after[0])
            norms = np.linalg.norm(n_before) * np.linalg.norm(n_after)
            if norms <= 1e-30 or float(n_before @ n_after) < MIN_NORMAL_COSINE * norms:
                return False
        return True

    def collapse(self, a: int, b: int) -> None:
        self.alive[a] = False
        self.count -= 1
        self.quadrics[b] += self.quadrics[a]
        for face in list(self.vertex_faces[a]):
            corners = self.faces[face]
            if b in corners:
                self.face_alive[face] = False
                for corner in corners.tolist():
                    self.vertex_faces[corner].discard(face)
            else:
                corners[corners.tolist().index(a)] = b
                self.vertex_faces[b].add(face)
        self.vertex_faces[a] = set()
        for n in self.neighbours[a]:
            self.neighbours[n].discard(a)
            if n != b:
                self.neighbours[n].add(b)
                self.neighbours[b].add(n)
        self.neighbours[a] = set()
        self.version[b] += 1
        self.push_edges(b)

    def run_to(self, target: int) -> None:
        progressed_since_rebuild = True
        while self.count > target:
            if not self.heap:
                if not progressed_since_rebuild:
                    raise ArtifactError(f"mesh hierarchy: cannot coarsen the mesh below {self.count} vertices "
                                        f"(asked for {target}): no collapse keeps it a valid surface")
                self.rebuild()
                progressed_since_rebuild = False
                continue
            _, a, b, version_a, version_b = heapq.heappop(self.heap)
            if not (self.alive[a] and self.alive[b]) or self.version[a] != version_a or self.version[b] != version_b:
                continue
            if not self.valid(a, b):
                continue
            self.collapse(a, b)
            progressed_since_rebuild = True

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        keep = np.flatnonzero(self.alive)
        remap = np.full(len(self.alive), -1, dtype=np.int64)
        remap[keep] = np.arange(len(keep))
        return keep.astype(np.int64), remap[self.faces[self.face_alive]]


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.isfinite(vertices).all():
        raise ArtifactError(f"mesh hierarchy: parameter 'vertices' must be finite (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] < 1 or not np.issubdtype(faces.dtype, np.integer):
        raise ArtifactError(f"mesh hierarchy: parameter 'faces' must be integer (F, 3), got {faces.shape} {faces.dtype}")
    faces = faces.astype(np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ArtifactError(f"mesh hierarchy: parameter 'faces' indexes vertices outside [0, {len(vertices)})")
    if (faces[:, 0] == faces[:, 1]).any() or (faces[:, 1] == faces[:, 2]).any() or (faces[:, 2] == faces[:, 0]).any():
        raise ArtifactError("mesh hierarchy: parameter 'faces' holds a degenerate face (a repeated vertex)")
    unused = len(vertices) - len(np.unique(faces))
    if unused:
        raise ArtifactError(f"mesh hierarchy: {unused} vertices belong to no face; the mesh cannot be coarsened")
    return vertices, faces


def coarsen(
    vertices: np.ndarray, faces: np.ndarray, counts: Sequence[int], boundary_weight: float = 100.0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Quadric-error half-edge collapses of a mesh down to each of ``counts`` (strictly decreasing).

    ``vertices`` (V, 3), ``faces`` (F, 3) int. Returns per count ``(keep (V_l,) int64 indices into
    ``vertices`` (sorted), faces (F_l, 3) int64 indices into ``keep``)``. Collapses are ordered by the
    accumulated quadric error; see the module doc for the ones refused. A mesh that cannot reach a
    count (too few vertices, or no valid collapse left) raises a one-line :class:`ArtifactError`.
    """
    vertices, faces = _check_mesh(vertices, faces)
    counts = resolve_sizes(len(vertices), [int(c) for c in counts])
    decimator = _Decimator(vertices, faces, boundary_weight)
    decimator.rebuild()
    snapshots = []
    for count in counts:
        decimator.run_to(count)
        snapshots.append(decimator.snapshot())
    return snapshots


# --------------------------------------------------------------------------------- up-sampling weights
def closest_point_barycentric(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric coordinates (P, 3) of the closest point of triangles ``(a, b, c)`` (P, 3 each) to
    ``points`` (P, 3), and the squared distances (P,). Degenerate triangles fall back to their edges."""
    ab, ac, ap = b - a, c - a, points - a
    d00, d01, d11 = (ab * ab).sum(1), (ab * ac).sum(1), (ac * ac).sum(1)
    d20, d21 = (ap * ab).sum(1), (ap * ac).sum(1)
    denominator = d00 * d11 - d01 * d01
    ok = denominator > 1e-20 * np.maximum(d00 * d11, 1e-300)
    safe = np.where(ok, denominator, 1.0)
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    inside = ok & (v >= 0) & (w >= 0) & (v + w <= 1)
    best = np.stack([1.0 - v - w, v, w], 1)
    plane = a + v[:, None] * ab + w[:, None] * ac
    best_distance = np.where(inside, ((points - plane) ** 2).sum(1), np.inf)
    corners = (a, b, c)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        start, edge = corners[i], corners[j] - corners[i]
        length = (edge * edge).sum(1)
        t = np.clip(((points - start) * edge).sum(1) / np.maximum(length, 1e-300), 0.0, 1.0)
        distance = ((points - start - t[:, None] * edge) ** 2).sum(1)
        better = ~inside & (distance < best_distance)
        weights = np.zeros_like(best)
        weights[:, i], weights[:, j] = 1.0 - t, t
        best = np.where(better[:, None], weights, best)
        best_distance = np.where(better, distance, best_distance)
    return best, best_distance


def upsampling_weights(fine: np.ndarray, coarse: np.ndarray, coarse_faces: np.ndarray, kept: np.ndarray,
                       neighbours: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """COMA's up-sampling: each fine vertex (V_f, 3) as the barycentric combination of the closest
    triangle of the coarse mesh (``coarse`` (V_c, 3), ``coarse_faces`` (F_c, 3)).

    ``kept`` (V_c,) are the fine indices of the coarse vertices, which map to themselves. Candidate
    triangles are those around the ``neighbours`` nearest coarse vertices. Returns ``index`` (V_f, 3)
    int64 into the coarse mesh and ``weight`` (V_f, 3) (rows sum to 1).
    """
    from scipy.spatial import cKDTree

    k = min(neighbours, len(coarse))
    _, nearest = cKDTree(coarse).query(fine, k=k)
    nearest = nearest.reshape(len(fine), k)
    incident: list[list[int]] = [[] for _ in range(len(coarse))]
    for face, corners in enumerate(coarse_faces.tolist()):
        for corner in corners:
            incident[corner].append(face)
    width = max(len(faces) for faces in incident)
    table = np.full((len(coarse), width), -1, dtype=np.int64)
    for vertex, faces in enumerate(incident):
        table[vertex, : len(faces)] = faces
    candidates = table[nearest].reshape(len(fine), -1)  # (V_f, k * width), -1 padded, repeats harmless
    rows = np.repeat(np.arange(len(fine)), candidates.shape[1])
    flat = candidates.reshape(-1)
    valid = flat >= 0
    tri = coarse_faces[np.where(valid, flat, 0)]
    weights, distance = closest_point_barycentric(fine[rows], coarse[tri[:, 0]], coarse[tri[:, 1]], coarse[tri[:, 2]])
    distance = np.where(valid, distance, np.inf).reshape(len(fine), -1)
    choice = distance.argmin(1)
    pick = np.arange(len(fine)) * candidates.shape[1] + choice
    index, weight = tri[pick].copy(), weights[pick].copy()
    index[kept] = np.arange(len(kept))[:, None]
    weight[kept] = np.array([1.0, 0.0, 0.0])
    weight = np.where(weight < 1e-12, 0.0, weight)
    return index.astype(np.int64), weight / weight.sum(1, keepdims=True)


# --------------------------------------------------------------------------------- the hierarchy
@dataclass(frozen=True, eq=False)
class MeshLevel:
    """One coarse level ``l >= 1`` (see the module doc).

    ``keep`` (V_l,) int64: its vertices as indices into level 0; ``select`` (V_l,) int64: as indices
    into level ``l - 1`` (the rows of ``D_l``); ``faces`` (F_l, 3) int64 into this level;
    ``up_index`` / ``up_weight`` (V_{l-1}, 3): the rows of ``U_l`` (indices into this level).
    """

    keep: np.ndarray = field(repr=False)
    select: np.ndarray = field(repr=False)
    faces: np.ndarray = field(repr=False)
    up_index: np.ndarray = field(repr=False)
    up_weight: np.ndarray = field(repr=False)

    @property
    def num_vertices(self) -> int:
        return int(len(self.keep))

    def __repr__(self) -> str:
        return f"MeshLevel(num_vertices={self.num_vertices}, faces={len(self.faces)})"


@dataclass(frozen=True, eq=False)
class MeshHierarchy:
    """The levels of a mesh (see the module doc); ``template`` (V_0, 3) and ``faces`` (F_0, 3) are level 0."""

    template: np.ndarray = field(repr=False)
    faces: np.ndarray = field(repr=False)
    levels: tuple[MeshLevel, ...]

    def __post_init__(self) -> None:
        previous = len(self.template)
        for number, level in enumerate(self.levels, start=1):
            count = level.num_vertices
            shapes = {"select": (count,), "up_index": (previous, 3), "up_weight": (previous, 3)}
            for name, shape in shapes.items():
                if getattr(level, name).shape != shape:
                    raise ArtifactError(f"MeshHierarchy: level {number} field '{name}' has shape "
                                        f"{getattr(level, name).shape}, expected {shape}")
            if not count < previous or level.select.min() < 0 or level.select.max() >= previous:
                raise ArtifactError(f"MeshHierarchy: level {number} must select fewer than {previous} vertices "
                                    f"of level {number - 1}")
            if level.up_index.min() < 0 or level.up_index.max() >= count or level.faces.max() >= count:
                raise ArtifactError(f"MeshHierarchy: level {number} indexes vertices outside [0, {count})")
            if not np.allclose(level.up_weight.sum(1), 1.0, atol=1e-6):
                raise ArtifactError(f"MeshHierarchy: level {number} up-sampling rows must sum to 1")
            previous = count

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(V_0, V_1, ..., V_L)``."""
        return (len(self.template),) + tuple(level.num_vertices for level in self.levels)

    @property
    def num_levels(self) -> int:
        """``L + 1``, level 0 included."""
        return len(self.levels) + 1

    def _level(self, level: int) -> int:
        resolved = level + self.num_levels if level < 0 else level
        if not 0 <= resolved < self.num_levels:
            raise ArtifactError(f"MeshHierarchy: level {level} outside [0, {self.num_levels})")
        return resolved

    def level_faces(self, level: int) -> np.ndarray:
        """Faces (F_l, 3) of ``level`` (negative counts from the coarsest, -1)."""
        level = self._level(level)
        return self.faces if level == 0 else self.levels[level - 1].faces

    def level_template(self, level: int) -> np.ndarray:
        """The template's vertices at ``level`` (V_l, 3)."""
        level = self._level(level)
        return self.template if level == 0 else self.template[self.levels[level - 1].keep]

    def down(self, vertices: ArrayLike, to_level: int = -1, from_level: int = 0) -> ArrayLike:
        """``(..., V_from, 3) -> (..., V_to, 3)``: the vertices ``to_level`` keeps (a selection)."""
        start, stop = self._level(from_level), self._level(to_level)
        if stop < start:
            raise ArtifactError(f"MeshHierarchy.down: to_level {to_level} is finer than from_level {from_level}")
        _check_vertices(vertices, self.sizes[start], "MeshHierarchy.down")
        for level in self.levels[start:stop]:
            index = level.select if isinstance(vertices, np.ndarray) else torch.as_tensor(level.select,
                                                                                            device=vertices.device)
            vertices = vertices[..., index, :]
        return vertices

    def up(self, vertices: ArrayLike, from_level: int = -1, to_level: int = 0) -> ArrayLike:
        """``(..., V_from, 3) -> (..., V_to, 3)`` by the fixed barycentric up-sampling, level by level."""
        start, stop = self._level(from_level), self._level(to_level)
        if stop > start:
            raise ArtifactError(f"MeshHierarchy.up: to_level {to_level} is coarser than from_level {from_level}")
        _check_vertices(vertices, self.sizes[start], "MeshHierarchy.up")
        for level in reversed(self.levels[stop:start]):
            if isinstance(vertices, np.ndarray):
                vertices = (vertices[..., level.up_index, :] * level.up_weight[:, :, None]).sum(-2)
            else:
                index = torch.as_tensor(level.up_index, device=vertices.device)
                weight = torch.as_tensor(level.up_weight, dtype=vertices.dtype, device=vertices.device)
                vertices = (vertices[..., index, :] * weight[:, :, None]).sum(-2)
        return vertices

    def down_matrix(self, level: int):
        """``D_level`` as a scipy.sparse CSR matrix (V_level x V_{level-1})."""
        import scipy.sparse

        data = self.levels[self._level(level) - 1]
        rows = np.arange(data.num_vertices)
        return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, data.select)),
                                       shape=(data.num_vertices, self.sizes[self._level(level) - 1]))

    def up_matrix(self, level: int):
        """``U_level`` as a scipy.sparse CSR matrix (V_{level-1} x V_level)."""
        import scipy.sparse

        data = self.levels[self._level(level) - 1]
        rows = np.repeat(np.arange(len(data.up_index)), 3)
        return scipy.sparse.csr_matrix((data.up_weight.reshape(-1), (rows, data.up_index.reshape(-1))),
                                       shape=(len(data.up_index), data.num_vertices))

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"template": self.template.astype(np.float64), "faces": self.faces.astype(np.int64)}
        for number, level in enumerate(self.levels, start=1):
            for name in ("keep", "select", "faces", "up_index", "up_weight"):
                arrays[f"level{number}_{name}"] = getattr(level, name)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], where: str = "MeshHierarchy") -> "MeshHierarchy":
        levels = []
        number = 1
        while f"level{number}_keep" in arrays:
            missing = [n for n in ("select", "faces", "up_index", "up_weight") if f"level{number}_{n}" not in arrays]
            if missing:
                raise ArtifactError(f"{where}: missing field 'level{number}_{missing[0]}'")
            levels.append(MeshLevel(**{n: np.asarray(arrays[f"level{number}_{n}"]) for n in
                                       ("keep", "select", "faces", "up_index", "up_weight")}))
            number += 1
        if not levels or "template" not in arrays or "faces" not in arrays:
            raise ArtifactError(f"{where}: not a mesh hierarchy (fields 'template', 'faces', 'level1_*' needed)")
        try:
            return cls(np.asarray(arrays["template"]), np.asarray(arrays["faces"]), tuple(levels))
        except ArtifactError as exc:
            raise ArtifactError(f"{where}: {exc}") from None


def _check_vertices(vertices, count: int, where: str) -> None:
    if not isinstance(vertices, (np.ndarray, Tensor)):
        raise ArtifactError(f"{where}: expected a numpy array or tensor (..., {count}, 3), got {type(vertices).__name__}")
    if vertices.ndim < 2 or tuple(vertices.shape[-2:]) != (count, 3):
        raise ArtifactError(f"{where}: vertices have shape {tuple(vertices.shape)}, expected (..., {count}, 3)")


def build_hierarchy(vertices: np.ndarray, faces: np.ndarray, sizes: Sequence[float | int] = METRO_RATIOS,
                    boundary_weight: float = 100.0) -> MeshHierarchy:
    """The hierarchy of a mesh (``vertices`` (V, 3), e.g. a body model's ``v_template``, ``faces``
    (F, 3)) with coarse levels of ``sizes`` (ratios of V or counts, see :func:`resolve_sizes`)."""
    vertices, faces = _check_mesh(vertices, faces)
    counts = resolve_sizes(len(vertices), sizes)
    snapshots = coarsen(vertices, faces, counts, boundary_weight)
    levels = []
    previous_keep = np.arange(len(vertices))
    for keep, level_faces in snapshots:
        select = np.searchsorted(previous_keep, keep)
        index, weight = upsampling_weights(vertices[previous_keep], vertices[keep], level_faces, select)
        levels.append(MeshLevel(keep=keep, select=select.astype(np.int64), faces=level_faces,
                                up_index=index, up_weight=weight))
        previous_keep = keep
    return MeshHierarchy(vertices, faces, tuple(levels))


def body_hierarchy(body_arrays: dict[str, np.ndarray], sizes: Sequence[float | int] = METRO_RATIOS) -> MeshHierarchy:
    """:func:`build_hierarchy` of a body model's mesh (the dict of :func:`humandiff.body.load_body_arrays`)."""
    return build_hierarchy(body_arrays["v_template"], body_arrays["f"], sizes)


def save_hierarchy(path: str | Path, hierarchy: MeshHierarchy, extra: dict[str, np.ndarray] | None = None) -> None:
    """Write the hierarchy (and ``extra`` arrays, e.g. ``joint_regressor``) to an NPZ atomically."""
    save_npz(path, {**hierarchy.to_arrays(), **(extra or {})})


def load_hierarchy(path: str | Path) -> tuple[MeshHierarchy, dict[str, np.ndarray]]:
    """Read :func:`save_hierarchy`'s file: the hierarchy and the other arrays it holds."""
    arrays = load_npz(path, {"template": (-1, 3), "faces": (-1, 3)})
    hierarchy = MeshHierarchy.from_arrays(arrays, str(path))
    own = set(hierarchy.to_arrays())
    return hierarchy, {name: value for name, value in arrays.items() if name not in own}


# --------------------------------------------------------------------------------- linear maps
def _check_pairs(vertices: np.ndarray, joints: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    vertices, joints = np.asarray(vertices, dtype=np.float64), np.asarray(joints, dtype=np.float64)
    if vertices.ndim != 3 or vertices.shape[2] != 3 or joints.ndim != 3 or joints.shape[2] != 3 \
            or len(vertices) != len(joints) or len(vertices) < 1:
        raise ArtifactError(f"{where}: expected vertices (P, V, 3) and joints (P, J, 3) of the same P, "
                            f"got {vertices.shape} and {joints.shape}")
    if not (np.isfinite(vertices).all() and np.isfinite(joints).all()):
        raise ArtifactError(f"{where}: vertices or joints contain NaN or Inf")
    return vertices, joints


def fit_joint_regressor(vertices: np.ndarray, joints: np.ndarray, nonnegative: bool = True,
                        ridge: float = 1e-4) -> np.ndarray:
    """Least-squares joint regressor (J, V) from posed meshes ``vertices`` (P, V, 3) to ``joints`` (P, J, 3).

    Each joint's weights sum to 1 (translation-equivariant, and rotation-equivariant since one
    weight serves x, y and z). ``nonnegative`` (default): non-negative least squares, sparse like
    SMPL's own regressor (the sum-to-one constraint enters as a heavily weighted extra row, then
    rows are renormalised). Else the exact equality-constrained solution with a ``ridge`` term
    (relative to the mean diagonal of the normal equations): more accurate but dense, and with a
    tiny ridge its weights grow large (on the embedded model's 154-vertex mesh the largest
    eigenvalue of ``f f^T`` is 4.8 at ridge 1e-6, 0.69 at 1e-4, 0.59 for the non-negative fit),
    which scales every gradient DAT sends through ``f``.
    """
    vertices, joints = _check_pairs(vertices, joints, "fit_joint_regressor")
    poses, count, _ = vertices.shape
    design = vertices.transpose(0, 2, 1).reshape(poses * 3, count)  # rows (pose, axis), columns vertices
    targets = joints.transpose(0, 2, 1).reshape(poses * 3, -1)
    if not nonnegative:
        return _affine_least_squares(design, targets, ridge).T
    from scipy.optimize import nnls

    scale = np.sqrt((design**2).sum() / max(count, 1))
    augmented = np.concatenate([design, np.full((1, count), 1e3 * scale)])
    regressor = np.zeros((targets.shape[1], count))
    for joint in range(targets.shape[1]):
        regressor[joint], _ = nnls(augmented, np.concatenate([targets[:, joint], [1e3 * scale]]), maxiter=50 * count)
    return regressor / np.maximum(regressor.sum(1, keepdims=True), 1e-12)


def _affine_least_squares(design: np.ndarray, targets: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_W ||design W - targets||^2 + ridge ||W||^2 with each column of W summing to 1: (n, m)."""
    gram = design.T @ design
    gram = gram + ridge * max(np.trace(gram) / len(gram), 1e-12) * np.eye(len(gram))
    free = np.linalg.solve(gram, design.T @ targets)
    ones = np.linalg.solve(gram, np.ones(len(gram)))
    return free - ones[:, None] * (free.sum(0) - 1.0)[None] / ones.sum()


def fit_pose_to_mesh(joints: np.ndarray, vertices: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Linear map (V, J) from joints (P, J, 3) to mesh vertices (P, V, 3), rows summing to 1 (ridge-regularised).

    Every vertex becomes an affine combination of the joints: the reverse of
    :func:`fit_joint_regressor`, to turn pose samples into meshes (HMDiff's ``H_U``).
    """
    vertices, joints = _check_pairs(vertices, joints, "fit_pose_to_mesh")
    poses, count, _ = vertices.shape
    design = joints.transpose(0, 2, 1).reshape(poses * 3, -1)
    targets = vertices.transpose(0, 2, 1).reshape(poses * 3, count)
    return _affine_least_squares(design, targets, ridge).T


def apply_linear(matrix: np.ndarray | Tensor, points: ArrayLike) -> ArrayLike:
    """``matrix`` (M, V) applied to ``points`` (..., V, 3) -> (..., M, 3) (numpy or torch, differentiable)."""
    if isinstance(points, np.ndarray):
        return np.einsum("mv,...vc->...mc", np.asarray(matrix), points)
    matrix = torch.as_tensor(matrix, dtype=points.dtype, device=points.device)
    return torch.einsum("mv,...vc->...mc", matrix, points)


# --------------------------------------------------------------------------------- posed bodies
def random_posed_bodies(body_model, count: int, seed: int, angle_std: float = 0.35, shape_std: float = 1.0,
                        root_rotation: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``count`` posed bodies of ``body_model`` (an ``smplx.SMPL`` from :func:`load_body_model`):
    vertices (count, V, 3) and joints (count, 24, 3), pelvis-free (transl 0), float64.

    Poses are the named anatomical angles of :mod:`humandiff.motion.poses` (a relaxed stance plus
    Gaussian angles of ``angle_std`` radians, shoulders raised uniformly from the side to the
    T-pose), a uniform heading when ``root_rotation``, and Gaussian betas of ``shape_std``.
    """
    from humandiff.body.model import posed_body
    from humandiff.geometry.rotations import matrix_to_axis_angle_np
    from humandiff.motion.poses import DOF_INDEX, NUM_DOFS, dofs_to_smpl_rotations, pose_vector

    if not isinstance(count, int) or count < 1:
        raise ArtifactError(f"random_posed_bodies: parameter 'count' must be a positive integer, got {count!r}")
    rng = np.random.default_rng(seed)
    dofs = pose_vector()[None] + rng.normal(0.0, angle_std, size=(count, NUM_DOFS))
    for side in ("l", "r"):
        dofs[:, DOF_INDEX[f"sh_abd_{side}"]] = rng.uniform(0.0, np.pi / 2, size=count)
        dofs[:, DOF_INDEX[f"knee_{side}"]] = np.abs(dofs[:, DOF_INDEX[f"knee_{side}"]])
        dofs[:, DOF_INDEX[f"elbow_{side}"]] = np.abs(dofs[:, DOF_INDEX[f"elbow_{side}"]])
    heading = rng.uniform(-np.pi, np.pi, size=count) if root_rotation else np.zeros(count)
    axis_angle = torch.as_tensor(matrix_to_axis_angle_np(dofs_to_smpl_rotations(dofs, heading)), dtype=torch.float32)
    betas = torch.as_tensor(np.clip(rng.normal(0.0, shape_std, size=(count, body_model.num_betas)), -2.5, 2.5),
                            dtype=torch.float32)
    with torch.no_grad():
        vertices, joints = posed_body(body_model, axis_angle[:, 0], axis_angle[:, 1:].reshape(count, 69), betas,
                                      torch.zeros(count, 3))
    return vertices.double().numpy(), joints.double().numpy()
