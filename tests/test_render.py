"""Tests for humandiff.render: cameras, the rasteriser, shading and procedural scenes.

Pixel-centre convention under test: pixel (row i, column j) is sampled at the continuous
image point (u, v) = (j, i).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from humandiff.io.artifacts import ArtifactError
from humandiff.render import (
    Camera,
    CameraBatch,
    DirectionalLight,
    SceneOptions,
    framing_camera,
    interpolate,
    joint_visibility,
    mannequin,
    project_joints,
    project_points_torch,
    rasterize,
    render_mesh,
    render_person,
    vertex_normals,
)
from humandiff.render.scene import BACKGROUND_KINDS, draw_occluders, make_background


def unit_camera(width: int = 24, height: int = 20, focal: float = 1.0, cx: float = 0.0, cy: float = 0.0) -> Camera:
    """Identity extrinsics, so camera coordinates are world coordinates; fx = 1 makes
    u = x / z exact in floating point for the grid-aligned tests."""
    return Camera(focal, focal, cx, cy, width, height, np.eye(3), np.zeros(3))


def analytic_coverage(corners_2d: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel centres strictly inside a 2D triangle (H, W) bool, by signs of edge cross products."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    signs = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        (ua, va), (ub, vb) = corners_2d[a], corners_2d[b]
        signs.append((ub - ua) * (v - va) - (vb - va) * (u - ua))
    signs = np.stack(signs)
    return (signs > 0).all(axis=0) | (signs < 0).all(axis=0)


def lift(corners_2d: np.ndarray, depth: float, camera: Camera) -> np.ndarray:
    """Camera-space points at ``depth`` that project to the given pixels (N, 2) -> (N, 3)."""
    x = (corners_2d[:, 0] - camera.cx) / camera.fx * depth
    y = (corners_2d[:, 1] - camera.cy) / camera.fy * depth
    return np.stack([x, y, np.full(len(corners_2d), depth)], axis=1)


# ---------------------------------------------------------------------------- camera
def test_point_on_optical_axis_lands_on_principal_point():
    camera = Camera(300.0, 310.0, 63.5, 70.25, 128, 140, np.eye(3), np.zeros(3))
    pixels, depth = camera.project(np.array([[0.0, 0.0, 4.0], [0.0, 0.0, 0.5]]))
    np.testing.assert_allclose(pixels, [[63.5, 70.25], [63.5, 70.25]])
    np.testing.assert_allclose(depth, [4.0, 0.5])


def test_focal_length_scales_offsets_from_principal_point():
    point = np.array([0.2, -0.1, 2.0])
    offsets = []
    for focal in (100.0, 200.0):
        camera = Camera(focal, focal, 10.0, 20.0, 64, 64, np.eye(3), np.zeros(3))
        offsets.append(camera.project(point)[0] - [10.0, 20.0])
    np.testing.assert_allclose(offsets[0], [10.0, -5.0])  # f * x / z, f * y / z
    np.testing.assert_allclose(offsets[1], 2 * offsets[0])


def test_points_behind_camera_project_to_nan():
    pixels, depth = unit_camera().project(np.array([[0.1, 0.1, -1.0], [0.0, 0.0, 0.0]]))
    assert np.isnan(pixels).all() and (depth <= 0).all()


def test_look_at_is_orthonormal_and_sees_target_straight_ahead():
    eye, target = np.array([1.5, 2.0, 3.0]), np.array([-0.2, 0.9, 0.1])
    camera = Camera.look_at(eye, target, focal_length=200.0, width=101, height=81)
    np.testing.assert_allclose(camera.R @ camera.R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(camera.R) == pytest.approx(1.0)
    np.testing.assert_allclose(camera.center, eye, atol=1e-12)
    pixels, depth = camera.project(target)
    np.testing.assert_allclose(pixels, [50.0, 40.0], atol=1e-9)  # image centre (W-1)/2, (H-1)/2
    assert depth == pytest.approx(np.linalg.norm(target - eye))
    # World up shows as image up (smaller row); the camera's right is image right.
    above, _ = camera.project(target + [0.0, 0.1, 0.0])
    assert above[1] < 40.0
    right = camera.R[0]
    to_right, _ = camera.project(target + 0.1 * right)
    assert to_right[0] > 50.0 and to_right[1] == pytest.approx(40.0)


def test_orbit_positions_camera_on_sphere():
    target = np.array([0.0, 1.0, 0.0])
    front = Camera.orbit(3.0, 0.0, 0.0, 250.0, 64, 64, target)
    np.testing.assert_allclose(front.center, [0.0, 1.0, 3.0], atol=1e-12)
    side = Camera.orbit(3.0, 30.0, 90.0, 250.0, 64, 64, target)
    np.testing.assert_allclose(side.center, target + 3.0 * np.array([np.cos(np.pi / 6), 0.5, 0.0]), atol=1e-12)
    # The body's left (+x) appears on the image's right for the front camera (it faces the body).
    assert front.project([0.3, 1.0, 0.0])[0][0] > 31.5


def test_torch_projection_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(0)
    camera = Camera.orbit(2.5, 15.0, 40.0, 180.0, 96, 80, (0.1, 0.9, 0.0))
    points = rng.normal([0, 0.9, 0], 0.3, size=(5, 3))
    expected_pixels, expected_depth = camera.project(points)
    pixels, depth = camera.project_torch(torch.tensor(points))
    np.testing.assert_allclose(pixels.numpy(), expected_pixels, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(depth.numpy(), expected_depth, rtol=1e-12)

    K = torch.tensor(camera.intrinsics_matrix())
    R = torch.tensor(np.array(camera.R))
    t = torch.tensor(np.array(camera.t), requires_grad=True)
    p = torch.tensor(points, requires_grad=True)
    assert torch.autograd.gradcheck(lambda pts, tr: project_points_torch(pts, K, R, tr)[0], (p, t))
    loss = project_points_torch(p, K, R, t)[0].square().sum()
    loss.backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_camera_batch_matches_single_cameras():
    cameras = [Camera.orbit(2.0 + i, 10.0 * i, 50.0 * i, 150.0 + 10 * i, 64, 48, (0, 1, 0)) for i in range(3)]
    batch = CameraBatch.stack(cameras)
    points = np.random.default_rng(1).normal([0, 1, 0], 0.2, size=(7, 3))
    pixels, depth = batch.project(points)
    torch_pixels, _ = batch.project_torch(torch.tensor(points))
    for index, camera in enumerate(cameras):
        expected_pixels, expected_depth = camera.project(points)
        np.testing.assert_allclose(pixels[index], expected_pixels, atol=1e-9)
        np.testing.assert_allclose(depth[index], expected_depth)
        np.testing.assert_allclose(torch_pixels[index].numpy(), expected_pixels, atol=1e-9)
    restored = CameraBatch.from_arrays(**batch.to_arrays())
    np.testing.assert_allclose(restored.project(points)[0], pixels)
    assert restored[1].fx == cameras[1].fx and restored[2].width == 64


def test_camera_round_trip_and_scaling():
    camera = Camera.orbit(3.0, 12.0, -30.0, 200.0, 128, 96)
    restored = Camera.from_arrays(**camera.to_arrays())
    point = np.array([0.1, 0.2, -0.3])
    np.testing.assert_allclose(restored.project(point)[0], camera.project(point)[0])
    half = camera.scaled(0.5)
    assert (half.width, half.height) == (64, 48)
    # Image edges (-0.5) stay edges: u' + 0.5 = (u + 0.5) / 2.
    np.testing.assert_allclose(half.project(point)[0] + 0.5, (camera.project(point)[0] + 0.5) / 2)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Camera(-1.0, 1.0, 0.0, 0.0, 8, 8, np.eye(3), np.zeros(3)),
        lambda: Camera(1.0, 1.0, 0.0, 0.0, 0, 8, np.eye(3), np.zeros(3)),
        lambda: Camera(1.0, 1.0, 0.0, 0.0, 8, 8, 2 * np.eye(3), np.zeros(3)),
        lambda: Camera(1.0, 1.0, 0.0, 0.0, 8, 8, np.diag([1.0, 1.0, -1.0]), np.zeros(3)),
        lambda: Camera(1.0, 1.0, 0.0, 0.0, 8, 8, np.eye(3), np.zeros(2)),
        lambda: Camera.look_at((0, 2, 0), (0, 0, 0), up=(0, 1, 0)),
        lambda: Camera.look_at((0, 0, 0), (0, 0, 0)),
        lambda: Camera.orbit(2.0, 90.0, 0.0, 100.0, 8, 8),
        lambda: Camera.orbit(0.0, 0.0, 0.0, 100.0, 8, 8),
        lambda: unit_camera().project(np.zeros((4, 2))),
    ],
)
def test_camera_rejects_bad_input(build):
    with pytest.raises(ArtifactError):
        build()


# ---------------------------------------------------------------------------- rasteriser
@pytest.mark.parametrize("flip", [False, True])
def test_triangle_covers_exactly_the_pixel_centres_inside_it(flip):
    camera = unit_camera(width=40, height=30, focal=50.0, cx=19.5, cy=14.5)
    corners_2d = np.array([[3.3, 2.7], [35.1, 9.4], [12.6, 27.2]])
    if flip:
        corners_2d = corners_2d[::-1].copy()
    vertices = lift(corners_2d, 2.0, camera)
    fragments = rasterize(vertices, np.array([[0, 1, 2]]), camera, cull_back_faces=False)
    expected = analytic_coverage(corners_2d, 40, 30)
    assert expected.sum() > 300
    np.testing.assert_array_equal(fragments.mask, expected)
    np.testing.assert_array_equal(fragments.face_index[expected], 0)
    np.testing.assert_allclose(fragments.depth[expected], 2.0, rtol=1e-6)
    assert np.isinf(fragments.depth[~expected]).all()
    assert (fragments.face_index[~expected] == -1).all()


def test_shared_edges_and_pixel_centres_on_edges_are_covered_once():
    """A square with corners ON pixel centres, split along its diagonal (which passes through
    pixel centres): the two halves are disjoint, and together they follow the top-left rule:
    the left and top edges are in, the right and bottom edges out."""
    camera = unit_camera(width=16, height=16)
    corners = np.array([[2.0, 3.0, 1.0], [10.0, 3.0, 1.0], [10.0, 11.0, 1.0], [2.0, 11.0, 1.0]])
    halves = [np.array([[0, 1, 2]]), np.array([[0, 2, 3]])]
    masks = [rasterize(corners, faces, camera, cull_back_faces=False).mask for faces in halves]
    assert not (masks[0] & masks[1]).any()
    expected = np.zeros((16, 16), dtype=bool)
    expected[3:11, 2:10] = True  # rows 3..10, columns 2..9
    np.testing.assert_array_equal(masks[0] | masks[1], expected)
    both = rasterize(corners, np.concatenate(halves), camera, cull_back_faces=False)
    np.testing.assert_array_equal(both.mask, expected)


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_hides_farther_one_in_either_draw_order(near_first):
    camera = unit_camera(width=32, height=32, focal=40.0, cx=15.5, cy=15.5)
    near_2d = np.array([[2.2, 3.1], [25.7, 6.3], [8.4, 28.9]])
    far_2d = np.array([[6.1, 1.4], [30.2, 20.8], [3.3, 26.6]])
    near, far = lift(near_2d, 2.0, camera), lift(far_2d, 3.0, camera)
    vertices = np.concatenate([near, far] if near_first else [far, near])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    near_face = 0 if near_first else 1
    fragments = rasterize(vertices, faces, camera, cull_back_faces=False)
    in_near, in_far = analytic_coverage(near_2d, 32, 32), analytic_coverage(far_2d, 32, 32)
    assert (in_near & in_far).sum() > 50
    np.testing.assert_array_equal(fragments.face_index[in_near], near_face)
    np.testing.assert_array_equal(fragments.face_index[in_far & ~in_near], 1 - near_face)
    np.testing.assert_allclose(fragments.depth[in_near], 2.0, rtol=1e-6)
    np.testing.assert_allclose(fragments.depth[in_far & ~in_near], 3.0, rtol=1e-6)


def test_interpenetrating_planes_resolve_per_pixel():
    """Two quads that cross each other: each pixel shows whichever plane is nearer there."""
    camera = unit_camera(width=40, height=20, focal=30.0, cx=19.5, cy=9.5)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    xs, ys = np.array([-3.0, 3.0, 3.0, -3.0]), np.array([-3.0, -3.0, 3.0, 3.0])
    tilted = np.stack([xs, ys, 2.0 + 0.2 * xs], axis=1)  # z = 2 + 0.2 x
    level = np.stack([xs, ys, np.full(4, 2.0)], axis=1)
    fragments = rasterize(
        np.concatenate([tilted, level]), np.concatenate([quad, quad + 4]), camera, cull_back_faces=False
    )
    assert fragments.mask.all()
    x_over_z = (np.arange(40) - camera.cx) / camera.fx  # ray x / z per column
    tilted_depth = 2.0 / (1.0 - 0.2 * x_over_z)  # z = 2 + 0.2 * (x/z) * z
    expected_depth = np.minimum(tilted_depth, 2.0)
    np.testing.assert_allclose(fragments.depth, np.broadcast_to(expected_depth, (20, 40)), rtol=1e-5)
    expected_plane = np.where(tilted_depth < 2.0, 0, 1)  # tilted faces are 0-1, level 2-3
    np.testing.assert_array_equal(fragments.face_index // 2, np.broadcast_to(expected_plane, (20, 40)))


def test_depth_buffer_and_perspective_correct_barycentrics_on_planes():
    camera = unit_camera(width=30, height=24, focal=25.0, cx=14.5, cy=11.5)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    plane = np.array([[-4.0, -4.0, 3.0], [4.0, -4.0, 3.0], [4.0, 4.0, 3.0], [-4.0, 4.0, 3.0]])
    fragments = rasterize(plane, quad[:, ::-1], camera)  # wound to face the camera
    assert fragments.mask.all()
    np.testing.assert_allclose(fragments.depth, 3.0, rtol=1e-7)

    # A plane receding from the camera: y = 1 (below the camera), z from 1 to 9.
    floor = np.array([[-5.0, 1.0, 1.0], [-5.0, 1.0, 9.0], [5.0, 1.0, 9.0], [5.0, 1.0, 1.0]])
    fragments = rasterize(floor, quad, camera, cull_back_faces=False)
    rows, cols = np.nonzero(fragments.mask)
    assert len(rows) > 100
    ray_y = (rows - camera.cy) / camera.fy
    np.testing.assert_allclose(fragments.depth[rows, cols], 1.0 / ray_y, rtol=1e-5)
    # Interpolating the vertex positions gives the 3D point on each pixel's ray.
    points = interpolate(fragments, quad, floor)[rows, cols]
    ray = np.stack([(cols - camera.cx) / camera.fx, ray_y, np.ones_like(ray_y)], axis=1)
    np.testing.assert_allclose(points, ray * (1.0 / ray_y)[:, None], rtol=1e-4, atol=1e-5)


def test_back_faces_are_culled_or_kept():
    camera = unit_camera(width=20, height=20, focal=20.0, cx=9.5, cy=9.5)
    corners_2d = np.array([[2.3, 2.1], [3.6, 17.2], [17.8, 9.4]])
    vertices = lift(corners_2d, 2.0, camera)
    corners = vertices
    normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    faces = np.array([[0, 1, 2]]) if normal @ corners[0] < 0 else np.array([[0, 2, 1]])  # front-facing
    assert rasterize(vertices, faces, camera).mask.sum() > 50
    assert not rasterize(vertices, faces[:, ::-1], camera).mask.any()
    np.testing.assert_array_equal(
        rasterize(vertices, faces[:, ::-1], camera, cull_back_faces=False).mask, rasterize(vertices, faces, camera).mask
    )


def test_near_plane_clipping_keeps_the_visible_part_of_a_floor():
    """A floor running from behind the camera to far in front: every covered pixel lies on
    the plane, no depth is nearer than the near plane, and the horizon splits the image."""
    camera = unit_camera(width=32, height=32, focal=20.0, cx=15.5, cy=15.5)
    floor = np.array([[-50.0, 1.0, -5.0], [-50.0, 1.0, 60.0], [50.0, 1.0, 60.0], [50.0, 1.0, -5.0]])
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    fragments = rasterize(floor, quad, camera, near=0.1, cull_back_faces=False)
    rows, cols = np.nonzero(fragments.mask)
    assert rows.min() == 16 and not fragments.mask[:16].any()  # rays with y <= 0 never hit y = 1
    assert (fragments.depth[fragments.mask] >= 0.1).all()
    ray_y = (rows - camera.cy) / camera.fy
    depth = fragments.depth[rows, cols]
    expected = 1.0 / ray_y
    visible = expected <= 60.0  # beyond the far edge of the quad there is nothing
    np.testing.assert_array_equal(fragments.mask[rows, cols], True)
    np.testing.assert_allclose(depth[visible], expected[visible], rtol=1e-5)
    points = interpolate(fragments, quad, floor)[rows, cols]
    np.testing.assert_allclose(points[:, 1], 1.0, atol=1e-4)
    # A triangle entirely behind the camera draws nothing.
    behind = floor.copy()
    behind[:, 2] = -1.0
    assert not rasterize(behind, quad, camera, cull_back_faces=False).mask.any()


def test_rasterize_rejects_bad_input():
    camera = unit_camera()
    good = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    with pytest.raises(ArtifactError, match="faces"):
        rasterize(good, np.array([[0, 1, 3]]), camera)
    with pytest.raises(ArtifactError, match="vertices"):
        rasterize(np.where(np.eye(3, dtype=bool), np.nan, good), np.array([[0, 1, 2]]), camera)
    with pytest.raises(ArtifactError, match="vertices"):
        rasterize(good[:, :2], np.array([[0, 1, 2]]), camera)
    with pytest.raises(ArtifactError, match="near"):
        rasterize(good, np.array([[0, 1, 2]]), camera, near=0.0)
    empty = rasterize(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), camera)
    assert not empty.mask.any() and np.isinf(empty.depth).all()


def test_lambertian_shading_known_values():
    camera = unit_camera(width=16, height=16, focal=16.0, cx=7.5, cy=7.5)
    wall = np.array([[-2.0, -2.0, 2.0], [2.0, -2.0, 2.0], [2.0, 2.0, 2.0], [-2.0, 2.0, 2.0]])
    faces = np.array([[0, 2, 1], [0, 3, 2]])  # normal (0, 0, -1): facing the camera
    albedo = np.array([[0.8, 0.4, 0.2]] * 2)
    lit = DirectionalLight(to_light=np.array([0.0, 0.0, -1.0]), colour=np.ones(3), intensity=0.5, ambient=0.25)
    result = render_mesh(wall, faces, camera, face_colors=albedo, light=lit, smooth=False)
    assert result.mask.all()
    np.testing.assert_array_equal(result.image[5, 5], np.round(albedo[0] * 0.75 * 255).astype(np.uint8))
    grazing = DirectionalLight(to_light=np.array([1.0, 0.0, 0.0]), colour=np.ones(3), intensity=0.5, ambient=0.25)
    result = render_mesh(
        wall, faces, camera, vertex_colors=np.tile([204, 102, 51], (4, 1)).astype(np.uint8), light=grazing, smooth=True
    )
    np.testing.assert_array_equal(result.image[5, 5], np.round(np.array([204, 102, 51]) * 0.25).astype(np.uint8))
    # Only back faces in view: culled by default, lit with the flipped normal when kept.
    back = render_mesh(wall, faces[:, ::-1], camera, face_colors=albedo, light=lit, smooth=False, background=(0, 0, 0))
    assert not back.mask.any() and (back.image == 0).all()
    kept = render_mesh(wall, faces[:, ::-1], camera, face_colors=albedo, light=lit, smooth=False, cull_back_faces=False)
    np.testing.assert_array_equal(kept.image[5, 5], np.round(albedo[0] * 0.75 * 255).astype(np.uint8))


def test_vertex_normals_of_an_ellipsoid_point_outwards():
    body = mannequin()
    normals = vertex_normals(body["vertices"], body["faces"])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    head = body["weights"][:, 15] > 0.5
    centre = body["vertices"][head].mean(axis=0)
    outward = np.einsum("ij,ij->i", normals[head], body["vertices"][head] - centre)
    assert (outward > 0).all()


def test_closed_body_renders_same_with_and_without_culling():
    """On a closed mesh back faces are always hidden, so culling must not change the result."""
    body = mannequin()
    camera = framing_camera(body["vertices"], 96, 96, azimuth_deg=35.0, elevation_deg=15.0)
    culled = render_mesh(body["vertices"], body["faces"], camera)
    kept = render_mesh(body["vertices"], body["faces"], camera, cull_back_faces=False)
    assert culled.mask.sum() > 500
    np.testing.assert_array_equal(culled.face_index, kept.face_index)
    np.testing.assert_array_equal(culled.image, kept.image)


def test_chunked_rasterisation_matches_single_pass(monkeypatch):
    """Splitting the candidates into many chunks (as for huge triangles) changes nothing."""
    import humandiff.render.raster as raster

    body = mannequin()
    camera = framing_camera(body["vertices"], 64, 64, azimuth_deg=120.0)
    vertices_camera = camera.world_to_camera(body["vertices"])
    whole = rasterize(vertices_camera, body["faces"], camera, cull_back_faces=False)
    monkeypatch.setattr(raster, "MAX_CANDIDATES_PER_CHUNK", 50)
    chunked = rasterize(vertices_camera, body["faces"], camera, cull_back_faces=False)
    np.testing.assert_array_equal(chunked.face_index, whole.face_index)
    np.testing.assert_array_equal(chunked.depth, whole.depth)
    np.testing.assert_array_equal(chunked.barycentric, whole.barycentric)


# ---------------------------------------------------------------------------- scenes and ground truth
@pytest.fixture(scope="module")
def body() -> dict[str, np.ndarray]:
    return mannequin()


def test_render_person_outputs_and_ground_truth_joints(body):
    camera = framing_camera(body["vertices"], 128, 128, azimuth_deg=20.0, elevation_deg=10.0, fill=0.8)
    out = render_person(
        body["vertices"], body["faces"], body["weights"], camera, np.random.default_rng(3), joints=body["joints"]
    )
    assert out["image"].shape == (128, 128, 3) and out["image"].dtype == np.uint8
    assert out["mask"].dtype == bool and out["depth"].dtype == np.float32
    assert np.isinf(out["depth"][~out["mask"]]).all() and np.isfinite(out["depth"][out["mask"]]).all()
    # Ground truth equals the projection of the 3D joints with the stored camera.
    stored = Camera.from_arrays(**camera.to_arrays())
    expected, expected_depth = stored.project(body["joints"])
    np.testing.assert_allclose(out["joints_2d"], expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(out["joint_depth"], expected_depth, rtol=1e-6)
    pixels, _ = project_joints(body["joints"], camera)
    np.testing.assert_array_equal(pixels, out["joints_2d"])
    # The body fills most of the frame and every joint lands on its silhouette or close to it.
    rows, _ = np.nonzero(out["body_mask"])
    assert 0.65 * 128 < rows.max() - rows.min() < 0.9 * 128
    assert out["in_image"].all()


def test_render_person_is_deterministic_given_the_generator(body):
    camera = framing_camera(body["vertices"], 96, 96, azimuth_deg=-40.0)
    options = SceneOptions(occluder_probability=1.0)
    runs = [
        render_person(
            body["vertices"],
            body["faces"],
            body["weights"],
            camera,
            np.random.default_rng(seed),
            options,
            joints=body["joints"],
        )
        for seed in (7, 7, 8)
    ]
    for key in ("image", "mask", "depth", "occluder_mask", "visible"):
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    assert not np.array_equal(runs[0]["image"], runs[2]["image"])


def test_occluders_hide_exactly_the_joints_under_them(body):
    camera = framing_camera(body["vertices"], 128, 128, azimuth_deg=0.0, elevation_deg=5.0)
    options = SceneOptions(occluder_probability=1.0, max_occluders=2, occluder_size_range=(0.3, 0.5))
    hidden_any = False
    for seed in range(6):
        out = render_person(
            body["vertices"],
            body["faces"],
            body["weights"],
            camera,
            np.random.default_rng(seed),
            options,
            joints=body["joints"],
        )
        occluders = out["occluder_mask"]
        assert occluders.any()
        np.testing.assert_array_equal(out["mask"], out["body_mask"] & ~occluders)
        cols = np.floor(out["joints_2d"][:, 0] + 0.5).astype(int)
        rows = np.floor(out["joints_2d"][:, 1] + 0.5).astype(int)
        np.testing.assert_array_equal(out["occluded_by_object"], occluders[rows, cols])
        assert not (out["visible"] & out["occluded_by_object"]).any()
        hidden_any |= bool(out["occluded_by_object"].any())
    assert hidden_any


def test_draw_occluders_paints_only_its_mask():
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    body_mask = np.zeros((64, 64), dtype=bool)
    body_mask[10:54, 25:40] = True
    occluders = draw_occluders(image, body_mask, rng, count=2)
    assert (occluders & body_mask).any()
    assert (image[~occluders] == 0).all()
    assert not draw_occluders(image, body_mask, rng, count=0).any()


def test_self_occlusion_from_the_side(body):
    """Seen from the body's left (+x), the right wrist and hand are behind the torso; from the
    front no joint is hidden."""
    left_side = framing_camera(body["vertices"], 128, 128, azimuth_deg=90.0, elevation_deg=0.0)
    options = SceneOptions(occluder_probability=0.0)
    out = render_person(
        body["vertices"],
        body["faces"],
        body["weights"],
        left_side,
        np.random.default_rng(0),
        options,
        joints=body["joints"],
    )
    assert out["self_occluded"][[21, 23]].all() and out["visible"][[20, 22]].all()
    front = framing_camera(body["vertices"], 128, 128, azimuth_deg=0.0, elevation_deg=0.0)
    out = render_person(
        body["vertices"],
        body["faces"],
        body["weights"],
        front,
        np.random.default_rng(0),
        options,
        joints=body["joints"],
    )
    assert out["visible"].all()


def test_joint_visibility_rules():
    depth = np.full((10, 10), np.inf, dtype=np.float32)
    depth[2:8, 2:8] = 2.0
    face_index = np.where(np.isfinite(depth), 0, -1)
    occluders = np.zeros((10, 10), dtype=bool)
    occluders[0:2, 0:2] = True
    joints_2d = np.array([[5.0, 5.0], [5.0, 5.0], [5.2, 4.8], [0.4, 0.6], [9.6, 3.0], [5.0, 5.0], [9.0, 9.0]])
    joint_depth = np.array([2.05, 2.5, 2.12, 3.0, 3.0, -1.0, 3.0])
    flags = joint_visibility(joints_2d, joint_depth, depth, occluders, tolerance=0.1)
    # 0: just behind the surface (within tolerance); 1: 0.5 behind, hidden; 2: 0.12 > 0.1, hidden;
    # 3: under an occluder; 4: u = 9.6 is past the last pixel's edge (9.5); 5: behind the camera.
    np.testing.assert_array_equal(flags["in_image"], [1, 1, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(flags["self_occluded"], [0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(flags["occluded_by_object"], [0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(flags["visible"], [1, 0, 0, 0, 0, 0, 1])
    # The surface belongs to part 1: joints 1 (its own part) and 0 (its parent) see it as their
    # own flesh; joint 2 (a sibling) stays hidden behind it.
    parents = np.array([-1, 0, 0, 0, 0, 0, 0])
    own = joint_visibility(joints_2d, joint_depth, depth, occluders, face_index, np.array([1]), parents, 0.1)
    np.testing.assert_array_equal(own["self_occluded"], [0, 0, 1, 0, 0, 0, 0])
    with pytest.raises(ArtifactError):
        joint_visibility(joints_2d, joint_depth, depth, face_index=face_index)
    with pytest.raises(ArtifactError):
        joint_visibility(joints_2d[:, :1], joint_depth, depth)


@pytest.mark.parametrize("kind", BACKGROUND_KINDS)
def test_backgrounds_are_images_and_deterministic(kind):
    camera = Camera.orbit(4.0, 10.0, 30.0, 90.0, 48, 40, (0.0, 1.0, 0.0))
    first = make_background(kind, np.random.default_rng(5), camera)
    second = make_background(kind, np.random.default_rng(5), camera)
    assert first.shape == (40, 48, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)
    assert first.std() > 0  # not a flat fill


def test_floor_background_horizon_follows_the_camera():
    """A level camera at 1 m: rays below the optical axis hit the floor, rays above see the
    wall gradient, so the checker pattern appears only in the lower half."""
    camera = Camera.look_at((0.0, 1.0, 5.0), (0.0, 1.0, 0.0), focal_length=40.0, width=64, height=64)
    image = make_background("floor", np.random.default_rng(2), camera, floor_height=0.0).astype(int)
    upper, lower = image[:31], image[33:]
    assert np.abs(np.diff(lower[-1], axis=0)).max() > 20  # tile edges along the bottom row
    assert np.abs(np.diff(upper[5], axis=0)).max() <= 2  # smooth wall


def test_scene_rejects_bad_input(body):
    camera = framing_camera(body["vertices"], 32, 32)
    with pytest.raises(ArtifactError):
        SceneOptions(background_kinds=("sky",))
    with pytest.raises(ArtifactError):
        SceneOptions(occluder_probability=1.5)
    with pytest.raises(ArtifactError, match="skin_weights"):
        render_person(body["vertices"], body["faces"], body["weights"][:10], camera, np.random.default_rng(0))
    with pytest.raises(ArtifactError, match="rng"):
        render_person(body["vertices"], body["faces"], body["weights"], camera, 0)
    # Clothing needs SMPL's 24 joints; other skeletons fall back to part colours.
    weights = body["weights"][:, :12] + body["weights"][:, 12:]
    out = render_person(
        body["vertices"],
        body["faces"],
        weights,
        camera,
        np.random.default_rng(0),
        SceneOptions(colouring_kinds=("clothing",)),
    )
    assert out["colouring"] == "parts"


BODY_FILE = Path(__file__).resolve().parents[1] / "data" / "body" / "anny_smpl_neutral.npz"


@pytest.mark.skipif(not BODY_FILE.is_file(), reason="embedded body model not built")
def test_embedded_body_in_t_pose():
    """The real body (rest T-pose): seen from the front every joint is visible; seen from its
    left, the right arm's joints hide behind the left arm and torso."""
    from humandiff.body import load_body_arrays

    arrays = load_body_arrays(BODY_FILE)
    vertices, faces, weights = arrays["v_template"], arrays["f"], arrays["weights"]
    joints = arrays["J_regressor"] @ vertices
    options = SceneOptions(occluder_probability=0.0)
    front = framing_camera(vertices, 128, 128, azimuth_deg=0.0, elevation_deg=0.0)
    out = render_person(vertices, faces, weights, front, np.random.default_rng(0), options, joints=joints)
    assert out["visible"].all() and 1000 < out["mask"].sum() < 0.5 * 128 * 128
    side = framing_camera(vertices, 128, 128, azimuth_deg=90.0, elevation_deg=0.0)
    out = render_person(vertices, faces, weights, side, np.random.default_rng(0), options, joints=joints)
    assert out["self_occluded"][[19, 21]].all() and out["visible"][[18, 20]].all()


