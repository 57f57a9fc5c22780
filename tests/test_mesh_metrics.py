"""Known answers and invariances of the mesh-recovery metrics (humandiff.eval.mesh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humandiff.eval.mesh import (
    SMPL_TO_LSP14,
    acceleration_error,
    bbox_size,
    mpjpe,
    mpve,
    pa_mpjpe,
    pck,
    procrustes_align,
)
from humandiff.io.artifacts import ArtifactError


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture
def skeletons() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 24, 3))


def test_mpjpe_identical_is_zero_and_translation_is_removed_by_root_alignment(skeletons):
    assert np.allclose(mpjpe(skeletons, skeletons), 0.0)
    shifted = skeletons + np.array([0.3, -0.2, 1.0])
    assert np.allclose(mpjpe(shifted, skeletons), 0.0)
    assert np.allclose(mpjpe(shifted, skeletons, root=None), np.linalg.norm([0.3, -0.2, 1.0]))


def test_mpjpe_known_value_for_one_displaced_joint(skeletons):
    moved = skeletons.copy()
    moved[:, 7] += np.array([0.0, 0.048, 0.0])
    assert np.allclose(mpjpe(moved, skeletons), 0.048 / 24)
    # only the evaluated subset counts; joint 7 is one of the 14 LSP joints
    assert np.allclose(mpjpe(moved, skeletons, joints=SMPL_TO_LSP14), 0.048 / 14)
    # moving the root moves every root-aligned joint by the opposite amount
    moved_root = skeletons.copy()
    moved_root[:, 0] += np.array([0.024, 0.0, 0.0])
    assert np.allclose(mpjpe(moved_root, skeletons), 0.024 * 23 / 24)


def test_pa_mpjpe_is_invariant_to_rotation_scale_and_translation(skeletons):
    rng = np.random.default_rng(1)
    transformed = np.stack([
        rng.uniform(0.5, 2.0) * skeleton @ _random_rotation(rng).T + rng.normal(size=3) for skeleton in skeletons
    ])
    assert np.allclose(pa_mpjpe(transformed, skeletons), 0.0, atol=1e-9)
    assert np.allclose(procrustes_align(transformed, skeletons), skeletons, atol=1e-9)
    noisy = skeletons + rng.normal(scale=0.05, size=skeletons.shape)
    noisy_transformed = 1.7 * noisy @ _random_rotation(rng).T + 3.0
    assert np.allclose(pa_mpjpe(noisy_transformed, skeletons), pa_mpjpe(noisy, skeletons), atol=1e-9)
    assert (pa_mpjpe(noisy, skeletons) <= mpjpe(noisy, skeletons, root=None) + 1e-12).all()


def test_procrustes_does_not_reflect(skeletons):
    mirrored = skeletons * np.array([-1.0, 1.0, 1.0])
    assert (pa_mpjpe(mirrored, skeletons) > 0.1).all()


def test_mpve_with_and_without_root_alignment():
    gt = np.random.default_rng(2).normal(size=(2, 50, 3))
    pred = gt + 0.5
    assert np.allclose(mpve(pred, gt), np.sqrt(3 * 0.25))
    assert np.allclose(mpve(pred, gt, pred_root=pred[:, 0], gt_root=gt[:, 0]), 0.0)


def test_pck_known_counts_and_mask():
    gt = np.zeros((1, 4, 2))
    pred = np.array([[[0.5, 0.0], [0.0, 1.0], [1.5, 0.0], [0.0, -3.0]]])
    fraction, correct, evaluated = pck(pred, gt, np.array([10.0]), alpha=0.1)  # threshold 1 px, inclusive
    assert (fraction, correct, evaluated) == (0.5, 2, 4)
    fraction, correct, evaluated = pck(pred, gt, np.array([10.0]), alpha=0.1, mask=np.array([[True, False, True, False]]))
    assert (fraction, correct, evaluated) == (0.5, 1, 2)
    assert pck(pred, gt, np.array([100.0]), alpha=0.05)[1] == 4


def test_acceleration_error_known_values():
    frames = np.arange(10, dtype=np.float64)
    gt = np.zeros((10, 3, 3))
    constant_velocity = gt + frames[:, None, None] * np.array([0.1, 0.0, 0.0])
    assert acceleration_error(constant_velocity, gt) == pytest.approx(0.0, abs=1e-12)
    accelerating = gt + 0.5 * 0.02 * frames[:, None, None] ** 2 * np.array([0.0, 1.0, 0.0])
    assert acceleration_error(accelerating, gt) == pytest.approx(0.02)
    assert acceleration_error(accelerating, gt, fps=30.0) == pytest.approx(0.02 * 900)


def test_torch_inputs_and_bbox_size():
    gt = torch.zeros(2, 24, 3)
    assert np.allclose(mpjpe(gt + 1.0, gt, root=None), np.sqrt(3.0))
    assert np.allclose(bbox_size(np.array([[0, 0, 10, 30], [5, 5, 25, 10]])), [30, 20])


def test_bad_inputs_raise_one_line_errors(skeletons):
    with pytest.raises(ArtifactError, match="differ in shape"):
        mpjpe(skeletons, skeletons[:, :10])
    bad = skeletons.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ArtifactError, match="NaN"):
        pa_mpjpe(bad, skeletons)
    with pytest.raises(ArtifactError, match="selects no keypoint"):
        pck(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.ones(1), 0.1, mask=np.zeros((1, 2), bool))
    with pytest.raises(ArtifactError, match="reference_size"):
        pck(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros(1), 0.1)
    with pytest.raises(ArtifactError, match="at least 3 frames"):
        acceleration_error(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ArtifactError, match="joints"):
        mpjpe(skeletons, skeletons, joints=[30])
