"""Tests for humandiff.geometry.rotations: known answers, round trips, orthonormality, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from humandiff.geometry import rotations as rot


def random_axis_angle(generator: torch.Generator, n: int, dtype=torch.float64) -> torch.Tensor:
    """Axis-angle vectors with angles spread over [0, pi), plus tiny and near-pi ones."""
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=dtype), dim=-1)
    angle = torch.rand(n, 1, generator=generator, dtype=dtype) * (math.pi - 1e-3)
    angle[:3] = torch.tensor([[0.0], [1e-7], [math.pi - 1e-4]], dtype=dtype)
    return axis * angle


def assert_rotation_matrix(matrix: torch.Tensor, atol: float = 1e-10) -> None:
    eye = torch.eye(3, dtype=matrix.dtype).expand_as(matrix)
    assert torch.allclose(matrix.transpose(-1, -2) @ matrix, eye, atol=atol)
    assert torch.allclose(torch.linalg.det(matrix), torch.ones(matrix.shape[:-2], dtype=matrix.dtype), atol=atol)


@pytest.mark.parametrize(
    "axis, source, target",
    [
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]),  # about x: y -> z
        ([0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),  # about y: z -> x
        ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),  # about z: x -> y
    ],
)
def test_quarter_turns_about_each_axis(axis, source, target):
    axis_angle = torch.tensor(axis, dtype=torch.float64) * (math.pi / 2)
    source_t, target_t = torch.tensor(source, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)
    matrix = rot.axis_angle_to_matrix(axis_angle)
    quaternion = rot.axis_angle_to_quaternion(axis_angle)
    assert torch.allclose(matrix @ source_t, target_t, atol=1e-12)
    assert torch.allclose(rot.quaternion_apply(quaternion, source_t), target_t, atol=1e-12)
    # the axis itself is fixed and the quaternion is (cos 45, sin 45 * axis)
    assert torch.allclose(matrix @ axis_angle, axis_angle, atol=1e-12)
    expected_q = torch.tensor([math.cos(math.pi / 4)] + [math.sin(math.pi / 4) * a for a in axis], dtype=torch.float64)
    assert torch.allclose(quaternion, expected_q, atol=1e-12)


def test_axis_angle_matrix_quaternion_round_trips():
    generator = torch.Generator().manual_seed(0)
    axis_angle = random_axis_angle(generator, 500)
    matrix = rot.axis_angle_to_matrix(axis_angle)
    assert_rotation_matrix(matrix)
    assert torch.allclose(rot.matrix_to_axis_angle(matrix), axis_angle, atol=1e-8)
    quaternion = rot.axis_angle_to_quaternion(axis_angle)
    assert torch.allclose(quaternion.norm(dim=-1), torch.ones(500, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(rot.quaternion_to_matrix(quaternion), matrix, atol=1e-12)
    assert torch.allclose(rot.matrix_to_quaternion(matrix), quaternion, atol=1e-10)
    assert torch.allclose(rot.quaternion_to_axis_angle(quaternion), axis_angle, atol=1e-8)
    # q and -q are the same rotation
    assert torch.allclose(rot.quaternion_to_matrix(-quaternion), matrix, atol=1e-12)
    assert torch.allclose(rot.quaternion_to_axis_angle(-quaternion), axis_angle, atol=1e-8)


def test_matrix_to_quaternion_on_half_turns_and_float32():
    half_turns = torch.tensor([[math.pi, 0, 0], [0, math.pi, 0], [0, 0, math.pi]], dtype=torch.float64)
    matrix = rot.axis_angle_to_matrix(half_turns)
    assert torch.allclose(rot.quaternion_to_matrix(rot.matrix_to_quaternion(matrix)), matrix, atol=1e-12)
    assert torch.allclose(rot.matrix_to_axis_angle(matrix).abs(), half_turns, atol=1e-6)
    generator = torch.Generator().manual_seed(1)
    axis_angle = random_axis_angle(generator, 200, dtype=torch.float32)
    matrix32 = rot.axis_angle_to_matrix(axis_angle)
    assert matrix32.dtype == torch.float32
    assert torch.allclose(rot.matrix_to_axis_angle(matrix32), axis_angle, atol=2e-3)
    assert torch.allclose(rot.quaternion_to_matrix(rot.matrix_to_quaternion(matrix32)), matrix32, atol=1e-5)


def test_quaternion_algebra_matches_matrices():
    generator = torch.Generator().manual_seed(2)
    a = rot.axis_angle_to_quaternion(random_axis_angle(generator, 100))
    b = rot.axis_angle_to_quaternion(random_axis_angle(generator, 100))
    vectors = torch.randn(100, 3, generator=generator, dtype=torch.float64)
    product = rot.quaternion_multiply(a, b)
    matrix_a, matrix_b = rot.quaternion_to_matrix(a), rot.quaternion_to_matrix(b)
    assert torch.allclose(rot.quaternion_to_matrix(product), matrix_a @ matrix_b, atol=1e-12)
    assert torch.allclose(rot.quaternion_apply(a, vectors), (matrix_a @ vectors[..., None])[..., 0], atol=1e-12)
    identity = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).expand(100, 4)
    assert torch.allclose(rot.quaternion_multiply(a, rot.quaternion_conjugate(a)), identity, atol=1e-12)
    scaled = 3.0 * a
    assert torch.allclose(rot.quaternion_multiply(scaled, rot.quaternion_invert(scaled)), identity, atol=1e-12)
    # broadcasting: one rotation applied to many vectors
    many = rot.quaternion_apply(a[:1], vectors)
    assert many.shape == (100, 3)


def test_from_two_vectors_is_the_smallest_rotation():
    generator = torch.Generator().manual_seed(3)
    u = torch.randn(300, 3, generator=generator, dtype=torch.float64)
    v = torch.randn(300, 3, generator=generator, dtype=torch.float64) * 2.5
    matrix = rot.matrix_from_two_vectors(u, v)
    assert_rotation_matrix(matrix)
    u_unit, v_unit = torch.nn.functional.normalize(u, dim=-1), torch.nn.functional.normalize(v, dim=-1)
    assert torch.allclose((matrix @ u_unit[..., None])[..., 0], v_unit, atol=1e-12)
    # smallest: the rotation angle equals the angle between the vectors, axis perpendicular to both
    axis_angle = rot.matrix_to_axis_angle(matrix)
    between = torch.acos((u_unit * v_unit).sum(-1).clamp(-1, 1))
    assert torch.allclose(axis_angle.norm(dim=-1), between, atol=1e-7)
    assert torch.allclose((axis_angle * u).sum(-1), torch.zeros(300, dtype=torch.float64), atol=1e-8)
    numpy_matrix = rot.matrix_from_two_vectors_np(u.numpy(), v.numpy())
    assert np.allclose(numpy_matrix, matrix.numpy(), atol=1e-12)


def test_from_two_vectors_parallel_and_opposite():
    axes = torch.eye(3, dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64).expand(3, 3, 3)
    assert torch.allclose(rot.matrix_from_two_vectors(axes, 2 * axes), identity, atol=1e-12)
    tilted = torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64)
    for source in torch.cat([axes, tilted]):
        for matrix in (
            rot.matrix_from_two_vectors(source, -source),
            torch.from_numpy(rot.matrix_from_two_vectors_np(source.numpy(), -source.numpy())),
        ):
            assert_rotation_matrix(matrix)
            assert torch.allclose(matrix @ source, -source, atol=1e-12)


def test_from_two_vectors_with_a_zero_vector_is_identity():
    zero, other = np.zeros((1, 3)), np.array([[0.2, -1.0, 0.4]])
    for source, target in ((zero, other), (other, zero)):
        assert np.allclose(rot.quaternion_from_two_vectors_np(source, target), [[1.0, 0.0, 0.0, 0.0]])
        torch_q = rot.quaternion_from_two_vectors(torch.from_numpy(source), torch.from_numpy(target))
        assert torch.allclose(torch_q, torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64))


def test_rotation_6d_round_trip_and_gram_schmidt():
    generator = torch.Generator().manual_seed(4)
    matrix = rot.axis_angle_to_matrix(random_axis_angle(generator, 200))
    six = rot.matrix_to_rotation_6d(matrix)
    assert six.shape == (200, 6)
    assert torch.equal(six[:, :3], matrix[:, :, 0]) and torch.equal(six[:, 3:], matrix[:, :, 1])
    assert torch.allclose(rot.rotation_6d_to_matrix(six), matrix, atol=1e-12)
    # any (non-degenerate) 6D vector maps to a proper rotation whose first column is along a1
    noisy = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    from_noise = rot.rotation_6d_to_matrix(noisy)
    assert_rotation_matrix(from_noise)
    assert torch.allclose(from_noise[:, :, 0], torch.nn.functional.normalize(noisy[:, :3], dim=-1), atol=1e-12)
    assert np.allclose(rot.rotation_6d_to_matrix_np(noisy.numpy()), from_noise.numpy(), atol=1e-12)
    assert np.allclose(rot.matrix_to_rotation_6d_np(matrix.numpy()), six.numpy())


def test_yaw_matches_axis_angle_about_y_and_turns_left():
    angles = torch.linspace(-4.0, 4.0, 17, dtype=torch.float64)
    axis_angle = torch.stack([torch.zeros_like(angles), angles, torch.zeros_like(angles)], -1)
    assert torch.allclose(rot.yaw_to_matrix(angles), rot.axis_angle_to_matrix(axis_angle), atol=1e-12)
    yaw_matrix = rot.yaw_to_matrix(angles)
    assert torch.allclose(rot.quaternion_to_matrix(rot.yaw_to_quaternion(angles)), yaw_matrix, atol=1e-12)
    assert np.allclose(rot.yaw_to_matrix_np(angles.numpy()), rot.yaw_to_matrix(angles).numpy(), atol=1e-12)
    # a body facing +Z with its left at +X turns to its left under a positive yaw
    quarter = rot.yaw_to_matrix(torch.tensor(math.pi / 2, dtype=torch.float64))
    plus_z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    plus_x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(quarter @ plus_z, plus_x, atol=1e-12)


@pytest.mark.parametrize(
    "function, point",
    [
        (rot.axis_angle_to_matrix, torch.zeros(3)),
        (rot.axis_angle_to_quaternion, torch.zeros(3)),
        (rot.quaternion_to_axis_angle, torch.tensor([1.0, 0.0, 0.0, 0.0])),
        (rot.quaternion_to_axis_angle, torch.tensor([0.0, 1.0, 0.0, 0.0])),  # half turn
        (rot.matrix_to_axis_angle, torch.eye(3)),
        (rot.matrix_to_quaternion, torch.eye(3)),
        (rot.rotation_6d_to_matrix, torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])),
        (rot.quaternion_from_two_vectors, (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))),
    ],
)
def test_gradients_finite_at_identity(function, point):
    inputs = point if isinstance(point, tuple) else (point,)
    inputs = tuple(x.clone().double().requires_grad_(True) for x in inputs)
    output = function(*inputs)
    weights = torch.linspace(0.5, 1.5, output.numel(), dtype=torch.float64).reshape(output.shape)
    (output * weights).sum().backward()
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_gradcheck_at_generic_points():
    generator = torch.Generator().manual_seed(5)
    axis_angle = random_axis_angle(generator, 6)[3:].requires_grad_(True)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (axis_angle,))
    assert torch.autograd.gradcheck(lambda a: rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(a)), (axis_angle,))
    six = torch.randn(4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot.rotation_6d_to_matrix, (six,))
    small = torch.full((2, 3), 1e-6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix, (small,))


def test_numpy_wrappers_keep_float32_and_agree():
    rng = np.random.default_rng(6)
    axis_angle = rng.normal(size=(10, 3)).astype(np.float32)
    matrix = rot.axis_angle_to_matrix_np(axis_angle)
    assert matrix.dtype == np.float32 and matrix.shape == (10, 3, 3)
    assert np.allclose(rot.matrix_to_axis_angle_np(rot.axis_angle_to_matrix_np(axis_angle.astype(np.float64))),
                       rot.matrix_to_axis_angle(torch.from_numpy(matrix.astype(np.float64))).numpy(), atol=1e-5)
    quaternion = rot.matrix_to_quaternion_np(matrix.astype(np.float64))
    assert np.allclose(rot.quaternion_to_matrix_np(quaternion), matrix, atol=1e-6)
    a, b = quaternion[:5], quaternion[5:]
    vectors = rng.normal(size=(5, 3))
    expect = rot.quaternion_multiply(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.allclose(rot.quaternion_multiply_np(a, b), expect, atol=1e-12)
    expect_rotated = rot.quaternion_apply(torch.from_numpy(a), torch.from_numpy(vectors)).numpy()
    assert np.allclose(rot.quaternion_apply_np(a, vectors), expect_rotated, atol=1e-12)
    assert np.allclose(rot.quaternion_conjugate_np(a), rot.quaternion_conjugate(torch.from_numpy(a)).numpy())
    assert np.allclose(
        rot.quaternion_from_two_vectors_np(vectors, vectors[::-1]),
        rot.quaternion_from_two_vectors(torch.from_numpy(vectors), torch.from_numpy(vectors[::-1].copy())).numpy(),
        atol=1e-12,
    )
