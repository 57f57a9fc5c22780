"""A vectorised triangle rasteriser with a depth buffer, and Lambertian shading.

How it works: back faces are culled, every triangle is clipped against the near plane in
camera space, projected, and expanded into the pixel centres inside its bounding box
("candidates", all triangles at once with numpy). Edge functions decide coverage; the depth of
every covered candidate is exact (1/z is affine in screen space), and a scatter-min per pixel
keeps the nearest candidate (the depth test). Attributes (colours, normals) are then
interpolated for the winning pixels only, with perspective-correct barycentric coordinates.
A body of ~2.5k triangles at 128 px makes ~10k candidates: a few milliseconds per image.

Pixel-centre convention (see :mod:`humandiff.render.camera`): pixel (row i, column j) is
sampled at its centre, the continuous image point (u, v) = (j, i). A pixel is covered by a
triangle when that point lies inside the triangle; a point exactly on an edge is given to the
triangle for which the edge is a "top" or "left" edge (interior below it, or to its right, in
the y-down image), so two triangles sharing an edge cover every pixel centre on it exactly
once (exact when the edge's arithmetic is exact, e.g. vertices on a half-pixel grid).

Faces are oriented counter-clockwise seen from outside (the SMPL / OpenGL convention): a face
is front-facing when its normal (v1 - v0) x (v2 - v0) points towards the camera. Back faces
are skipped by default (closed bodies); when kept, they are lit with the flipped normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence

import numpy as np

from humandiff.io.artifacts import ArtifactError
from humandiff.render.camera import Camera

DEFAULT_NEAR = 0.01
# Candidate (pixel, triangle) pairs processed at once: bounds the working memory (~150 MB)
# when huge triangles (a floor, a wall) cover the whole image many times over.
MAX_CANDIDATES_PER_CHUNK = 1 << 20


@dataclass(frozen=True, eq=False)
class Fragments:
    """Per-pixel rasterisation result.

    face_index (H, W) int32, -1 on background; depth (H, W) float32 camera z, +inf on
    background; barycentric (H, W, 3) float32 perspective-correct weights of the visible
    point w.r.t. the three vertices of ``faces[face_index]`` (zero on background).
    """

    face_index: np.ndarray
    depth: np.ndarray
    barycentric: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Silhouette (H, W) bool."""
        return self.face_index >= 0


@dataclass(frozen=True, eq=False)
class DirectionalLight:
    """A directional light plus ambient term, in world coordinates.

    ``to_light`` (3,) points from the surface towards the light (normalised on use);
    shaded colour = albedo * colour * (ambient + intensity * max(0, n . to_light)).
    """

    to_light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.6, 1.0]))
    colour: np.ndarray = field(default_factory=lambda: np.ones(3))
    intensity: float = 0.8
    ambient: float = 0.35

    def unit_direction(self) -> np.ndarray:
        """to_light normalised (3,)."""
        direction = np.asarray(self.to_light, dtype=np.float64)
        norm = np.linalg.norm(direction)
        if direction.shape != (3,) or not np.isfinite(norm) or norm == 0:
            raise ArtifactError(f"light: 'to_light' must be a non-zero 3-vector, got {self.to_light}")
        return direction / norm


@dataclass(frozen=True, eq=False)
class RenderResult:
    """image (H, W, 3) uint8, depth (H, W) float32 (+inf background), face_index (H, W) int32
    (-1 background), mask (H, W) bool silhouette, barycentric (H, W, 3) float32."""

    image: np.ndarray
    depth: np.ndarray
    face_index: np.ndarray
    mask: np.ndarray
    barycentric: np.ndarray


