"""Text-to-motion metrics in the protocol of Guo et al. (as MDM, SoPo and MoDiPO report them).

All metrics are computed on evaluator embeddings (float64 numpy):

- R-precision: texts and motions are shuffled and cut into batches of exactly 32 pairs (the
  remainder is dropped, as the reference loaders' ``drop_last``); for each text the 32 motions
  are ranked by Euclidean distance; top-k is the share of texts whose own motion ranks in the k
  nearest. MM-Dist: mean distance between a text and its own motion over the same pairs.
- FID: Frechet distance between Gaussians fitted to two embedding sets.
- Diversity: mean distance between ``times`` (300) random pairs; the first and second index
  sets are each drawn without replacement, independently (so a pair may repeat a motion).
- MultiModality: for each text with R generations, ``times`` (10) pairs drawn the same way
  among its generations; mean distance over texts and pairs.
- Every figure is averaged over replications (20) and reported with the 95% interval
  ``1.96 * std / sqrt(replications)`` (population std, as the reference code).

Plus motion quality on joints recovered from features: foot skating ratio and jitter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from humandiff.io import ArtifactError, load_npz, load_parquet, split_ragged
from humandiff.motion.hml3d import FEATURE_DIM, recover_from_ric
from humandiff.motion.metrics import foot_skating_ratio, jitter

#: R-precision batch size of the protocol; not a parameter: the figures are only comparable at 32.
R_PRECISION_BATCH = 32
TOP_K = 3
INTERVAL_Z = 1.96
METRIC_NAMES = ("top1", "top2", "top3", "mm_dist", "fid", "diversity")


def _embeddings(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ArtifactError(f"{name} has shape {array.shape}, expected (N>0, E>0)")
    if not np.isfinite(array).all():
        raise ArtifactError(f"{name} contains NaN or Inf")
    return array


def euclidean_distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (N, M) between rows of (N, E) and (M, E), computed directly (no cancellation)."""
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def r_precision_batch(text: np.ndarray, motion: np.ndarray, top_k: int = TOP_K) -> np.ndarray:
    """Hit rates (top_k,) of one batch: text i vs motion i among the batch's motions (B, E) each.

    Ranks are by ascending distance with a stable sort (ties keep batch order).
    """
    distances = euclidean_distance_matrix(text, motion)
    order = np.argsort(distances, axis=1, kind="stable")
    rank = np.argmax(order == np.arange(len(text))[:, None], axis=1)  # 0 = nearest
    return np.array([(rank < k).mean() for k in range(1, top_k + 1)])


