"""Stage evaluate_t2m: SoPo Table 1's metrics for Real (test motions) and our MDM, with 95% intervals.

Metrics come from the evaluator only (never the reward model). As in Guo et al.'s protocol, each
replication scores its own set of generated motions: set 0 is ``sample_mdm``'s artifact, and this
stage draws sets 1 .. ``sample_sets - 1`` itself for the same test clips (caption and length) with
the sampler settings the artifact records (seed, DDIM steps, guidance, eta), through the prior's
public sampler (``humandiff.prior.sampler.PriorSampler``); replication r scores set ``r mod sample_sets``.
MultiModality needs repeated generations per text, drawn the same way: ``mm_repeats`` per text for
``mm_texts`` test captions; ``mm_texts: 0`` skips it.
"""

from __future__ import annotations

import click
import numpy as np
import torch

from humandiff.motion.dataset import load_motion_split
from humandiff.eval.t2m import (
    METRIC_NAMES,
    activation_statistics,
    load_generated,
    matched_distances,
    mean_interval,
    mm_dist_breakdown,
    motion_quality,
    multimodality,
    quality_bars,
    render_t2m_report,
    sampler_settings,
    summarize,
    t2m_replication,
    unrelated_mean_distance,
)
from humandiff.io import ArtifactError, atomic_path, save_json
from humandiff.evaluators.evaluator import load_evaluator, random_crop
from humandiff.prior.sampler import PriorSampler
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.text.clauses import split_clauses
from humandiff.train.device import resolve_device

SECTION = "evaluate_t2m"
PARAMS = {"seed": int, "threads": int, "replications": int, "sample_sets": int, "diversity_times": int,
          "mm_texts": int, "mm_repeats": int, "mm_times": int, "sample_batch_size": int}


def mdm_generations(p: dict, sampler: PriorSampler, test_split) -> tuple[list[str], list[list[np.ndarray]]]:
    """``mm_repeats`` raw generations (T, 263) for each of ``mm_texts`` test clips' first captions."""
    chosen = np.sort(np.random.default_rng([p["seed"], 7]).choice(len(test_split), p["mm_texts"], replace=False))
    captions = [test_split.captions(int(k))[0] for k in chosen]
    repeat = p["mm_repeats"]
    raw = sampler(np.repeat(sampler.conditions(captions), repeat, axis=0),
                  np.repeat(test_split.lengths[chosen], repeat).tolist(), seed=p["seed"])
    return captions, [raw[i * repeat : (i + 1) * repeat] for i in range(len(captions))]


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--evaluator", "evaluator_file", default="data/models/evaluator.pt", show_default=True, type=click.Path())
@click.option("--index", "index_file", default="data/motion/hml/index.parquet", show_default=True, type=click.Path())
@click.option("--features", "features_file", default="data/motion/hml/features.npz", show_default=True, type=click.Path())
@click.option("--mean-std", "mean_std_file", default="data/motion/hml/mean_std.npz", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True,
              type=click.Path())
@click.option("--samples", "samples_file", default="data/mdm/samples.npz", show_default=True, type=click.Path())
@click.option("--samples-index", "samples_index_file", default="data/mdm/samples.parquet", show_default=True,
              type=click.Path())
