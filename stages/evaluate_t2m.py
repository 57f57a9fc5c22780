"""Stage evaluate_t2m: SoPo Table 1's metrics for Real (test motions) and our MDM, with 95% intervals.

Metrics come from the evaluator only (never the reward model). As in Guo et al.'s protocol, each
replication scores its own set of generated motions: set 0 is ``sample_mdm``'s artifact, and this
stage draws sets 1 .. ``sample_sets - 1`` itself for the same test clips (caption and length) with
the sampler settings the artifact records (seed, DDIM steps, guidance, eta), through the prior's
public sampler (``humandiff.prior.sampler.PriorSampler``); replication r scores set ``r mod sample_sets``.
MultiModality needs repeated generations per text, drawn the same way: ``mm_repeats`` per text for
``mm_texts`` test captions; ``mm_texts: 0`` skips it. The evaluation lives in :mod:`humandiff.eval.t2m_report`.
"""

from __future__ import annotations

import click
import torch

from humandiff.eval.t2m import load_generated, render_t2m_report, sampler_settings
from humandiff.eval.t2m_report import (
    check_t2m_inputs,
    evaluate_t2m,
    mdm_generations,
    needs_sampler,
    scored_sample_sets,
    t2m_params,
    t2m_payload,
    t2m_protocol,
    t2m_summary_line,
)
from humandiff.evaluators.evaluator import load_evaluator
from humandiff.io import atomic_path, save_json
from humandiff.io.stage import run_stage
from humandiff.motion.dataset import load_motion_split
from humandiff.prior.sampler import PriorSampler
from humandiff.train.device import resolve_device

SECTION = "evaluate_t2m"


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
    p = t2m_params(params_file, SECTION)
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    evaluator = load_evaluator(evaluator_file).to(device)  # it embeds on its parameters' device, returns numpy
    test = load_motion_split(index_file, features_file, None, "test")
    samples, first_set = load_generated(samples_file, samples_index_file)
    check_t2m_inputs(params_file, SECTION, p, len(test), len(first_set))

    settings = sampler_settings(samples)
    captions, lengths = [str(c) for c in samples["caption"]], [int(n) for n in samples["length"]]
    sampler, mm_captions, mm_groups = None, [], []
    if needs_sampler(p):
        sampler = PriorSampler(mdm_model, mdm_config, mean_std_file, embeddings_file, settings, p["sample_batch_size"],
                               device=device)
    scored_sets = scored_sample_sets(evaluator, first_set, sampler, captions, lengths, settings["seed"], p["sample_sets"],
                                     log=click.echo)
    if p["mm_texts"]:
        mm_captions, mm_groups = mdm_generations(p, sampler, test)
    evaluation = evaluate_t2m(evaluator, test, captions, lengths, scored_sets, mm_captions, mm_groups, p)

    protocol = t2m_protocol(p, len(test), evaluator_file, len(first_set), len(scored_sets), settings, samples_file)
    payload = t2m_payload(evaluation, protocol, metrics_file)
    save_json(metrics_file, payload)
    with atomic_path(report_file, suffix=".md") as tmp:
        tmp.write_text(render_t2m_report({**payload}, protocol))
    click.echo(t2m_summary_line(payload))


if __name__ == "__main__":
    main()
