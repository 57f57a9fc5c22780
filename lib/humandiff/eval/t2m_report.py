"""The ``evaluate_t2m`` stage's evaluation: its params, the MDM sample sets it scores, Guo et al.'s
replications for Real and MDM, the metrics JSON and the protocol notes of the report.

Set 0 is ``sample_mdm``'s artifact; sets 1 .. ``sample_sets - 1`` are drawn here for the same test
clips (caption and length) with the sampler settings the artifact records; replication r scores
set ``r mod sample_sets``. MultiModality draws ``mm_repeats`` generations per text for ``mm_texts``
test captions the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from humandiff.eval.t2m import (
    METRIC_NAMES,
    activation_statistics,
    matched_distances,
    mean_interval,
    mm_dist_breakdown,
    motion_quality,
    multimodality,
    quality_bars,
    summarize,
    t2m_replication,
    unrelated_mean_distance,
)
from humandiff.evaluators.evaluator import random_crop
from humandiff.io import ArtifactError
from humandiff.io.stage import positive, stage_params
from humandiff.text.clauses import split_clauses

#: The evaluate_t2m section: its keys and their types.
T2M_PARAMS = {"seed": int, "threads": int, "device": str, "replications": int, "sample_sets": int, "diversity_times": int,
              "mm_texts": int, "mm_repeats": int, "mm_times": int, "sample_batch_size": int}


def t2m_params(params_file: str | Path, section: str) -> dict:
    """The checked ``section`` of ``params_file`` (one-line errors naming ``section.key``)."""
    p = stage_params(params_file, section, T2M_PARAMS, complete=True)
    positive(params_file, section, p, "threads", "replications", "sample_sets", "diversity_times", "mm_repeats",
             "mm_times", "sample_batch_size")
    if p["mm_texts"] < 0:
        raise ArtifactError(f"{params_file}: parameter '{section}.mm_texts' must be >= 0, got {p['mm_texts']}")
    if p["sample_sets"] > p["replications"]:
        raise ArtifactError(f"{params_file}: parameter '{section}.sample_sets' {p['sample_sets']} exceeds "
                            f"replications {p['replications']} (each replication scores one set)")
    return p


def check_t2m_inputs(params_file: str | Path, section: str, p: dict, test_clips: int, samples: int) -> None:
    """The params that must fit the data: ``test_clips`` test clips and ``samples`` MDM samples."""
    if p["mm_texts"] > test_clips:
        raise ArtifactError(f"{params_file}: parameter '{section}.mm_texts' {p['mm_texts']} exceeds {test_clips} test clips")
    if p["diversity_times"] > min(test_clips, samples):
        raise ArtifactError(f"{params_file}: parameter '{section}.diversity_times' {p['diversity_times']} exceeds the "
                            f"{test_clips} test clips or {samples} MDM samples")
    if p["mm_texts"] and p["mm_times"] > p["mm_repeats"]:
        raise ArtifactError(f"{params_file}: parameter '{section}.mm_times' {p['mm_times']} exceeds "
                            f"mm_repeats {p['mm_repeats']}")


def needs_sampler(p: dict) -> bool:
    """Whether the stage draws motions itself (more sample sets, or MultiModality's repeats)."""
    return p["sample_sets"] > 1 or bool(p["mm_texts"])


def scored_sample_sets(evaluator, first_set: Sequence[np.ndarray], sampler, captions: Sequence[str],
                       lengths: Sequence[int], seed: int, sets: int,
                       log: Callable[[str], None] = print) -> list[tuple[np.ndarray, dict]]:
    """Each set's evaluator embeddings (N, E) and motion quality: ``first_set``, then ``sets - 1`` sets
    drawn by ``sampler`` (:class:`~humandiff.prior.sampler.PriorSampler`) for ``captions`` and
    ``lengths`` with independent seeds; the motions themselves are not kept."""
    scored = [(evaluator.embed_motions(first_set), motion_quality(first_set))]
    if sets > 1:
        from humandiff.prior.mdm import sample_set_seed

        conditions = sampler.conditions(list(captions))
        for k in range(1, sets):
            log(f"sample set {k + 1} of {sets}")
            clips = sampler(conditions, list(lengths), sample_set_seed(seed, k))
            scored.append((evaluator.embed_motions(clips), motion_quality(clips)))
    return scored


def mdm_generations(p: dict, sampler, test_split) -> tuple[list[str], list[list[np.ndarray]]]:
    """``mm_repeats`` raw generations (T, 263) for each of ``mm_texts`` test clips' first captions."""
    chosen = np.sort(np.random.default_rng([p["seed"], 7]).choice(len(test_split), p["mm_texts"], replace=False))
    captions = [test_split.captions(int(k))[0] for k in chosen]
    repeat = p["mm_repeats"]
    raw = sampler(np.repeat(sampler.conditions(captions), repeat, axis=0),
                  np.repeat(test_split.lengths[chosen], repeat).tolist(), seed=p["seed"])
    return captions, [raw[i * repeat : (i + 1) * repeat] for i in range(len(captions))]


def evaluate_t2m(evaluator, test, sample_captions: Sequence[str], sample_lengths: Sequence[int],
                 scored_sets: Sequence[tuple[np.ndarray, dict]], mm_captions: Sequence[str],
                 mm_groups: Sequence[Sequence[np.ndarray]], p: dict) -> dict[str, Any]:
    """Real's and MDM's rows (means over ``p["replications"]`` with 95% intervals, motion quality,
    MultiModality), the quality bars and the MM-Dist breakdown over every sample set."""
    from humandiff.text.tokens import minilm_token_table

    real_clips = [test.clip(k) for k in range(len(test))]
    real_captions = [test.captions(k) for k in range(len(test))]
    all_captions = [c for caps in real_captions for c in caps] + list(sample_captions) + list(mm_captions)
    table = minilm_token_table(all_captions, evaluator.config.max_tokens)
    real_caption_rows = [table.rows(caps) for caps in real_captions]

    # FID's reference: every test clip once, its leading multiple of 4 frames.
    real_motion = evaluator.embed_motions(real_clips)
    reference = activation_statistics(real_motion)
    mdm_motions = [motion for motion, _ in scored_sets]
    mdm_text = evaluator.embed_texts(table, table.rows(list(sample_captions)))
    mm_embeddings = np.stack([evaluator.embed_motions(group) for group in mm_groups]) if mm_groups else None

    real_rows, mdm_rows, mm_values = [], [], []
    for replication in range(p["replications"]):
        rng = np.random.default_rng([p["seed"], replication])
        # Real, as Guo et al.'s ground-truth pass: a random crop and a random caption per clip each replication.
        crops = [random_crop(clip, rng) for clip in real_clips]
        caption_rows = np.array([rows[rng.integers(len(rows))] for rows in real_caption_rows])
        real_rows.append(t2m_replication(evaluator.embed_texts(table, caption_rows), evaluator.embed_motions(crops),
                                         reference, rng, p["diversity_times"]))
        mdm_rows.append(t2m_replication(mdm_text, mdm_motions[replication % len(mdm_motions)], reference, rng,
                                        p["diversity_times"]))
        if mm_embeddings is not None:
            mm_values.append(multimodality(mm_embeddings, p["mm_times"], rng))

    real, mdm = summarize(real_rows), summarize(mdm_rows)
    # Real's matched distances: every clip's leading crop with its first caption
    real_first = matched_distances(evaluator.embed_texts(table, np.array([rows[0] for rows in real_caption_rows])),
                                   real_motion)
    # the misses over every sample set: one pair per test clip and set
    sets = len(mdm_motions)
    action_counts = np.array([len(split_clauses(c)) for c in sample_captions])
    breakdown = mm_dist_breakdown(real_first, np.concatenate([matched_distances(mdm_text, m) for m in mdm_motions]),
                                  np.tile(action_counts, sets),
                                  float(np.mean([unrelated_mean_distance(mdm_text, m) for m in mdm_motions])),
                                  lengths=np.tile(list(sample_lengths), sets))
    if mm_values:
        mdm["multimodality"], mdm["multimodality_ci"] = mean_interval(mm_values)
    else:
        mdm["multimodality"] = mdm["multimodality_ci"] = None
    real.update(motion_quality(real_clips))
    # every set has one motion per chosen clip: the mean over sets is the mean over all their motions
    mdm.update({name: float(np.mean([quality[name] for _, quality in scored_sets])) for name in scored_sets[0][1]})
    return {"real": real, "mdm": mdm, "bars": quality_bars(real, mdm), "mm_dist_breakdown": breakdown}


def variance_note(sets: int, replications: int) -> str:
    """What the MDM intervals include of the sampling variance with ``sets`` sample sets."""
    if sets == replications:
        return "Each replication scores its own set, as Guo et al.'s protocol: the intervals include sampling variance."
    if sets > 1:
        return (f"The intervals include sampling variance from {sets} independent sets only, each scored about "
                f"{replications / sets:.3g} times, so they understate it.")
    return ("With one set the replications redraw batches, pairs and Real's crops, not the samples: the "
            "MDM intervals leave out sampling variance (zero where every sample is used every time).")


def t2m_protocol(p: dict, test_clips: int, evaluator_file: str, samples: int, sets: int, settings: Mapping[str, Any],
                 samples_file: str) -> dict[str, Any]:
    """The protocol's figures (the metrics JSON's ``protocol``) and its notes (the report's)."""
    return {
        "test_clips": test_clips,
        "evaluator": evaluator_file,
        "mdm_samples": samples,
        "mdm_sample_sets": sets,
        "replications": p["replications"],
        "notes": [
            "R-precision: texts and motions shuffled into batches of exactly 32 pairs (remainder dropped), the 32 "
            "motions ranked per text by Euclidean distance; MM-Dist over the same pairs.",
            f"FID against the Gaussian of all {test_clips} test motions (leading multiple-of-4 crop); Real uses a "
            "fresh random crop (multiple of 4, one unit shorter 1/3 of the time) and a random caption per clip in "
            "each replication, as Guo et al.'s ground-truth pass.",
            f"Diversity: {p['diversity_times']} random pairs (paper: 300).",
            (f"MultiModality: {p['mm_texts']} test captions x {p['mm_repeats']} MDM generations "
             f"({settings['ddim_steps']} DDIM steps, guidance {settings['guidance_scale']}), {p['mm_times']} pairs each "
             "(paper: 100 x 30, 10 pairs); drawn by this stage from the MDM prior."
             if p["mm_texts"] else "MultiModality: not computed (mm_texts = 0)."),
            f"MDM row: {sets} sample set(s) of {samples} motions, one per chosen test clip with its length "
            f"and first caption ({settings['ddim_steps']} DDIM steps, guidance {settings['guidance_scale']}, eta "
            f"{settings['eta']}); set 0 is `{samples_file}`, the others were drawn by this stage with independent "
            f"seeds, and replication r scores set r mod {sets}. {variance_note(sets, p['replications'])} Foot skating, "
            "jitter and the MM-Dist breakdown pool every set.",
            "Foot skating ratio (foot joints below 5 cm moving > 2.5 cm per frame) and jitter (mean |third "
            "difference| x fps^3): mean over clips of joints from `recover_from_ric`.",
        ],
    }


def t2m_payload(evaluation: Mapping[str, Any], protocol: Mapping[str, Any], metrics_file: str | Path) -> dict[str, Any]:
    """The metrics JSON: the evaluation and the protocol without its notes; an error when a row lacks a metric."""
    payload = {"real": evaluation["real"], "mdm": evaluation["mdm"], "bars": evaluation["bars"],
               "mm_dist_breakdown": evaluation["mm_dist_breakdown"],
               "protocol": {k: v for k, v in protocol.items() if k != "notes"}}
    for row in (payload["real"], payload["mdm"]):
        missing = [n for n in METRIC_NAMES if n not in row]
        if missing:
            raise ArtifactError(f"{metrics_file}: missing metric(s) {missing}")
    return payload


def t2m_summary_line(payload: Mapping[str, Any]) -> str:
    """One line for the console: top-3 of both rows, MDM's FID and the bars held."""
    real, mdm, bars = payload["real"], payload["mdm"], payload["bars"]
    return (f"t2m: Real top-3 {real['top3']:.3f}, MDM top-3 {mdm['top3']:.3f}, MDM FID {mdm['fid']:.3f}; "
            f"bars held: {sum(b['holds'] for b in bars)}/{len(bars)}")