# ---------------------------------------------------------------------------- validation
def check_mesh(vertices: np.ndarray, faces: np.ndarray, what: str = "mesh") -> tuple[np.ndarray, np.ndarray]:
    """Return (vertices (V, 3) float64, faces (F, 3) int64) or raise ArtifactError naming the field."""
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ArtifactError(f"{what}: 'vertices' must have shape (V, 3), got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.number) or not np.isfinite(vertices).all():
        raise ArtifactError(f"{what}: 'vertices' must be finite numbers")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ArtifactError(f"{what}: 'faces' must have shape (F, 3), got {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ArtifactError(f"{what}: 'faces' must be integers, got dtype {faces.dtype}")
    faces = faces.astype(np.int64, copy=False)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ArtifactError(f"{what}: 'faces' index outside [0, {len(vertices)})")
    return vertices.astype(np.float64, copy=False), faces


# ---------------------------------------------------------------------------- geometry helpers
# Large per-face / per-pixel arrays are kept component-major, (3, N): numpy's inner loops then
# run over N instead of over 3, which is several times faster for these sizes.
def _corner_coordinates(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) vertices, (F, 3) faces -> corners (3 coordinates, 3 corners, F)."""
    return np.ascontiguousarray(vertices.T)[:, np.ascontiguousarray(faces.T)]


def _face_cross(corners: np.ndarray) -> np.ndarray:
    """(v1 - v0) x (v2 - v0) of corners (3, 3, F) -> (3, F); its length is twice the area."""
    e1 = corners[:, 1] - corners[:, 0]
    e2 = corners[:, 2] - corners[:, 0]
    return np.stack([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]])


def _unit_columns(vectors: np.ndarray) -> np.ndarray:
    norms = np.sqrt((vectors * vectors).sum(axis=0))
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit face normals (F, 3) of counter-clockwise faces; zero for degenerate faces."""
    vertices, faces = check_mesh(vertices, faces, "face_normals")
    return _unit_columns(_face_cross(_corner_coordinates(vertices, faces))).T


def _vertex_normals_from_cross(cross: np.ndarray, faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Sum each face's area-weighted normal (3, F) into its corners -> unit normals (3, V)."""
    corner_vertex = np.ascontiguousarray(faces.T).reshape(-1)
    summed = np.stack(
        [np.bincount(corner_vertex, weights=np.tile(cross[c], 3), minlength=vertex_count) for c in range(3)]
    )
    return _unit_columns(summed)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3); zero for vertices in no face."""
    vertices, faces = check_mesh(vertices, faces, "vertex_normals")
    cross = _face_cross(_corner_coordinates(vertices, faces))
    return _vertex_normals_from_cross(cross, faces, len(vertices)).T


# ---------------------------------------------------------------------------- near-plane clipping
def _clip_near(
    corners: np.ndarray, face_ids: np.ndarray, near: float
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Clip triangles, corners (3 coords, 3 corners, T), against the plane z = near, keeping winding.

    Returns (corners (3, 3, T'), basis (3 corners, 3 weights, T') or None when nothing was
    clipped, face_ids (T',)). basis[k, :, i] holds the barycentric weights of clipped corner k
    in the original face, so attributes interpolate exactly through clipping.
    """
    behind = corners[2] < near  # (3, T)
    behind_count = behind.sum(axis=0)
    if not behind_count.any():
        return corners, None, face_ids
    keep = behind_count == 0
    identity = np.broadcast_to(np.eye(3)[:, :, None], (3, 3, int(keep.sum())))
    out_corners, out_basis, out_ids = [corners[:, :, keep]], [identity], [face_ids[keep]]

    def rotated(selected: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # A cyclic rotation keeps the winding; ``first`` is the corner that goes first.
        order = (first[None, :] + np.arange(3)[:, None]) % 3  # (3, n)
        picked = np.take_along_axis(corners[:, :, selected], order[None, :, :], axis=1)
        return picked, np.eye(3)[order].transpose(0, 2, 1)  # (3 coords, 3, n), (3 corners, 3 weights, n)

    def cut(p: np.ndarray, q: np.ndarray, bp: np.ndarray, bq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (near - p[2]) / (q[2] - p[2])
        point = p + s * (q - p)
        point[2] = near  # exact, so a clipped corner never falls behind the plane by rounding
        return point, bp + s * (bq - bp)

    one_in_front = behind_count == 2
    if one_in_front.any():
        c, e = rotated(one_in_front, np.argmin(behind[:, one_in_front], axis=0))
        ab, bab = cut(c[:, 0], c[:, 1], e[0], e[1])
        ac, bac = cut(c[:, 0], c[:, 2], e[0], e[2])
        out_corners.append(np.stack([c[:, 0], ab, ac], axis=1))
        out_basis.append(np.stack([e[0], bab, bac]))
        out_ids.append(face_ids[one_in_front])
    one_behind = behind_count == 1
    if one_behind.any():
        # Put the hidden corner last: (a, b) in front, c behind -> quad a, b, bc, ca.
        c, e = rotated(one_behind, (np.argmax(behind[:, one_behind], axis=0) + 1) % 3)
        bc, bbc = cut(c[:, 1], c[:, 2], e[1], e[2])
        ca, bca = cut(c[:, 0], c[:, 2], e[0], e[2])
        out_corners += [np.stack([c[:, 0], c[:, 1], bc], axis=1), np.stack([c[:, 0], bc, ca], axis=1)]
        out_basis += [np.stack([e[0], e[1], bbc]), np.stack([e[0], bbc, bca])]
        out_ids += [face_ids[one_behind], face_ids[one_behind]]
    return np.concatenate(out_corners, axis=2), np.concatenate(out_basis, axis=2), np.concatenate(out_ids)


# ---------------------------------------------------------------------------- rasterisation
def rasterize(
    vertices_camera: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    near: float = DEFAULT_NEAR,
    cull_back_faces: bool = True,
) -> Fragments:
    """Rasterise a mesh given in CAMERA coordinates (V, 3) with faces (F, 3).

    Only ``camera``'s intrinsics and image size are used (vertices are already in its
    frame, e.g. from ``camera.world_to_camera``). Triangles are clipped at z = ``near``;
    back faces are dropped when ``cull_back_faces``. Ties in depth go to the lower face index.
    """
    vertices_camera, faces = check_mesh(vertices_camera, faces, "rasterize")
    if not near > 0:
        raise ArtifactError(f"rasterize: 'near' must be positive, got {near}")
    width, height = camera.width, camera.height
    face_index = np.full(height * width, -1, dtype=np.int32)
    depth = np.full(height * width, np.inf, dtype=np.float32)
    barycentric = np.zeros((3, height * width), dtype=np.float32)

    corners = _corner_coordinates(vertices_camera, faces)  # (3, 3, F)
    # det[v0, v1, v2] = n . v0 is negative when the face looks towards the camera at the origin.
    facing = (_face_cross(corners) * corners[:, 0]).sum(axis=0)
    keep = facing < 0 if cull_back_faces else facing != 0
    keep &= (corners[2] >= near).any(axis=0)
    face_ids = np.nonzero(keep)[0]
    corners, basis, face_ids = _clip_near(corners[:, :, keep], face_ids, near)
    if len(face_ids):
        _rasterize_triangles(corners, basis, face_ids, camera, face_index, depth, barycentric)
    return Fragments(
        face_index=face_index.reshape(height, width),
        depth=depth.reshape(height, width),
        barycentric=np.ascontiguousarray(barycentric.T).reshape(height, width, 3),
    )


def _rasterize_triangles(
    corners: np.ndarray,
    basis: np.ndarray | None,
    face_ids: np.ndarray,
    camera: Camera,
    face_index: np.ndarray,
    depth: np.ndarray,
    barycentric: np.ndarray,
) -> None:
    """Scan-convert triangles (3, 3, T), all z >= near, into the flat buffers in place
    (face_index (HW,), depth (HW,), barycentric (3, HW))."""
    width, height = camera.width, camera.height
    inverse_z = 1.0 / corners[2]  # (3, T)
    u = camera.fx * corners[0] * inverse_z + camera.cx
    v = camera.fy * corners[1] * inverse_z + camera.cy

    # Pixel centres are integers: a triangle can only cover centres in [ceil(min), floor(max)].
    u_lo = np.maximum(np.ceil(u.min(axis=0)), 0)
    v_lo = np.maximum(np.ceil(v.min(axis=0)), 0)
    box_w = (np.minimum(np.floor(u.max(axis=0)), width - 1) - u_lo + 1).clip(min=0).astype(np.int64)
    box_h = (np.minimum(np.floor(v.max(axis=0)), height - 1) - v_lo + 1).clip(min=0).astype(np.int64)
    # Edge k runs from corner k+1 to corner k+2 (opposite corner k): E_k(p) = cross(P_b - P_a, p - P_a),
    # affine in p, equal to twice the signed area at corner k.
    a, b = [1, 2, 0], [2, 0, 1]
    du, dv = u[b] - u[a], v[b] - v[a]
    double_area = du[0] * dv[1] - dv[0] * du[1]
    counts = box_w * box_h
    live = np.nonzero((counts > 0) & (double_area != 0))[0]
    if len(live) == 0:
        return
    sign = np.sign(double_area[live])
    du, dv, u_lo, v_lo = du[:, live] * sign, dv[:, live] * sign, u_lo[live], v_lo[live]
    # Signed so that the inside is positive; the gradient (-dv, du) is the interior normal.
    edge_at_box = du * (v_lo - v[a][:, live]) - dv * (u_lo - u[a][:, live])
    # An edge owns the centres exactly on it when its interior normal points right, or straight
    # down (a "top" edge in the y-down image): there the test E > -tiny is E >= 0.
    owns_ties = (-dv > 0) | ((dv == 0) & (du > 0))
    threshold = np.where(owns_ties, -np.finfo(np.float64).smallest_subnormal, 0.0)
    table = np.concatenate([edge_at_box, -dv, du, threshold])  # (12, L)
    # lambda_k / z_k = E_k * (1 / z_k) / |2 area| is affine in screen space and sums to 1 / depth.
    depth_weights = inverse_z[:, live] / np.abs(double_area[live])
    live_counts = counts[live]
    box_w = box_w[live]

    for chunk in _chunks(live_counts, MAX_CANDIDATES_PER_CHUNK):
        chunk_counts = live_counts[chunk]
        total = int(chunk_counts.sum())
        owner = np.repeat(np.arange(chunk.start, chunk.stop), chunk_counts)
        # Candidate n of a triangle sits at (col, row) = (n mod box width, n div box width) in its
        # box; float division is exact here (n < 2**52) and much faster than integer division.
        first = (np.cumsum(chunk_counts) - chunk_counts).astype(np.float64)
        local = np.arange(total, dtype=np.float64) - np.repeat(first, chunk_counts)
        row_width = np.repeat(box_w[chunk].astype(np.float64), chunk_counts)
        row = np.floor((local + 0.5) / row_width)
        col = local - row * row_width
        rows = np.repeat(table[:, chunk], chunk_counts, axis=1)
        edges = rows[0:3] + rows[3:6] * col + rows[6:9] * row  # (3, N)
        inside = edges > rows[9:12]
        hit = np.nonzero(inside[0] & inside[1] & inside[2])[0]
        if len(hit) == 0:
            continue
        owner_hit = owner[hit]
        weighted = edges[:, hit] * depth_weights.take(owner_hit, axis=1)
        inverse_depth = weighted[0] + weighted[1] + weighted[2]
        hit_depth = (1.0 / inverse_depth).astype(np.float32)
        pixel = (v_lo[owner_hit] + row[hit]).astype(np.int64) * width + (u_lo[owner_hit] + col[hit]).astype(np.int64)

        # Nearest candidate per pixel: a scatter-min of depth, then a scatter-min of candidate
        # number among the equally near ones, so ties go to the earlier (lower-index) face;
        # a tie with an earlier chunk keeps the earlier chunk's face.
        depth_before = depth[pixel]
        np.minimum.at(depth, pixel, hit_depth)
        nearest = np.nonzero((hit_depth == depth[pixel]) & (hit_depth < depth_before))[0]
        if len(nearest) == 0:
            continue
        first_candidate = np.full(len(depth), len(hit), dtype=np.int64)
        np.minimum.at(first_candidate, pixel[nearest], nearest)
        winner = nearest[first_candidate[pixel[nearest]] == nearest]
        winner_pixel = pixel[winner]
        triangle = live[owner_hit[winner]]
        camera_bary = weighted[:, winner] / inverse_depth[winner]
        face_index[winner_pixel] = face_ids[triangle]
        if basis is not None:
            camera_bary = np.einsum("kn,kjn->jn", camera_bary, basis[:, :, triangle])
        barycentric[:, winner_pixel] = camera_bary


def _chunks(counts: np.ndarray, limit: int) -> list[slice]:
    """Split consecutive triangles into runs whose candidate counts sum to at most ``limit``
    (a single larger triangle forms its own run)."""
    cumulative = np.cumsum(counts)
    if cumulative[-1] <= limit:
        return [slice(0, len(counts))]
    slices, start, base = [], 0, 0
    while start < len(counts):
        stop = int(np.searchsorted(cumulative, base + limit, side="right"))
        stop = max(stop, start + 1)
        slices.append(slice(start, stop))
        base = int(cumulative[stop - 1])
        start = stop
    return slices


# ---------------------------------------------------------------------------- shading
def _covered_pixels(fragments: Fragments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices (n,) of covered pixels, their faces (n,) and barycentric weights (3, n)."""
    flat_face = fragments.face_index.reshape(-1)
    covered = np.flatnonzero(flat_face >= 0)
    bary = np.ascontiguousarray(fragments.barycentric.reshape(-1, 3)[covered].T, dtype=np.float64)
    return covered, flat_face[covered], bary


def _interpolate_columns(values_t: np.ndarray, corner_vertex: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """values_t (C, V), corner_vertex (3, n) vertex ids, bary (3, n) -> (C, n)."""
    return sum(values_t.take(corner_vertex[k], axis=1) * bary[k] for k in range(3))


def interpolate(fragments: Fragments, faces: np.ndarray, vertex_values: np.ndarray) -> np.ndarray:
    """Interpolate per-vertex values (V, C) at every covered pixel -> (H, W, C) float32, 0 on background."""
    height, width = fragments.face_index.shape
    values = np.asarray(vertex_values, dtype=np.float64)
    if values.ndim != 2:
        raise ArtifactError(f"interpolate: 'vertex_values' must have shape (V, C), got {values.shape}")
    covered, face, bary = _covered_pixels(fragments)
    corner_vertex = np.asarray(faces, dtype=np.int64).T[:, face]
    out = np.zeros((height * width, values.shape[1]), dtype=np.float32)
    out[covered] = _interpolate_columns(np.ascontiguousarray(values.T), corner_vertex, bary).T
    return out.reshape(height, width, values.shape[1])


def _colour_array(colours: np.ndarray, count: int, what: str) -> np.ndarray:
    colours = np.asarray(colours)
    if colours.shape != (count, 3):
        raise ArtifactError(f"render_mesh: '{what}' must have shape ({count}, 3), got {colours.shape}")
    if colours.dtype == np.uint8:
        return colours.astype(np.float64) / 255.0
    colours = colours.astype(np.float64)
    if not np.isfinite(colours).all():
        raise ArtifactError(f"render_mesh: '{what}' must be finite")
    return colours


def _background_image(background: np.ndarray | Sequence[float] | None, height: int, width: int) -> np.ndarray:
    if background is None:
        return np.zeros((height, width, 3), dtype=np.uint8)
    background = np.asarray(background)
    if background.shape == (3,):
        colour = background.astype(np.float64)
        if background.dtype != np.uint8:
            colour = np.round(np.clip(colour, 0, 1) * 255)
        return np.broadcast_to(colour.astype(np.uint8), (height, width, 3)).copy()
    if background.shape != (height, width, 3) or background.dtype != np.uint8:
        raise ArtifactError(
            f"render_mesh: 'background' must be an RGB colour or a ({height}, {width}, 3) uint8 image, "
            f"got {background.shape} {background.dtype}"
        )
    return background.copy()


def render_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    vertex_colors: np.ndarray | None = None,
    face_colors: np.ndarray | None = None,
    light: DirectionalLight | None = None,
    smooth: bool = True,
    background: np.ndarray | Sequence[float] | None = None,
    near: float = DEFAULT_NEAR,
    cull_back_faces: bool = True,
) -> RenderResult:
    """Render a WORLD-space mesh (V, 3), faces (F, 3) with Lambertian shading.

    Colours: ``vertex_colors`` (V, 3) or ``face_colors`` (F, 3), floats in [0, 1] or uint8
    (light grey if neither). ``smooth`` interpolates area-weighted vertex normals, otherwise
    face normals give flat shading. ``background``: an RGB colour or an (H, W, 3) uint8 image.
    """
    vertices, faces = check_mesh(vertices, faces, "render_mesh")
    if vertex_colors is not None and face_colors is not None:
        raise ArtifactError("render_mesh: give 'vertex_colors' or 'face_colors', not both")
    light = light if light is not None else DirectionalLight()
    image = _background_image(background, camera.height, camera.width)
    fragments = rasterize(camera.world_to_camera(vertices), faces, camera, near=near, cull_back_faces=cull_back_faces)
    covered, face, bary = _covered_pixels(fragments)
    corner_vertex = np.ascontiguousarray(faces.T)[:, face]  # (3, n)

    if vertex_colors is not None:
        colours_t = np.ascontiguousarray(_colour_array(vertex_colors, len(vertices), "vertex_colors").T)
        albedo = _interpolate_columns(colours_t, corner_vertex, bary)
    elif face_colors is not None:
        albedo = _colour_array(face_colors, len(faces), "face_colors").T[:, face]
    else:
        albedo = np.full((3, len(face)), 0.75)

    cross = _face_cross(_corner_coordinates(vertices, faces))  # (3, F), world frame
    if smooth:
        normals_t = _vertex_normals_from_cross(cross, faces, len(vertices))
        normal = _unit_columns(_interpolate_columns(normals_t, corner_vertex, bary))
    else:
        normal = _unit_columns(cross.take(face, axis=1))
    if not cull_back_faces:
        # Two-sided lighting: a visible back face is lit as seen, with its normal flipped.
        to_camera = camera.center[:, None] - vertices[faces[:, 0]].T
        back = (cross * to_camera).sum(axis=0) < 0
        normal = np.where(back[face], -normal, normal)

    lambert = np.clip(light.unit_direction() @ normal, 0.0, None)
    shade = light.ambient + light.intensity * lambert
    colour = albedo * (np.asarray(light.colour, dtype=np.float64)[:, None] * shade)
    image.reshape(-1, 3)[covered] = np.round(np.clip(colour, 0.0, 1.0) * 255.0).astype(np.uint8).T
    return RenderResult(
        image=image,
        depth=fragments.depth,
        face_index=fragments.face_index,
        mask=fragments.mask,
        barycentric=fragments.barycentric,
    )