@pytest.mark.parametrize("turn_deg", [0.0, 135.0])
def test_clothing_has_a_face_in_front_and_hair_behind(turn_deg):
    """The front/back cue: on the real body, turned about the vertical by any angle, the head's
    rear half is mostly hair and its frontmost vertices keep the skin tone; the chest print sits
    on the front of the torso."""
    from humandiff.body import load_body_arrays
    from humandiff.render.scene import clothing_colours

    arrays = load_body_arrays(BODY_FILE)
    angle = np.radians(turn_deg)
    turn = np.array([[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]])
    vertices, weights = arrays["v_template"] @ turn.T, arrays["weights"]
    forward = turn @ np.array([0.0, 0.0, 1.0])  # SMPL faces +z at rest
    dominant = weights.argmax(1)
    head = np.flatnonzero(dominant == 15)
    depth = (vertices[head] - vertices[head].mean(0)) @ forward
    height = vertices[head, 1]
    back = head[(depth < np.quantile(depth, 0.3)) & (height > np.quantile(height, 0.25))]  # above the nape
    face = head[depth > np.quantile(depth, 0.95)]
    chest = np.flatnonzero(np.isin(dominant, (6, 9)))
    chest_depth = (vertices[chest] - vertices[chest].mean(0)) @ forward
    hands = np.flatnonzero(np.isin(dominant, (22, 23)))
    printed, compared = 0, 0
    for seed in range(12):
        colours = clothing_colours(vertices, weights, np.random.default_rng(seed))
        hair_colour = colours[head[np.argmax(vertices[head, 1])]]  # the crown is always hair
        skin_colour = colours[hands].mean(0)  # hands are always bare
        if np.abs(hair_colour - skin_colour).max() > 0.25:  # tell hair from skin only when they differ
            compared += 1
            hair_like = lambda idx: (np.abs(colours[idx] - hair_colour).max(1) < np.abs(colours[idx] - skin_colour).max(1))  # noqa: E731
            assert hair_like(back).mean() > 0.8 and hair_like(face).mean() < 0.2
        rear_torso, front_torso = chest[chest_depth < np.quantile(chest_depth, 0.3)], chest[chest_depth > np.quantile(chest_depth, 0.9)]
        # a print changes the front of the chest and never its back
        if np.abs(colours[front_torso].mean(0) - colours[rear_torso].mean(0)).max() > 0.15:
            printed += 1
    assert compared >= 4 and 2 <= printed <= 10  # about half the shirts