@click.option("--mdm-model", default="data/mdm/model.pt", show_default=True, type=click.Path())
@click.option("--mdm-config", default="data/mdm/config.json", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/t2m.md", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/t2m.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, evaluator_file: str, index_file: str, features_file: str, mean_std_file: str,
         embeddings_file: str, samples_file: str, samples_index_file: str, mdm_model: str, mdm_config: str,
         report_file: str, metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "threads", "replications", "sample_sets", "diversity_times", "mm_repeats",
             "mm_times", "sample_batch_size")
    if p["mm_texts"] < 0:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.mm_texts' must be >= 0, got {p['mm_texts']}")
    if p["sample_sets"] > p["replications"]:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.sample_sets' {p['sample_sets']} exceeds "
                            f"replications {p['replications']} (each replication scores one set)")
    device = resolve_device(p.get("device", "cpu"), f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    evaluator = load_evaluator(evaluator_file).to(device)  # it embeds on its parameters' device, returns numpy
    test = load_motion_split(index_file, features_file, None, "test")
    real_clips = [test.clip(k) for k in range(len(test))]
    samples, first_set = load_generated(samples_file, samples_index_file)
    if p["mm_texts"] > len(test):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.mm_texts' {p['mm_texts']} exceeds {len(test)} test clips")
    if p["diversity_times"] > min(len(test), len(first_set)):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.diversity_times' {p['diversity_times']} exceeds the "
                            f"{len(test)} test clips or {len(first_set)} MDM samples")
    if p["mm_texts"] and p["mm_times"] > p["mm_repeats"]:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.mm_times' {p['mm_times']} exceeds "
                            f"mm_repeats {p['mm_repeats']}")

    settings = sampler_settings(samples)
    sample_captions = [str(c) for c in samples["caption"]]
    sample_lengths = [int(n) for n in samples["length"]]
    # each set's evaluator embeddings (N, E) and motion quality; the motions themselves are not kept
    scored_sets = [(evaluator.embed_motions(first_set), motion_quality(first_set))]
    mm_captions, mm_groups = [], []
    if p["sample_sets"] > 1 or p["mm_texts"]:
        from humandiff.prior.mdm import sample_set_seed

        sampler = PriorSampler(mdm_model, mdm_config, mean_std_file, embeddings_file, settings, p["sample_batch_size"],
                               device=device)
        sample_conditions = sampler.conditions(sample_captions) if p["sample_sets"] > 1 else None
        for k in range(1, p["sample_sets"]):
            click.echo(f"sample set {k + 1} of {p['sample_sets']}")
            clips = sampler(sample_conditions, sample_lengths, sample_set_seed(settings["seed"], k))
            scored_sets.append((evaluator.embed_motions(clips), motion_quality(clips)))
        if p["mm_texts"]:
            mm_captions, mm_groups = mdm_generations(p, sampler, test)

    from humandiff.text.tokens import minilm_token_table

    real_captions = [test.captions(k) for k in range(len(test))]
    all_captions = [c for caps in real_captions for c in caps] + sample_captions + mm_captions
    table = minilm_token_table(all_captions, evaluator.config.max_tokens)
    real_caption_rows = [table.rows(caps) for caps in real_captions]

    # FID's reference: every test clip once, its leading multiple of 4 frames.
    real_motion = evaluator.embed_motions(real_clips)
    reference = activation_statistics(real_motion)
    mdm_motions = [motion for motion, _ in scored_sets]
    mdm_text = evaluator.embed_texts(table, table.rows(sample_captions))
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
                                  lengths=np.tile(sample_lengths, sets))
    if mm_values:
        mdm["multimodality"], mdm["multimodality_ci"] = mean_interval(mm_values)
    else:
        mdm["multimodality"] = mdm["multimodality_ci"] = None
    real.update(motion_quality(real_clips))
    # every set has one motion per chosen clip: the mean over sets is the mean over all their motions
    mdm.update({name: float(np.mean([quality[name] for _, quality in scored_sets])) for name in scored_sets[0][1]})
    bars = quality_bars(real, mdm)
    if sets == p["replications"]:
        variance_note = "Each replication scores its own set, as Guo et al.'s protocol: the intervals include sampling variance."
    elif sets > 1:
        variance_note = (f"The intervals include sampling variance from {sets} independent sets only, each scored about "
                         f"{p['replications'] / sets:.3g} times, so they understate it.")
    else:
        variance_note = ("With one set the replications redraw batches, pairs and Real's crops, not the samples: the "
                         "MDM intervals leave out sampling variance (zero where every sample is used every time).")
    protocol = {
        "test_clips": len(test),
        "evaluator": evaluator_file,
        "mdm_samples": len(first_set),
        "mdm_sample_sets": sets,
        "replications": p["replications"],
        "notes": [
            "R-precision: texts and motions shuffled into batches of exactly 32 pairs (remainder dropped), the 32 "
            "motions ranked per text by Euclidean distance; MM-Dist over the same pairs.",
            f"FID against the Gaussian of all {len(test)} test motions (leading multiple-of-4 crop); Real uses a "
            "fresh random crop (multiple of 4, one unit shorter 1/3 of the time) and a random caption per clip in "
            "each replication, as Guo et al.'s ground-truth pass.",
            f"Diversity: {p['diversity_times']} random pairs (paper: 300).",
            (f"MultiModality: {p['mm_texts']} test captions x {p['mm_repeats']} MDM generations "
             f"({settings['ddim_steps']} DDIM steps, guidance {settings['guidance_scale']}), {p['mm_times']} pairs each "
             "(paper: 100 x 30, 10 pairs); drawn by this stage from the MDM prior."
             if p["mm_texts"] else "MultiModality: not computed (mm_texts = 0)."),
            f"MDM row: {sets} sample set(s) of {len(first_set)} motions, one per chosen test clip with its length "
            f"and first caption ({settings['ddim_steps']} DDIM steps, guidance {settings['guidance_scale']}, eta "
            f"{settings['eta']}); set 0 is `{samples_file}`, the others were drawn by this stage with independent "
            f"seeds, and replication r scores set r mod {sets}. {variance_note} Foot skating, jitter and the MM-Dist "
            "breakdown pool every set.",
            "Foot skating ratio (foot joints below 5 cm moving > 2.5 cm per frame) and jitter (mean |third "
            "difference| x fps^3): mean over clips of joints from `recover_from_ric`.",
        ],
    }
    payload = {"real": real, "mdm": mdm, "bars": bars, "mm_dist_breakdown": breakdown, "protocol": {k: v for k, v in protocol.items() if k != "notes"}}
    for row in (real, mdm):
        missing = [n for n in METRIC_NAMES if n not in row]
        if missing:
            raise ArtifactError(f"{metrics_file}: missing metric(s) {missing}")
    save_json(metrics_file, payload)
    with atomic_path(report_file, suffix=".md") as tmp:
        tmp.write_text(render_t2m_report({**payload}, protocol))
    click.echo(f"t2m: Real top-3 {real['top3']:.3f}, MDM top-3 {mdm['top3']:.3f}, MDM FID {mdm['fid']:.3f}; "
               f"bars held: {sum(b['holds'] for b in bars)}/{len(bars)}")


if __name__ == "__main__":
    main()