def r_precision(text: np.ndarray, motion: np.ndarray, rng: np.random.Generator,
                batch_size: int = R_PRECISION_BATCH, top_k: int = TOP_K) -> tuple[np.ndarray, float]:
    """R-precision top-1..top_k (top_k,) and MM-Dist over shuffled batches of exactly ``batch_size`` pairs.

    ``text`` and ``motion`` (N, E) are paired row by row; the last N mod batch_size pairs of the
    shuffled order are dropped.
    """
    text = _embeddings(text, "text embeddings")
    motion = _embeddings(motion, "motion embeddings")
    if text.shape != motion.shape:
        raise ArtifactError(f"text embeddings {text.shape} and motion embeddings {motion.shape} must pair up")
    if batch_size < 2 or len(text) < batch_size:
        raise ArtifactError(f"R-precision needs >= {batch_size} pairs (batch_size >= 2), got {len(text)}")
    order = rng.permutation(len(text))
    batches = order[: len(order) // batch_size * batch_size].reshape(-1, batch_size)
    hits = np.mean([r_precision_batch(text[b], motion[b], top_k) for b in batches], axis=0)
    mm_dist = float(np.linalg.norm(text[batches.ravel()] - motion[batches.ravel()], axis=-1).mean())
    return hits, mm_dist


def activation_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (E,) and unbiased covariance (E, E) of (N >= 2, E) embeddings."""
    embeddings = _embeddings(embeddings, "embeddings")
    if len(embeddings) < 2:
        raise ArtifactError("embeddings: a covariance needs >= 2 rows")
    return embeddings.mean(0), np.cov(embeddings, rowvar=False).reshape(embeddings.shape[1], embeddings.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2) for Gaussians (E,), (E, E).

    ``tr sqrt(C1 C2)`` is computed as the trace of the square root of the symmetric PSD matrix
    ``C1^1/2 C2 C1^1/2`` (same eigenvalues), which stays real and stable for singular covariances.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or cov1.shape != (dim, dim) or cov2.shape != (dim, dim):
        raise ArtifactError(f"frechet_distance: shapes {mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape} do not agree")
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to embedding sets a (N, E) and b (M, E)."""
    return frechet_distance(*activation_statistics(a), *activation_statistics(b))


def diversity(embeddings: np.ndarray, times: int, rng: np.random.Generator) -> float:
    """Mean distance over ``times`` pairs: two index sets, each drawn without replacement from (N, E)."""
    embeddings = _embeddings(embeddings, "embeddings")
    if times < 1 or len(embeddings) < times:
        raise ArtifactError(f"diversity: needs times >= 1 and >= times={times} samples, got {len(embeddings)}")
    first = rng.choice(len(embeddings), times, replace=False)
    second = rng.choice(len(embeddings), times, replace=False)
    return float(np.linalg.norm(embeddings[first] - embeddings[second], axis=-1).mean())


def multimodality(embeddings: np.ndarray, times: int, rng: np.random.Generator) -> float:
    """Mean distance between ``times`` pairs of generations per text, over texts; embeddings (K, R, E).

    Per text, the first and second indices are each ``times`` draws without replacement from its
    R generations (one draw of index sets shared by all texts, as the reference code).
    """
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 3 or min(array.shape) == 0:
        raise ArtifactError(f"multimodality embeddings have shape {array.shape}, expected (K>0, R>0, E>0)")
    if not np.isfinite(array).all():
        raise ArtifactError("multimodality embeddings contain NaN or Inf")
    if times < 1 or array.shape[1] < times:
        raise ArtifactError(f"multimodality: needs times >= 1 and >= times={times} generations per text, "
                            f"got {array.shape[1]}")
    first = rng.choice(array.shape[1], times, replace=False)
    second = rng.choice(array.shape[1], times, replace=False)
    return float(np.linalg.norm(array[:, first] - array[:, second], axis=-1).mean())


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% interval half-width ``1.96 * std / sqrt(n)`` (population std) of replications."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or not np.isfinite(array).all():
        raise ArtifactError(f"replication values must be a non-empty finite 1-D list, got shape {array.shape}")
    return float(array.mean()), float(INTERVAL_Z * array.std() / np.sqrt(len(array)))


def summarize(replications: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """{name: mean, name_ci: interval} for every metric of the replications (each a dict)."""
    if not replications:
        raise ArtifactError("summarize: no replications")
    out: dict[str, float] = {}
    for name in replications[0]:
        out[name], out[f"{name}_ci"] = mean_interval([r[name] for r in replications])
    out["replications"] = len(replications)
    return out


def r_precision_replications(texts: Sequence[np.ndarray], motion: np.ndarray, rng: np.random.Generator,
                             batch_size: int = R_PRECISION_BATCH) -> dict[str, float]:
    """Mean top1/top2/top3/mm_dist over replications, one per text embedding set (N, E) in ``texts``,
    in shuffled batches of ``batch_size``."""
    rows = []
    for text in texts:
        hits, mm_dist = r_precision(text, motion, rng, batch_size)
        rows.append({"top1": hits[0], "top2": hits[1], "top3": hits[2], "mm_dist": mm_dist})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def t2m_replication(text: np.ndarray, motion: np.ndarray, reference: tuple[np.ndarray, np.ndarray],
                    rng: np.random.Generator, diversity_times: int = 300) -> dict[str, float]:
    """One replication: top1..3 and MM-Dist of paired (N, E) text/motion embeddings, FID of the motions
    against the real motions' statistics ``reference`` (mu (E,), cov (E, E)), and Diversity."""
    hits, mm_dist = r_precision(text, motion, rng)
    return {"top1": float(hits[0]), "top2": float(hits[1]), "top3": float(hits[2]), "mm_dist": mm_dist,
            "fid": frechet_distance(*activation_statistics(motion), *reference),
            "diversity": diversity(motion, diversity_times, rng)}


def unrelated_mean_distance(text: np.ndarray, motion: np.ndarray) -> float:
    """Mean distance from each text embedding to the other rows' motion embeddings (N >= 2, E each)."""
    distances = euclidean_distance_matrix(_embeddings(text, "text embeddings"), _embeddings(motion, "motion embeddings"))
    if len(distances) < 2:
        raise ArtifactError("unrelated_mean_distance: needs >= 2 pairs")
    return float(distances[~np.eye(len(distances), dtype=bool)].mean())


def matched_distances(text: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Distance (N,) between each text embedding and its own motion's (N, E each): MM-Dist's terms."""
    text, motion = _embeddings(text, "text embeddings"), _embeddings(motion, "motion embeddings")
    if text.shape != motion.shape:
        raise ArtifactError(f"text embeddings {text.shape} and motion embeddings {motion.shape} must pair up")
    return np.linalg.norm(text - motion, axis=-1)


#: Clip lengths (frames) by which :func:`mm_dist_breakdown` splits the misses: [start, end).
MISS_LENGTH_BINS = ((0, 80), (80, 120), (120, 160), (160, 100_000))


def mm_dist_breakdown(real: np.ndarray, generated: np.ndarray, action_counts: np.ndarray,
                      unrelated_mean: float, quantile: float = 0.95,
                      lengths: np.ndarray | None = None) -> dict[str, object]:
    """Where a generator's MM-Dist comes from: median matched distances of Real (N,) and of the
    generated pairs (M,), and the share of generated pairs beyond Real's ``quantile`` ("misses"),
    overall, for captions naming one or several actions (``action_counts`` (M,) int, the clauses
    of each caption; also split 1 / 2 / 3+) and, given ``lengths`` (M,) in frames, by length
    (:data:`MISS_LENGTH_BINS`), with the misses' mean distance beside ``unrelated_mean``, that of a
    caption to other captions' motions, and the other generated pairs' mean (``hit_mean``) beside
    Real's (``real_mean``).

    MM-Dist is a mean: with an evaluator that puts real motions close to their captions, the
    generated motions that miss (``miss_mean`` against ``unrelated_mean`` says how far) can make up
    most of it while the median pair is close to Real's.
    """
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    action_counts = np.asarray(action_counts)
    if len(real) == 0 or len(generated) == 0 or action_counts.shape != generated.shape \
            or action_counts.dtype.kind not in "iu" or (action_counts < 1).any():
        raise ArtifactError(f"mm_dist_breakdown: {len(real)} real and {len(generated)} generated distances, "
                            f"{action_counts.shape} action counts (need > 0 each and one integer >= 1 per generated pair)")
    if lengths is not None and np.shape(lengths) != generated.shape:
        raise ArtifactError(f"mm_dist_breakdown: {np.shape(lengths)} lengths for {len(generated)} generated pairs")
    multi_action = action_counts > 1
    cutoff = float(np.quantile(real, quantile))
    missed = generated > cutoff
    share = lambda chosen: float(missed[chosen].mean()) if chosen.any() else None  # noqa: E731
    by_length = None
    if lengths is not None:
        lengths = np.asarray(lengths)
        by_length = {f"{start}-{end - 1}" if end < 100_000 else f"{start}+": share((lengths >= start) & (lengths < end))
                     for start, end in MISS_LENGTH_BINS}
    return {"miss_share_by_actions": {"1": share(action_counts == 1), "2": share(action_counts == 2),
                                      "3+": share(action_counts >= 3)},
            "miss_share_by_length": by_length,
            "real_median": float(np.median(real)), "real_mean": float(real.mean()),
            "generated_median": float(np.median(generated)),
            "generated_mean": float(generated.mean()),
            "real_quantile": quantile, "real_cutoff": cutoff, "miss_share": share(np.ones_like(missed)),
            "miss_share_single_action": share(~multi_action), "miss_share_multi_action": share(multi_action),
            "multi_action_share": float(multi_action.mean()),
            "miss_mean": float(generated[missed].mean()) if missed.any() else None,
            "hit_mean": float(generated[~missed].mean()) if (~missed).any() else None, "unrelated_mean": float(unrelated_mean)}


# --------------------------------------------------------------------------- motion quality


def motion_quality(clips: Sequence[np.ndarray], fps: float = 20.0) -> dict[str, float]:
    """Mean over clips of foot skating ratio and jitter (m/s^3) of joints recovered from raw features (T_i, 263)."""
    if not clips:
        raise ArtifactError("motion_quality: no clips")
    skating, shaking = [], []
    for index, clip in enumerate(clips):
        if clip.ndim != 2 or clip.shape[1] != FEATURE_DIM or len(clip) < 2:
            raise ArtifactError(f"motion_quality: clip {index} has shape {clip.shape}, expected (T>=2, {FEATURE_DIM})")
        with torch.no_grad():
            joints = recover_from_ric(torch.from_numpy(np.asarray(clip, np.float32))).double().numpy()
        skating.append(foot_skating_ratio(joints))
        shaking.append(jitter(joints, fps))
    return {"foot_skating_ratio": float(np.mean(skating)), "jitter": float(np.mean(shaking))}


# --------------------------------------------------------------------------- bars


def quality_bars(real: Mapping[str, float], generated: Mapping[str, float]) -> list[dict]:
    """The acceptance bars for the generator against Real: each with the generator's value, the
    rule in words, its upper limit ``threshold`` (and ``lower`` where the bar is a band), and whether it holds."""
    top3, mm_dist, jitter_real = real["top3"], real["mm_dist"], real["jitter"]
    bars = [
        {"bar": "R-precision top-3 >= 80% of Real's", "value": generated["top3"], "threshold": 0.8 * top3,
         "rule": f">= {0.8 * top3:.3f}", "holds": generated["top3"] >= 0.8 * top3},
        {"bar": "MM-Dist within 20% of Real's", "value": generated["mm_dist"], "threshold": 1.2 * mm_dist,
         "lower": 0.8 * mm_dist, "rule": f"in [{0.8 * mm_dist:.3f}, {1.2 * mm_dist:.3f}]",
         "holds": abs(generated["mm_dist"] - mm_dist) <= 0.2 * mm_dist},
        {"bar": "foot skating ratio <= 0.10", "value": generated["foot_skating_ratio"], "threshold": 0.10,
         "rule": "<= 0.100", "holds": generated["foot_skating_ratio"] <= 0.10},
        {"bar": "jitter <= 2x Real's", "value": generated["jitter"], "threshold": 2.0 * jitter_real,
         "rule": f"<= {2.0 * jitter_real:.3f}", "holds": generated["jitter"] <= 2.0 * jitter_real},
    ]
    return [{k: (bool(v) if k == "holds" else float(v) if k in ("value", "threshold", "lower") else v)
             for k, v in bar.items()} for bar in bars]


# --------------------------------------------------------------------------- artifacts


def load_clips(features_file: str | Path, count: int | None = None) -> list[np.ndarray]:
    """Clips (T_i, 263) float32 of a ``features``/``offsets`` NPZ; ``count`` checks the clip count."""
    arrays = load_npz(features_file, {"features": (None, FEATURE_DIM), "offsets": (None,)})
    offsets = arrays["offsets"].astype(np.int64)
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(arrays["features"]) or (np.diff(offsets) < 1).any():
        raise ArtifactError(f"{features_file}: field 'offsets' is not an increasing split of 'features'")
    if count is not None and len(offsets) - 1 != count:
        raise ArtifactError(f"{features_file}: field 'offsets' holds {len(offsets) - 1} clips, the index has {count}")
    return split_ragged(arrays["features"].astype(np.float32), offsets)


#: Columns of a generated-samples table that record how the samples were drawn (one value per table).
SAMPLER_COLUMNS = ("seed", "ddim_steps", "guidance_scale", "eta")


def load_generated(features_file: str | Path, table_file: str | Path):
    """Generated samples: table rows (clip_id, caption, length and the :data:`SAMPLER_COLUMNS`) and clips
    (T_i, 263), checked against each other."""
    table = load_parquet(table_file, ["clip_id", "caption", "length", *SAMPLER_COLUMNS])
    clips = load_clips(features_file, len(table))
    for row, clip in zip(table.itertuples(index=False), clips):
        if len(clip) != int(row.length):
            raise ArtifactError(f"{table_file}: sample {row.clip_id}: field 'length' {row.length} != {len(clip)} frames")
    for name in SAMPLER_COLUMNS:
        if table[name].nunique() != 1 or not np.isfinite(table[name].to_numpy(dtype=np.float64)).all():
            raise ArtifactError(f"{table_file}: field '{name}' must hold one finite value for every sample")
    return table.reset_index(drop=True), clips


def sampler_settings(table) -> dict[str, Any]:
    """How :func:`load_generated`'s samples were drawn: ``seed``, ``ddim_steps`` (int), ``guidance_scale``, ``eta``."""
    first = table.iloc[0]
    return {"seed": int(first["seed"]), "ddim_steps": int(first["ddim_steps"]),
            "guidance_scale": float(first["guidance_scale"]), "eta": float(first["eta"])}


# --------------------------------------------------------------------------- report

#: HumanML3D test-set rows as the SoPo paper prints them (values it borrows from MoDiPO), transcribed
#: from the stored text of the paper (/work/shared/papers/002_*.txt, lines 665, 668 and 706): each
#: metric is (value, 95% interval) or (value, None) where the paper gives no interval.
PAPER_ROWS: tuple[dict, ...] = (
    {"method": "Real", "source": "SoPo, comparison table (from MoDiPO)",
     "top1": (0.511, 0.003), "top2": (0.703, 0.003), "top3": (0.797, 0.002), "mm_dist": (2.794, 0.008),
     "diversity": (9.503, 0.065), "fid": (0.002, 0.000)},
    {"method": "MDM [33]", "source": "SoPo, comparison table (from MoDiPO)",
     "top1": (0.418, 0.005), "top2": (0.604, 0.005), "top3": (0.703, 0.005), "mm_dist": (3.658, 0.020),
     "diversity": (9.546, 0.006), "fid": (0.501, 0.057)},
    {"method": "MDM (fast) [33]", "source": "SoPo Table 3 (50-step MDM that SoPo fine-tunes)",
     "top1": (0.455, None), "top2": (0.645, None), "top3": (0.749, None), "mm_dist": (3.304, None),
     "diversity": (9.948, None), "fid": (0.534, None)},
)

_COLUMNS = (("top1", "Top 1 ↑"), ("top2", "Top 2 ↑"), ("top3", "Top 3 ↑"), ("mm_dist", "MM Dist ↓"),
            ("diversity", "Diversity →"), ("fid", "FID ↓"), ("multimodality", "MultiModality ↑"))


def _miss_splits(breakdown: Mapping[str, object]) -> str:
    """The sentence on the miss shares by action clauses and by clip length for :func:`mm_dist_lines`
    (empty when the breakdown has neither split)."""
    splits = []
    for key, what in (("miss_share_by_actions", "the caption's action clauses (split at \"then\", \"after that\")"),
                      ("miss_share_by_length", "clip length in frames")):
        shares = breakdown.get(key)
        if shares:
            cells = ", ".join(f"{name}: {'–' if value is None else f'{100 * value:.0f}%'}" for name, value in shares.items())
            splits.append(f"by {what}, {cells}")
    return f" The share of misses {'; '.join(splits)}." if splits else ""


def mm_dist_lines(breakdown: Mapping[str, Any] | None) -> list[str]:
    """The report's paragraph on :func:`mm_dist_breakdown` (nothing when it is absent)."""
    if not breakdown:
        return []
    def percent(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.0f}%"
    q = round(100 * breakdown["real_quantile"])
    return [
        "### Where MM-Dist comes from",
        "",
        f"MM-Dist is a mean of matched text-motion distances. The median matched distance is "
        f"{breakdown['real_median']:.2f} for Real and {breakdown['generated_median']:.2f} for MDM; "
        f"{percent(breakdown['miss_share'])} of MDM's pairs lie beyond Real's {q}th percentile "
        f"({breakdown['real_cutoff']:.2f}): {percent(breakdown['miss_share_single_action'])} of those whose caption "
        f"names one action and {percent(breakdown['miss_share_multi_action'])} of those naming several "
        f"({percent(breakdown['multi_action_share'])} of the captions). The misses lie "
        f"{breakdown['miss_mean']:.2f} from their captions on average (a caption and the other captions' samples: "
        f"{breakdown['unrelated_mean']:.2f}), so they make up {breakdown['miss_share'] * breakdown['miss_mean']:.2f} "
        f"of the mean matched distance of {breakdown['generated_mean']:.2f}."
        + (f" The other pairs lie {breakdown['hit_mean']:.2f} from their captions on average (Real: "
           f"{breakdown['real_mean']:.2f})." if breakdown.get("hit_mean") is not None else "")
        + _miss_splits(breakdown)
        if breakdown.get("miss_mean") is not None else "No MDM pair lies beyond it.",
        "",
    ]


def render_t2m_report(metrics: Mapping[str, Mapping], protocol: Mapping[str, object]) -> str:
    """``reports/t2m.md``: SoPo Table 1's layout for this project's Real and MDM rows (``metrics``
    as in ``reports/metrics/t2m.json``), the papers' rows beside them, motion quality and the bars."""
    from humandiff.eval.report import format_interval, format_value, markdown_table

    def cell(row: Mapping, name: str) -> str:
        value = row.get(name)
        return format_interval(value, row.get(f"{name}_ci")) if value is not None else "–"

    ours = [[label, *[cell(metrics[key], name) for name, _ in _COLUMNS]]
            for key, label in (("real", "Real (test motions)"), ("mdm", "MDM (ours)"))]
    papers = [[f"{row['method']}", *[format_interval(*row[name]) if name in row else "–" for name, _ in _COLUMNS],
               row["source"]] for row in PAPER_ROWS]
    quality = [[label, format_value(metrics[key]["foot_skating_ratio"]), format_value(metrics[key]["jitter"], 2)]
               for key, label in (("real", "Real (test motions)"), ("mdm", "MDM (ours)"))]
    bars = [[bar["bar"], format_value(bar["value"]), bar["rule"], "yes" if bar["holds"] else "NO"]
            for bar in metrics["bars"]]
    headers = ["Methods", *[title for _, title in _COLUMNS]]
    lines = [
        "# Text-to-motion evaluation (SoPo Table 1 layout)",
        "",
        f"Test split of this project's motion corpus ({protocol['test_clips']} clips); "
        f"metrics on the embeddings of the evaluator trained here (`{protocol['evaluator']}`), never on the "
        f"SoPo reward model. Each cell: mean ± 95% interval (1.96 · std / √{protocol['replications']}) over "
        f"{protocol['replications']} replications.",
        "",
        "## This project",
        "",
        markdown_table(headers, ours),
        "## The papers' numbers (HumanML3D test set, as printed in the SoPo paper)",
        "",
        "Quoted, not measured here. They come from a different corpus (real mocap) and a different evaluator "
        "(Guo et al.'s, with GloVe), so compare ratios such as MDM / Real, not absolute values.",
        "",
        markdown_table([*headers, "Source"], papers, align="l" + "r" * len(_COLUMNS) + "l"),
        "## Motion quality (joints recovered from the 263-d features)",
        "",
        markdown_table(["Methods", "Foot skating ratio ↓", "Jitter (m/s³) ↓"], quality),
        "## Bars for the MDM prior",
        "",
        markdown_table(["Bar", "MDM", "Needs", "Holds"], bars, align="lrrl"),
        *mm_dist_lines(metrics.get("mm_dist_breakdown")),
        "## Protocol",
        "",
        *[f"- {line}" for line in protocol["notes"]],
        "",
    ]
    return "\n".join(lines)
