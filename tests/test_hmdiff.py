"""Tests for the HMDiff foundations: the body model's coarse-mesh hierarchy and coarse joint regressor
(humandiff.body.hierarchy), the vertex denoiser (hmdiff.model), the DAT reverse process (hmdiff.dat)
and the training losses (hmdiff.losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humandiff.body import DEFAULT_BODY_MODEL, load_body_arrays, load_body_model
from humandiff.body.hierarchy import (
    METRO_RATIOS,
    apply_linear,
    body_hierarchy,
    build_hierarchy,
    fit_joint_regressor,
    fit_pose_to_mesh,
    load_hierarchy,
    random_posed_bodies,
    resolve_sizes,
    save_hierarchy,
)
from humandiff.diffusion import gather_at, linear_schedule
from humandiff.hmdiff.dat import (
    ActivationState,
    HMDiffOptions,
    dat_reverse,
    direct_shift,
    input_distribution,
    pose_gap,
    single_pose,
    update_activation,
    dat_guidance,
)
from humandiff.hmdiff.losses import LossWeights, geometry_losses, training_loss
from humandiff.hmdiff.model import MeshCoordinates, MeshUpsampler, VertexDenoiser, VertexDenoiserConfig, forward_macs, pose_features
from humandiff.io.artifacts import ArtifactError

#: The embedded model's hierarchy: 1229 -> 615 -> 154 (see the report of issue 28 for why).
EMBEDDED_SIZES = (0.5, 0.125)
SCHEDULE = linear_schedule(200)
#: Algorithm 1 literally: DAT from the first step, the x_t shift through the denoiser (not the defaults).
LITERAL = {"min_alpha_bar": 0.0, "dat_mode": "xt"}


def bumpy_torus(rings: int = 130, sides: int = 53) -> tuple[np.ndarray, np.ndarray]:
    """A closed genus-1 grid surface with rings * sides vertices (130 x 53 = 6890, SMPL's count)."""
    i, j = np.meshgrid(np.arange(rings), np.arange(sides), indexing="ij")
    u, v = 2 * np.pi * i / rings, 2 * np.pi * j / sides
    tube = 0.35 * (1 + 0.15 * np.sin(3 * u) * np.cos(2 * v))
    vertices = np.stack([(1 + tube * np.cos(v)) * np.cos(u), (1 + tube * np.cos(v)) * np.sin(u), tube * np.sin(v)], -1)
    a, b = i * sides + j, ((i + 1) % rings) * sides + j
    c, d = ((i + 1) % rings) * sides + (j + 1) % sides, i * sides + (j + 1) % sides
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return vertices.reshape(-1, 3), faces


def open_grid(rows: int = 30, columns: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A wavy open grid surface (rows * columns vertices) with a boundary."""
    i, j = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    x, y = i / (rows - 1) * 1.5, j / (columns - 1)
    vertices = np.stack([x, y, 0.1 * np.sin(3 * x) * np.cos(4 * y)], -1).reshape(-1, 3)
    i, j = i[:-1, :-1], j[:-1, :-1]
    a, b, c, d = i * columns + j, (i + 1) * columns + j, (i + 1) * columns + j + 1, i * columns + j + 1
    return vertices, np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])


def tetrahedron() -> tuple[np.ndarray, np.ndarray]:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    return vertices, np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


@pytest.fixture(scope="module")
def body():
    return load_body_arrays(DEFAULT_BODY_MODEL), load_body_model()


@pytest.fixture(scope="module")
def hierarchy(body):
    return body_hierarchy(body[0], EMBEDDED_SIZES)


@pytest.fixture(scope="module")
def posed(body):
    """240 random posed bodies of the embedded model: 160 to fit on, 80 held out."""
    return random_posed_bodies(body[1], 240, seed=0)


# ------------------------------------------------------------------------------------ hierarchy
def test_sizes_from_ratios_and_counts_on_smpl_count_and_the_embedded_model(body, hierarchy):
    assert resolve_sizes(6890, METRO_RATIOS) == (1723, 431)
    assert resolve_sizes(1229, METRO_RATIOS) == (308, 77)
    assert resolve_sizes(1229, (600, 150)) == (600, 150)
    assert hierarchy.sizes == (1229, 615, 154)
    vertices, faces = bumpy_torus()
    torus = build_hierarchy(vertices, faces)  # the METRO ratios by default
    assert torus.sizes == (6890, 1723, 431)
    # every level is a closed surface of the same genus (torus: F = 2 V), its vertices a subset of the finer level's
    assert [len(torus.level_faces(level)) for level in range(3)] == [13780, 3446, 862]
    assert set(torus.levels[1].keep) <= set(torus.levels[0].keep)
    vertices, faces = open_grid()
    grid = build_hierarchy(vertices, faces)
    assert grid.sizes == (600, 150, 38)
    assert {0, 19, 580, 599} <= set(grid.levels[1].keep)  # the corners stay: a boundary only slides along itself
    assert np.linalg.norm(grid.up(grid.down(vertices, 2), 2) - vertices, axis=-1).max() < 0.02


def test_up_of_down_stays_close_on_posed_bodies(hierarchy, posed):
    vertices = posed[0]
    middle = np.linalg.norm(hierarchy.up(hierarchy.down(vertices, 1), 1) - vertices, axis=-1)
    coarse = np.linalg.norm(hierarchy.up(hierarchy.down(vertices, 2), 2) - vertices, axis=-1)
    # measured on these poses: middle mean 2.3 mm, 99th percentile 15 mm; coarse mean 13 mm, 99th 68 mm
    assert middle.mean() < 0.004 and np.percentile(middle, 99) < 0.025
    assert coarse.mean() < 0.020 and np.percentile(coarse, 99) < 0.100
    # kept vertices come back exactly; numpy and torch (differentiable) paths agree
    kept = hierarchy.levels[0].keep
    assert np.allclose(hierarchy.up(hierarchy.down(vertices, 1), 1)[:, kept], vertices[:, kept])
    tensor = torch.tensor(vertices[:3], requires_grad=True)
    out = hierarchy.up(hierarchy.down(tensor, 2), 2)
    assert np.allclose(out.detach().numpy(), hierarchy.up(hierarchy.down(vertices[:3], 2), 2))
    out.sum().backward()
    assert tensor.grad is not None


def test_sparse_matrices_match_the_index_operations_and_files_round_trip(hierarchy, posed, tmp_path):
    mesh = posed[0][0]
    down = hierarchy.down_matrix(2) @ (hierarchy.down_matrix(1) @ mesh)
    assert np.allclose(down, hierarchy.down(mesh, 2))
    assert np.allclose(hierarchy.up_matrix(1) @ (hierarchy.up_matrix(2) @ down), hierarchy.up(down, 2))
    save_hierarchy(tmp_path / "h.npz", hierarchy, {"joint_regressor": np.ones((24, 154)) / 154})
    loaded, extra = load_hierarchy(tmp_path / "h.npz")
    assert loaded.sizes == hierarchy.sizes and set(extra) == {"joint_regressor"}
    assert np.allclose(loaded.up(down, 2), hierarchy.up(down, 2))


def test_coarse_joint_regressor_reproduces_the_joints_on_held_out_poses(hierarchy, posed):
    coarse, joints = hierarchy.down(posed[0]), posed[1]
    signed = fit_joint_regressor(coarse[:160], joints[:160], nonnegative=False)
    error = np.linalg.norm(apply_linear(signed, coarse[160:]) - joints[160:], axis=-1)
    assert error.mean() < 0.003 and error.max() < 0.015  # measured: mean 1.9 mm, max 8.6 mm
    assert np.allclose(signed.sum(1), 1.0)
    sparse = fit_joint_regressor(coarse[:160], joints[:160])
    error = np.linalg.norm(apply_linear(sparse, coarse[160:]) - joints[160:], axis=-1)
    assert (sparse >= 0).all() and np.allclose(sparse.sum(1), 1.0) and (sparse > 0).sum(1).mean() < 20
    assert error.mean() < 0.006 and error.max() < 0.040  # measured: mean 4.3 mm, max 25 mm (elbows, wrists)
    # the reverse map, joints -> coarse mesh (for H_U): rows sum to 1, measured mean error 26 mm over varied shapes
    pose_to_mesh = fit_pose_to_mesh(joints[:160], coarse[:160])
    assert np.allclose(pose_to_mesh.sum(1), 1.0)
    assert np.linalg.norm(apply_linear(pose_to_mesh, joints[160:]) - coarse[160:], axis=-1).mean() < 0.040
    # translation-equivariant: f(v + c) = f(v) + c
    shift = np.array([0.3, -1.0, 2.0])
    assert np.allclose(apply_linear(signed, coarse[160:] + shift), apply_linear(signed, coarse[160:]) + shift)


def test_a_mesh_that_cannot_be_coarsened_gives_a_one_line_error():
    vertices, faces = tetrahedron()
    with pytest.raises(ArtifactError, match=r"cannot coarsen a 4-vertex mesh") as info:
        build_hierarchy(vertices, faces, (3,))
    assert "\n" not in str(info.value)
    two = np.concatenate([vertices, vertices + 5.0]), np.concatenate([faces, faces + 4])
    with pytest.raises(ArtifactError, match=r"cannot coarsen the mesh below 8 vertices \(asked for 6\)") as info:
        build_hierarchy(*two, (6,))
    assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match="ratio 1.5"):
        resolve_sizes(100, (1.5,))
    with pytest.raises(ArtifactError, match="cannot coarsen"):
        resolve_sizes(100, (50, 60))


# ------------------------------------------------------------------------------------ denoiser
def test_denoiser_shapes_and_the_image_tokens_and_steps_reach_the_output():
    torch.manual_seed(0)
    config = VertexDenoiserConfig(num_vertices=40)
    assert config.width == 128
    model = VertexDenoiser(config).eval()
    h, tokens = torch.randn(3, 40, 3), torch.randn(3, 64, 128)
    t = torch.tensor([0, 100, 199])
    out = model(h, t, image_tokens=tokens)
    assert out.shape == (3, 40, 3)
    assert not torch.allclose(out, model(h, t, image_tokens=tokens + torch.randn_like(tokens)))
    assert not torch.allclose(out, model(h, t.flip(0), image_tokens=tokens))
    assert not torch.allclose(out, model(h + 0.1, t, image_tokens=tokens))
    assert not torch.allclose(out, model(h, t, image_tokens=tokens.flip(1)), atol=1e-5)  # where a cell is matters
    with pytest.raises(ArtifactError, match="image_tokens"):
        model(h, t)
    with pytest.raises(ArtifactError, match=r"'h' has shape"):
        model(torch.randn(3, 41, 3), t, image_tokens=tokens)


def test_pose_context_and_regression_baselines():
    both = VertexDenoiser(VertexDenoiserConfig(num_vertices=20, context="both", pose_dim=2 * 8 * 8))
    features = pose_features(torch.rand(2, 24, 8, 8), torch.randn(2, 24, 8, 8))
    tokens = torch.randn(2, 64, 128)
    h, t = torch.randn(2, 20, 3), torch.tensor([5, 6])
    out = both(h, t, image_tokens=tokens, pose_features=features)
    assert out.shape == (2, 20, 3)
    assert not torch.allclose(out, both(h, t, image_tokens=tokens, pose_features=features.flip(1)), atol=1e-5)  # which joint
    baseline_a = VertexDenoiser(VertexDenoiserConfig(num_vertices=20, mode="regression"))
    baseline_b = VertexDenoiser(VertexDenoiserConfig(num_vertices=20, mode="regression", stack=4))
    assert baseline_a.regress(tokens).shape == baseline_b.regress(tokens).shape == (2, 20, 3)
    assert forward_macs(baseline_b.config, 64) == 4 * forward_macs(baseline_a.config, 64)
    with pytest.raises(ArtifactError, match="regress"):
        baseline_a(torch.randn(2, 20, 3), torch.tensor([1, 2]), image_tokens=tokens)
    with pytest.raises(ArtifactError, match="'stack' must be 1 in diffusion mode"):
        VertexDenoiserConfig(num_vertices=20, stack=2)


def test_upsampler_starts_as_the_fixed_up_sampling(hierarchy, posed):
    upsampler = MeshUpsampler(hierarchy)
    coarse = torch.tensor(hierarchy.down(posed[0][:2]), dtype=torch.float32)
    middle, full = upsampler(coarse)
    assert middle.shape == (2, 615, 3) and full.shape == (2, 1229, 3)
    assert torch.allclose(middle, hierarchy.up(coarse, 2, 1), atol=1e-5)
    full.sum().backward()
    assert upsampler.weight.grad is not None


# ------------------------------------------------------------------------------------ DAT
def gaussian_toy(mean: torch.Tensor, std: float):
    """The exact eps-denoiser of data ``N(mean, std^2 I)`` under :data:`SCHEDULE`."""

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = gather_at(SCHEDULE.alphas_cumprod, t, x)
        x0 = mean + ab.sqrt() * std**2 / (ab * std**2 + 1 - ab) * (x - ab.sqrt() * mean)
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    return model


@pytest.fixture(scope="module")
def toy():
    generator = torch.Generator().manual_seed(0)
    vertices, joints = 12, 4
    mean = 0.5 * torch.randn(vertices, 3, generator=generator)
    regressor = torch.rand(joints, vertices, generator=generator) ** 4
    regressor = regressor / regressor.sum(1, keepdim=True)
    target = regressor @ (mean + 0.3 * torch.randn(vertices, 3, generator=generator))  # (J, 3)
    poses = target[None, None] + 0.02 * torch.randn(2, 25, joints, 3, generator=generator)  # U for 2 images
    return gaussian_toy(mean, 0.3), regressor, target, poses


def joint_error(regressor, meshes, target):
    return (torch.einsum("jv,...vc->...jc", regressor, meshes) - target).norm(dim=-1).mean().item()


def test_dat_pulls_the_samples_towards_u_and_switches_off_for_good(toy):
    model, regressor, target, poses = toy
    full = dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions(**LITERAL), generator=torch.Generator().manual_seed(1))
    plain = dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions(dat=False),
                        generator=torch.Generator().manual_seed(1))
    assert full.samples.shape == (2, 25, 12, 3) and full.center.shape == (2, 12, 3)
    assert torch.allclose(full.center, full.samples.mean(1))
    assert joint_error(regressor, full.center, target) < 0.25 * joint_error(regressor, plain.center, target)
    history = full.history
    assert history["ratio"].shape == history["dat"].shape == history["gap"].shape == (40, 2, 25)
    assert history["timestep"][0] == 199 and np.allclose(history["ratio"][0], 1.0)
    on = history["dat"]
    assert on[0].all() and not plain.history["dat"].any()
    # once off, never on again; it switched off exactly where R_k fell below r
    assert (np.diff(on.astype(int), axis=0) <= 0).all()
    assert (~on[-1]).any()
    switched = (~on).argmax(0)[~on[-1]]
    ratios = history["ratio"][:, ~on[-1]]
    assert (ratios[switched, np.arange(len(switched))] < 0.05).all()
    assert all((ratios[:k, i] >= 0.05).all() for i, k in enumerate(switched))


def test_ablation_switches_run(toy):
    model, regressor, target, poses = toy
    without_strategy = dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions.for_ablation("no_activation", **LITERAL),
                                   generator=torch.Generator().manual_seed(1))
    assert without_strategy.history["dat"].all()
    single = dat_reverse(model, SCHEDULE, regressor, poses.mean(1, keepdim=True),
                         HMDiffOptions.for_ablation("single_pose", num_samples=5), generator=torch.Generator().manual_seed(1))
    plain = dat_reverse(model, SCHEDULE, regressor, poses.mean(1, keepdim=True), HMDiffOptions(num_samples=5, dat=False),
                        generator=torch.Generator().manual_seed(1))
    # one pose instead of N: Eq. 10 sums over the poses, so the pull is N times weaker, but still a pull
    assert single.samples.shape == (2, 5, 12, 3)
    assert joint_error(regressor, single.center, target) < 0.8 * joint_error(regressor, plain.center, target)
    pose_to_mesh = torch.tensor(np.linalg.pinv(regressor.numpy()), dtype=torch.float32)
    start = dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions.for_ablation("start_from_pose", num_samples=4),
                        generator=torch.Generator().manual_seed(1), pose_to_mesh=pose_to_mesh,
                        upsample=lambda center: center * 2)
    assert not start.history["dat"].any() and torch.allclose(start.mesh, start.center * 2)
    direct = dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions.for_ablation("direct_l2", gamma=0.002),
                         generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(direct.samples).all()
    stochastic = dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions(eta=1.0, num_samples=3, **LITERAL),
                             generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(stochastic.samples).all() and stochastic.history["dat"][0].all()
    with pytest.raises(ArtifactError, match="pose_to_mesh"):
        dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions(start="pose"), generator=torch.Generator())


def test_min_alpha_bar_gates_dat_and_its_reference(toy):
    model, regressor, target, poses = toy
    run = lambda **kw: dat_reverse(model, SCHEDULE, regressor, poses, HMDiffOptions(num_samples=4, **kw),
                                   generator=torch.Generator().manual_seed(1))
    plain = run(dat=False)
    # a floor above every step's alpha_bar (max 1 - beta_0 = 0.9995): DAT never on, the chains are plain DDIM
    never = run(min_alpha_bar=0.9999)
    assert not never.history["dat"].any() and np.allclose(never.history["ratio"], 1.0)
    assert torch.allclose(never.samples, plain.samples)
    # floor 0 (Algorithm 1): DAT and D_K from the first step (t = 199, alpha_bar 3e-5)
    literal = run(min_alpha_bar=0.0)
    assert literal.history["timestep"][0] == 199 and literal.history["dat"][0].all()
    # the default 1e-2: off exactly below the floor, on (R = 1, D_K taken there) at the first step at or above it
    default = run()
    alpha_bar = SCHEDULE.alphas_cumprod.double().numpy()[default.history["timestep"]]
    below = alpha_bar < 1e-2
    first = int(np.argmin(below))
    assert HMDiffOptions().min_alpha_bar == 1e-2 and 0 < first < len(below) and not below[first:].any()
    assert not default.history["dat"][below].any() and default.history["dat"][first].all()
    assert np.allclose(default.history["ratio"][first], 1.0)
    assert not np.allclose(default.history["ratio"][first + 1], 1.0)  # R_k relative to the gap at `first`
    assert joint_error(regressor, default.center, target) < joint_error(regressor, plain.center, target)


def test_dat_mode_picks_the_cores_guidance_space(toy):
    model, regressor, target, poses = toy
    state = ActivationState.start(poses.shape[1])
    assert HMDiffOptions().dat_mode == "x0"
    assert dat_guidance(poses[0, :, None], regressor, state, HMDiffOptions()).mode == "x0"
    assert dat_guidance(poses[0, :, None], regressor, state, HMDiffOptions(dat_mode="xt")).mode == "xt"
    run = lambda mode: dat_reverse(model, SCHEDULE, regressor, poses,
                                   HMDiffOptions(num_samples=4, min_alpha_bar=0.0, dat_mode=mode, gamma=0.002),
                                   generator=torch.Generator().manual_seed(1))
    x0, xt = run("x0"), run("xt")
    assert torch.isfinite(x0.samples).all() and torch.isfinite(xt.samples).all()
    assert not torch.allclose(x0.samples, xt.samples)
    # the x0 step is taken on the clean estimate: the same first gap, different samples afterwards
    assert np.allclose(x0.history["gap"][0], xt.history["gap"][0], rtol=1e-5)


def test_activation_state_is_explicit_and_direct_shift_is_the_l2_gradient(toy):
    _, regressor, _, poses = toy
    state = ActivationState.start(3)
    state, gate, ratio = update_activation(state, torch.tensor([2.0, 4.0, 1.0]), 0.5)
    assert gate.all() and torch.allclose(ratio, torch.ones(3)) and torch.equal(state.reference, torch.tensor([2.0, 4.0, 1.0]))
    state, gate, ratio = update_activation(state, torch.tensor([0.5, 3.0, 1.0]), 0.5)
    assert gate.tolist() == [False, True, True]
    state, gate, _ = update_activation(state, torch.tensor([2.0, 1.0, 1.0]), 0.5)  # chain 0 stays off
    assert gate.tolist() == [False, False, True]
    h = torch.randn(2, 12, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(pose_gap(h, poses, regressor).sum(), h)
    assert torch.allclose(direct_shift(h.detach(), poses, regressor, torch.tensor([True, False]), 0.2),
                          torch.stack([-0.2 * grad[0], torch.zeros_like(grad[1])]), atol=1e-5)


def test_options_defaults_and_one_line_errors():
    options = HMDiffOptions()
    assert (options.num_samples, options.ddim_steps, options.threshold, options.gamma) == (25, 40, 0.05, 0.2)
    for value in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ArtifactError, match=r"'threshold' \(r\) must lie in \(0, 1\)") as info:
            HMDiffOptions(threshold=value)
        assert "\n" not in str(info.value)
    for value in (0, -3):
        with pytest.raises(ArtifactError, match=r"'num_samples' \(N\) must be an integer >= 1"):
            HMDiffOptions(num_samples=value)
    with pytest.raises(ArtifactError, match="unknown parameter"):
        options.with_overrides({"samples": 3})
    with pytest.raises(ArtifactError, match="ablation must be one of"):
        HMDiffOptions.for_ablation("nope")
    assert (options.min_alpha_bar, options.dat_mode) == (1e-2, "x0")
    for value in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ArtifactError, match=r"'min_alpha_bar' must lie in \[0, 1\)") as info:
            HMDiffOptions(min_alpha_bar=value)
        assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match="'dat_mode' must be one of x0, xt"):
        HMDiffOptions(dat_mode="eps")


def test_input_distribution_lifts_heatmap_poses_to_the_camera_frame():
    heatmaps = torch.zeros(1, 24, 8, 8)
    heatmaps[0, :, 3, 4] = 1.0  # every joint at cell (u 4, v 3): image pixel (17.5, 13.5)
    heatmaps[0, 5] = 0.0
    heatmaps[0, 5, 3, 6] = 1.0  # joint 5 two cells right (8 px), 0.5 m further away
    depth_maps = torch.zeros(1, 24, 8, 8)
    depth_maps[0, 5, 3, 6] = 0.5
    intrinsics, root_depth = torch.tensor([[100.0, 100.0, 16.0, 16.0]]), torch.tensor([4.0])
    poses = input_distribution(heatmaps, depth_maps, intrinsics, root_depth, 6, torch.Generator().manual_seed(0))
    assert poses.shape == (1, 6, 24, 3)
    assert poses[..., 0, :].abs().max() < 0.5 * 4 * 4.0 / 100  # the pelvis within its cell (0.08 m)
    centre = single_pose(heatmaps, depth_maps, intrinsics, root_depth)
    expected_x = (25.5 - 16.0) * 4.5 / 100 - (17.5 - 16.0) * 4.0 / 100
    assert torch.allclose(centre[0, 0, 5], torch.tensor([expected_x, 0.0 + (13.5 - 16) * 0.5 / 100, 0.5]), atol=1e-5)
    bad = heatmaps.clone()
    bad[0, 3] = 0.0
    with pytest.raises(ArtifactError, match="'heatmaps' must be non-negative with some mass") as info:
        input_distribution(bad, depth_maps, intrinsics, root_depth, 6, torch.Generator())
    assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match="'depth_maps' contains NaN"):
        single_pose(heatmaps, depth_maps * float("nan"), intrinsics, root_depth)


# ------------------------------------------------------------------------------------ losses
def test_losses_are_zero_at_the_truth_and_positive_off_it(hierarchy, posed):
    mesh = torch.tensor(hierarchy.down(posed[0][:3]), dtype=torch.float32)
    faces = torch.tensor(hierarchy.level_faces(-1))
    regressor = torch.tensor(fit_joint_regressor(hierarchy.down(posed[0][:160]), posed[1][:160]), dtype=torch.float32)
    at_truth = geometry_losses(mesh, mesh, faces, regressor)
    assert set(at_truth) == {"vertex", "joint", "normal", "edge"}
    assert all(float(value.abs().max()) < 1e-6 for value in at_truth.values())
    off = geometry_losses(mesh + 0.01 * torch.randn_like(mesh), mesh, faces, regressor)
    assert all(bool((value > 0).all()) for value in off.values())

    class Perfect(torch.nn.Module):  # an eps-denoiser that knows the truth
        def forward(self, x, t):
            return (x - gather_at(SCHEDULE.sqrt_alphas_cumprod, t, x) * mesh) / gather_at(
                SCHEDULE.sqrt_one_minus_alphas_cumprod, t, x)

    total, terms = training_loss(Perfect(), mesh, SCHEDULE, torch.Generator().manual_seed(0), faces, regressor)
    assert total.shape == (3,) and float(total.abs().max()) < 1e-3
    with pytest.raises(ArtifactError, match="'edge' must be a finite number"):
        LossWeights(edge=-1.0)
    with pytest.raises(ArtifactError, match="'alpha_bar' must be true or false"):
        LossWeights(alpha_bar=1)


def test_geometry_terms_are_weighted_by_alpha_bar_per_sample(hierarchy, posed):
    mesh = torch.tensor(hierarchy.down(posed[0][:3]), dtype=torch.float32)
    faces = torch.tensor(hierarchy.level_faces(-1))
    regressor = torch.tensor(fit_joint_regressor(hierarchy.down(posed[0][:160]), posed[1][:160]), dtype=torch.float32)
    steps = torch.tensor([0, 100, 199])
    sampler = lambda schedule, batch, generator, device=None: steps.to(device)
    model = lambda x, t: 0.9 * torch.ones_like(x)  # a poor noise prediction: every term is > 0
    weighted, terms = training_loss(model, mesh, SCHEDULE, torch.Generator().manual_seed(0), faces, regressor,
                                    LossWeights(), sampler=sampler)
    plain, plain_terms = training_loss(model, mesh, SCHEDULE, torch.Generator().manual_seed(0), faces, regressor,
                                       LossWeights(alpha_bar=False), sampler=sampler)
    assert LossWeights().alpha_bar is True
    assert all(torch.equal(terms[k], plain_terms[k]) for k in terms)  # the logged terms are unweighted
    diffusion = terms["diffusion"]
    geometry = plain - diffusion
    assert (geometry > 0).all()
    assert torch.allclose(weighted, diffusion + SCHEDULE.alphas_cumprod[steps].float() * geometry, rtol=1e-4)
    assert weighted[2] - diffusion[2] < 1e-3 * geometry[2]  # t = 199: alpha_bar 3e-5


def test_mesh_coordinates_round_trip_and_keep_the_gap_in_step(toy):
    _, regressor, target, poses = toy
    generator = torch.Generator().manual_seed(3)
    meshes = 0.5 + 0.2 * torch.randn(64, 12, 3, generator=generator)
    coords = MeshCoordinates(12)
    assert torch.equal(coords.encode(meshes), meshes)  # the identity until fitted
    coords.fit(meshes)
    encoded = coords.encode(meshes)
    assert encoded.mean(0).abs().max() < 1e-5 and abs(float(encoded.std()) - 1.0) < 1e-5
    assert torch.allclose(coords.decode(encoded), meshes, atol=1e-6)
    joints = poses[0, :3]  # (3, J, 3) metres
    gap_metres = torch.einsum("jv,bvc->bjc", regressor, meshes[:3]) - joints
    gap_coords = torch.einsum("jv,bvc->bjc", regressor, encoded[:3]) - coords.encode_joints(joints, regressor)
    assert torch.allclose(gap_metres, coords.scale * gap_coords, atol=1e-5)
    with pytest.raises(ArtifactError, match="MeshCoordinates.fit"):
        coords.fit(meshes[:, :5])


def test_dat_in_diffusion_coordinates_returns_metres_and_still_aligns(toy):
    _, regressor, target, poses = toy
    mean = 0.5 * torch.randn(12, 3, generator=torch.Generator().manual_seed(0))  # the toy's data mean, as in `toy`
    coords = MeshCoordinates(12)
    coords.offset.copy_(mean)
    coords.scale.fill_(0.3)
    unit = gaussian_toy(torch.zeros(12, 3), 1.0)  # the same data N(mean, 0.3^2) seen in the coordinates
    options = HMDiffOptions(num_samples=25)  # the default x0-space step: gamma acts on the decoded mesh as in metres
    full = dat_reverse(unit, SCHEDULE, regressor, poses, options, generator=torch.Generator().manual_seed(1), coordinates=coords)
    plain = dat_reverse(unit, SCHEDULE, regressor, poses, HMDiffOptions(dat=False), generator=torch.Generator().manual_seed(1),
                        coordinates=coords)
    assert (plain.center - mean).abs().mean() < 0.15  # decoded: the samples sit around the data mean in metres
    assert joint_error(regressor, full.center, target) < 0.25 * joint_error(regressor, plain.center, target)
