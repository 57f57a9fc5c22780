"""Text-to-motion metrics (Guo et al.'s protocol) against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import humandiff.eval.t2m as t2m
from humandiff.eval.report import format_interval, line_plot, markdown_table, write_curves_csv
from humandiff.io import ArtifactError, save_npz, save_parquet


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------- FID


def test_fid_of_a_set_with_itself_is_zero():
    points = np.random.default_rng(0).normal(size=(500, 16))
    assert t2m.fid(points, points) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2 = 5 + (2-1)^2 + (3-1)^2 = 10
    value = t2m.frechet_distance(np.array([1.0, 2.0]), np.diag([4.0, 9.0]), np.zeros(2), np.eye(2))
    assert value == pytest.approx(10.0, abs=1e-10)


def test_frechet_distance_is_rotation_invariant_for_non_commuting_covariances():
    cov1 = np.diag([4.0, 1.0, 0.25])
    cov2 = _rotation(0.7) @ np.diag([1.0, 3.0, 2.0]) @ _rotation(0.7).T  # does not commute with cov1
    mu1, mu2 = np.array([1.0, 0.0, -1.0]), np.array([0.5, 2.0, 0.0])
    rotation = _rotation(-1.3)
    direct = t2m.frechet_distance(mu1, cov1, mu2, cov2)
    rotated = t2m.frechet_distance(rotation @ mu1, rotation @ cov1 @ rotation.T,
                                   rotation @ mu2, rotation @ cov2 @ rotation.T)
    assert direct == pytest.approx(rotated, rel=1e-9)
    # The trace term equals the textbook tr(C1 + C2 - 2 sqrtm(C1 C2)) computed from eigenvalues of C1 C2.
    eig = np.linalg.eigvals(cov1 @ cov2)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2) - 2 * np.sqrt(eig.real).sum()
    assert direct == pytest.approx(expected, rel=1e-9)


def test_fid_of_sampled_gaussians_matches_closed_form():
    rng = np.random.default_rng(1)
    cov1 = np.diag([1.0, 2.0, 0.5])
    cov2 = _rotation(0.4) @ np.diag([2.0, 0.5, 1.0]) @ _rotation(0.4).T
    mu1, mu2 = np.zeros(3), np.array([1.0, -1.0, 0.5])
    a = rng.multivariate_normal(mu1, cov1, size=200_000)
    b = rng.multivariate_normal(mu2, cov2, size=200_000)
    assert t2m.fid(a, b) == pytest.approx(t2m.frechet_distance(mu1, cov1, mu2, cov2), rel=0.02)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ArtifactError, match="shapes"):
        t2m.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# --------------------------------------------------------------------------- R-precision and MM-Dist


def test_r_precision_is_one_for_identical_embeddings_and_mm_dist_zero():
    points = np.random.default_rng(2).normal(size=(96, 8))
    hits, mm_dist = t2m.r_precision(points, points.copy(), np.random.default_rng(0))
    np.testing.assert_allclose(hits, [1.0, 1.0, 1.0])
    assert mm_dist == pytest.approx(0.0, abs=1e-12)


def test_r_precision_of_random_embeddings_is_chance():
    rng = np.random.default_rng(3)
    text, motion = rng.normal(size=(32 * 300, 16)), rng.normal(size=(32 * 300, 16))
    hits, _ = t2m.r_precision(text, motion, rng)
    np.testing.assert_allclose(hits, [1 / 32, 2 / 32, 3 / 32], atol=0.012)


def test_r_precision_batch_ranks_by_euclidean_distance():
    text = np.array([[0.0], [10.0], [20.0]])
    motion = np.array([[0.9], [0.5], [20.0]])
    hits = t2m.r_precision_batch(text, motion, top_k=3)
    # text 0: distances 0.9, 0.5, 20 -> rank 1; text 1: 9.1, 9.5, 10 -> rank 1; text 2: rank 0
    np.testing.assert_allclose(hits, [1 / 3, 1.0, 1.0])


def test_r_precision_uses_batches_of_exactly_32(monkeypatch):
    sizes = []
    original = t2m.r_precision_batch

    def spy(text, motion, top_k=3):
        sizes.append((len(text), len(motion)))
        return original(text, motion, top_k)

    monkeypatch.setattr(t2m, "r_precision_batch", spy)
    points = np.random.default_rng(4).normal(size=(100, 4))
    t2m.r_precision(points, points, np.random.default_rng(0))
    assert sizes == [(32, 32)] * 3  # 100 pairs -> 3 full batches, 4 pairs dropped


def test_mm_dist_is_mean_distance_of_pairs():
    rng = np.random.default_rng(5)
    text = rng.normal(size=(64, 3))
    offsets = rng.normal(size=(64, 3))
    offsets *= (np.arange(64) % 4 + 1)[:, None] / np.linalg.norm(offsets, axis=1, keepdims=True)  # norms 1..4
    _, mm_dist = t2m.r_precision(text, text + offsets, rng)
    assert mm_dist == pytest.approx(2.5)


@pytest.mark.parametrize("bad", ["few", "mismatch", "nan"])
def test_r_precision_rejects_bad_input(bad):
    points = np.random.default_rng(6).normal(size=(40, 4))
    other = {"few": points[:31], "mismatch": points[:, :3], "nan": np.where(np.arange(4) == 0, np.nan, points)}[bad]
    text = points[:31] if bad == "few" else points
    with pytest.raises(ArtifactError):
        t2m.r_precision(text, other, np.random.default_rng(0))


# --------------------------------------------------------------------------- Diversity and MultiModality


def test_diversity_of_known_points():
    same = np.ones((400, 5))
    assert t2m.diversity(same, 300, np.random.default_rng(0)) == 0.0
    # A regular simplex: every two distinct points are exactly 2 apart; a pair repeats a point only
    # where the two random index sets agree (about once in 300).
    simplex = np.eye(400) * np.sqrt(2.0)
    values = [t2m.diversity(simplex, 300, np.random.default_rng(seed)) for seed in range(50)]
    assert all(2.0 * (1 - 10 / 300) <= v <= 2.0 for v in values)
    assert np.mean(values) == pytest.approx(2.0 * (1 - 1 / 400), abs=0.005)


def test_diversity_needs_enough_samples():
    with pytest.raises(ArtifactError, match="diversity"):
        t2m.diversity(np.zeros((10, 2)), 300, np.random.default_rng(0))


def test_multimodality_on_constructed_generations():
    rng = np.random.default_rng(7)
    # Identical generations per text -> 0, however far apart the texts are.
    centres = rng.normal(size=(100, 1, 6)) * 10
    assert t2m.multimodality(np.repeat(centres, 30, axis=1), 10, rng) == pytest.approx(0.0, abs=1e-12)
    # Generations of each text on a simplex of side d (translated per text): each of the 10 pairs
    # repeats a generation with probability 1/30, so the mean is d * 29 / 30.
    side = 3.0
    simplex = np.eye(30)[None] * side / np.sqrt(2.0) + centres[:, :, :1]
    values = [t2m.multimodality(simplex, 10, np.random.default_rng(seed)) for seed in range(400)]
    assert all(0.0 <= v <= side + 1e-9 for v in values)
    assert np.mean(values) == pytest.approx(side * 29 / 30, rel=0.01)


def test_multimodality_rejects_too_few_generations():
    with pytest.raises(ArtifactError, match="generations"):
        t2m.multimodality(np.zeros((5, 4, 3)), 10, np.random.default_rng(0))


# --------------------------------------------------------------------------- replications


def test_mean_interval_formula():
    mean, interval = t2m.mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert interval == pytest.approx(1.96 * np.sqrt(1.25) / 2.0)
    values = np.random.default_rng(8).normal(size=20)
    assert t2m.mean_interval(values)[1] == pytest.approx(1.96 * values.std() / np.sqrt(20))
    with pytest.raises(ArtifactError):
        t2m.mean_interval([])


def test_summarize_and_replication_keys():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(320, 8))
    reference = t2m.activation_statistics(real)
    rows = [t2m.t2m_replication(real, real, reference, rng, diversity_times=300) for _ in range(3)]
    summary = t2m.summarize(rows)
    for name in t2m.METRIC_NAMES:
        assert name in summary and f"{name}_ci" in summary
    assert summary["top3"] == 1.0 and summary["top3_ci"] == 0.0
    assert summary["fid"] == pytest.approx(0.0, abs=1e-8)
    assert summary["replications"] == 3


# --------------------------------------------------------------------------- motion quality and bars


def _static_features(frames: int, velocity_z: float = 0.0) -> np.ndarray:
    features = np.zeros((frames, 263), np.float32)
    features[:, 2] = velocity_z  # root linear velocity (x, z) per frame in the root frame
    features[:, 3] = 0.9  # root height
    ric = np.zeros((21, 3), np.float32)
    ric[:, 1] = 0.9
    ric[9, 1] = ric[10, 1] = 0.01  # joints 10 and 11 (feet) just above the floor
    ric[9, 0], ric[10, 0] = 0.1, -0.1
    features[:, 4:67] = ric.reshape(-1)
    return features


def test_motion_quality_static_and_sliding():
    still = t2m.motion_quality([_static_features(30)])
    assert still == {"foot_skating_ratio": 0.0, "jitter": pytest.approx(0.0, abs=1e-6)}
    sliding = t2m.motion_quality([_static_features(30, velocity_z=0.05)])
    assert sliding["foot_skating_ratio"] == pytest.approx(1.0)
    assert sliding["jitter"] == pytest.approx(0.0, abs=1e-3)  # constant velocity has no jerk


def test_motion_quality_rejects_bad_clip():
    with pytest.raises(ArtifactError, match="clip 0"):
        t2m.motion_quality([np.zeros((10, 200), np.float32)])


def test_quality_bars_are_computed():
    real = {"top3": 0.8, "mm_dist": 3.0, "foot_skating_ratio": 0.01, "jitter": 10.0}
    good = {"top3": 0.7, "mm_dist": 3.5, "foot_skating_ratio": 0.05, "jitter": 19.0}
    bad = {"top3": 0.6, "mm_dist": 3.7, "foot_skating_ratio": 0.2, "jitter": 21.0}
    assert [b["holds"] for b in t2m.quality_bars(real, good)] == [True, True, True, True]
    assert [b["holds"] for b in t2m.quality_bars(real, bad)] == [False, False, False, False]
    too_close = dict(good, mm_dist=2.3)  # a band: 20% below Real's fails too
    assert [b["holds"] for b in t2m.quality_bars(real, too_close)] == [True, False, True, True]
    assert t2m.quality_bars(real, good)[1]["rule"] == "in [2.400, 3.600]"


# --------------------------------------------------------------------------- artifacts and report helpers


def test_load_clips_and_generated_checks(tmp_path):
    clips = [np.full((n, 263), i, np.float32) for i, n in enumerate((40, 44, 48))]
    save_npz(tmp_path / "samples.npz", {"features": np.concatenate(clips), "offsets": np.array([0, 40, 84, 132])})
    table = pd.DataFrame({"clip_id": ["a", "b", "c"], "caption": ["x", "y", "z"], "length": [40, 44, 48],
                          "seed": [7] * 3, "ddim_steps": [50] * 3, "guidance_scale": [2.5] * 3, "eta": [0.0] * 3})
    save_parquet(tmp_path / "samples.parquet", table)
    rows, loaded = t2m.load_generated(tmp_path / "samples.npz", tmp_path / "samples.parquet")
    assert list(rows["caption"]) == ["x", "y", "z"] and [c[0, 0] for c in loaded] == [0.0, 1.0, 2.0]
    assert t2m.sampler_settings(rows) == {"seed": 7, "ddim_steps": 50, "guidance_scale": 2.5, "eta": 0.0}

    # the sampler settings describe the whole set: one value, present
    save_parquet(tmp_path / "samples.parquet", table.assign(guidance_scale=[2.5, 2.5, 1.0]))
    with pytest.raises(ArtifactError, match="guidance_scale"):
        t2m.load_generated(tmp_path / "samples.npz", tmp_path / "samples.parquet")
    save_parquet(tmp_path / "samples.parquet", table.drop(columns="eta"))
    with pytest.raises(ArtifactError, match="eta"):
        t2m.load_generated(tmp_path / "samples.npz", tmp_path / "samples.parquet")

    save_parquet(tmp_path / "samples.parquet", table.assign(length=[40, 45, 48]))
    with pytest.raises(ArtifactError, match="length"):
        t2m.load_generated(tmp_path / "samples.npz", tmp_path / "samples.parquet")
    save_parquet(tmp_path / "samples.parquet", table.iloc[:2])
    with pytest.raises(ArtifactError, match="3 clips"):
        t2m.load_generated(tmp_path / "samples.npz", tmp_path / "samples.parquet")
    save_npz(tmp_path / "bad.npz", {"features": np.concatenate(clips), "offsets": np.array([0, 40, 84, 130])})
    with pytest.raises(ArtifactError, match="offsets"):
        t2m.load_clips(tmp_path / "bad.npz")
    save_npz(tmp_path / "nan.npz", {"features": np.full((4, 263), np.nan, np.float32), "offsets": np.array([0, 4])})
    with pytest.raises(ArtifactError, match="NaN"):
        t2m.load_clips(tmp_path / "nan.npz")


def test_report_helpers(tmp_path):
    assert format_interval(0.5111, 0.0031) == "0.511 ± 0.003"
    assert format_interval(None, None) == "–"
    table = markdown_table(["method", "top1"], [["Real", "0.5"], ["MDM", "0.4"]])
    assert table.splitlines()[1] == "| :--- | ---: |" and table.count("\n") == 4
    with pytest.raises(ArtifactError):
        markdown_table(["a", "b"], [["1"]])
    image = line_plot({"train": [3.0, 2.0, 1.0], "val": [3.5, 2.5, 2.0]}, "loss")
    assert image.shape == (400, 640, 3) and image.min() < 255
    write_curves_csv(tmp_path / "c.csv", {"train": [1.0, 0.5]})
    assert (tmp_path / "c.csv").read_text().splitlines() == ["epoch,train", "1,1", "2,0.5"]


def test_mm_dist_breakdown_counts_misses_beyond_reals_quantile():
    real = np.arange(1, 101, dtype=float) / 100.0  # 0.01 .. 1.00: 95th percentile 0.9505
    generated = np.array([0.5, 0.9, 2.0, 20.0, 0.1, 25.0])
    multi = np.array([1, 1, 1, 2, 3, 2])
    lengths = np.array([40, 90, 100, 170, 60, 196])
    out = t2m.mm_dist_breakdown(real, generated, multi, unrelated_mean=21.0, lengths=lengths)
    assert out["miss_mean"] == pytest.approx((2.0 + 20.0 + 25.0) / 3) and out["unrelated_mean"] == 21.0
    assert out["generated_mean"] == pytest.approx(generated.mean())
    assert out["hit_mean"] == pytest.approx((0.5 + 0.9 + 0.1) / 3) and out["real_mean"] == pytest.approx(0.505)
    assert out["real_cutoff"] == pytest.approx(0.9505)
    assert out["miss_share"] == pytest.approx(3 / 6)
    assert out["miss_share_single_action"] == pytest.approx(1 / 3)
    assert out["miss_share_multi_action"] == pytest.approx(2 / 3)
    assert out["miss_share_by_actions"] == {"1": pytest.approx(1 / 3), "2": 1.0, "3+": 0.0}
    assert out["miss_share_by_length"] == {"0-79": 0.0, "80-119": 0.5, "120-159": None, "160+": 1.0}
    assert out["generated_median"] == pytest.approx(1.45) and out["real_median"] == pytest.approx(0.505)
    paragraph = " ".join(t2m.mm_dist_lines(out))
    assert "50% of MDM's pairs lie beyond Real's 95th percentile (0.95)" in paragraph
    assert "The other pairs lie 0.50 from their captions on average (Real: 0.51)" in paragraph
    assert ('The share of misses by the caption\'s action clauses (split at "then", "after that"), 1: 33%, 2: 100%, 3+: 0%; '
            "by clip length in frames, 0-79: 0%, 80-119: 50%, 120-159: –, 160+: 100%.") in paragraph
    without_lengths = t2m.mm_dist_breakdown(real, generated, multi, 21.0)
    assert without_lengths["miss_share_by_length"] is None
    assert "clip length" not in " ".join(t2m.mm_dist_lines(without_lengths))
    assert "No MDM pair lies beyond it." in t2m.mm_dist_lines(t2m.mm_dist_breakdown(real, generated[:2], multi[:2], 21.0))
    assert t2m.mm_dist_lines(None) == []
    assert t2m.mm_dist_breakdown(real, generated[:2], multi[:2], 21.0)["miss_share_multi_action"] is None
    with pytest.raises(ArtifactError, match="mm_dist_breakdown"):
        t2m.mm_dist_breakdown(real, generated, multi[:3], 21.0)
    with pytest.raises(ArtifactError, match="action counts"):
        t2m.mm_dist_breakdown(real, generated, multi > 1, 21.0)  # flags, not counts
    with pytest.raises(ArtifactError, match="lengths"):
        t2m.mm_dist_breakdown(real, generated, multi, 21.0, lengths=lengths[:2])
    text = np.zeros((2, 3))
    motion = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])
    assert t2m.matched_distances(text, motion).tolist() == [5.0, 1.0]
    texts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    assert t2m.unrelated_mean_distance(texts, motion) == pytest.approx((1.0 + np.sqrt(29.0)) / 2)
