"""Scoring one model of the SoPo family by evaluate_t2m's protocol (Guo et al.), through its library.

Every row (the prior ``mdm`` and each fine-tuned run) is scored on the same test clips, captions
and lengths as ``sample_mdm``'s samples, with the sampler settings those samples record (DDIM
steps, guidance, eta, seed): set 0 is drawn with the samples' own seed, so for ``mdm`` it is
``sample_mdm``'s artifact itself, and sets 1 .. n-1 with :func:`humandiff.prior.mdm.sample_set_seed`
as evaluate_t2m draws them. Every row therefore shares its noise with the MDM row: the differences
are the fine-tuning's. Replications, R-precision batches of 32, FID, Diversity, 95% intervals and the
MM-Dist breakdown are :func:`humandiff.eval.t2m_report.evaluate_t2m`'s. MultiModality is not computed.
Metrics come from the evaluator only, never from the reward model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from humandiff.eval.t2m import METRIC_NAMES
from humandiff.eval.t2m_report import evaluate_t2m, scored_sample_sets, variance_note
from humandiff.io import ArtifactError
from humandiff.io.stage import positive, stage_params

SECTION = "sopo_eval"
#: The section's keys: the protocol, and ``sets`` (run name -> sample sets; more sets, more of the
#: sampling variance in the intervals, at one generation of the test captions each).
EVAL_PARAMS = {"seed": int, "threads": int, "device": str, "replications": int, "diversity_times": int,
               "sample_batch_size": int, "sets": dict}


def eval_params(params_file: str | Path, run: str) -> dict:
    """The checked ``sopo_eval`` section with ``sample_sets``, the sets of ``run``."""
    p = stage_params(params_file, SECTION, EVAL_PARAMS, complete=True)
    positive(params_file, SECTION, p, "threads", "replications", "diversity_times", "sample_batch_size")
    sets = p["sets"].get(run)
    if not isinstance(sets, int) or isinstance(sets, bool) or not 1 <= sets <= p["replications"]:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.sets.{run}' must be an integer in 1..replications "
                            f"({p['replications']}), got {sets!r}")
    return {**p, "sample_sets": sets, "mm_texts": 0, "mm_repeats": 1, "mm_times": 1}


def evaluate_model(evaluator, test, sampler, captions: list[str], lengths: list[int], settings: dict, p: dict,
                   first_set: list[np.ndarray] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The row of the model ``sampler`` draws from (a :class:`~humandiff.prior.sampler.PriorSampler`), Real's row,
    and the MM-Dist breakdown; ``first_set``: set 0 when already drawn (``sample_mdm``'s samples)."""
    if first_set is None:
        log("sample set 1")
        first_set = sampler(sampler.conditions(captions), lengths, settings["seed"])
    scored = scored_sample_sets(evaluator, first_set, sampler, captions, lengths, settings["seed"], p["sample_sets"], log=log)
    evaluation = evaluate_t2m(evaluator, test, captions, lengths, scored, [], [], p)
    from humandiff.eval.t2m import matched_distances
    from humandiff.text.tokens import minilm_token_table

    table = minilm_token_table(list(captions), evaluator.config.max_tokens)
    distances = matched_distances(evaluator.embed_texts(table, table.rows(list(captions))), scored[0][0])
    row = evaluation["mdm"]
    missing = [n for n in METRIC_NAMES if n not in row]
    if missing:
        raise ArtifactError(f"evaluate_model: missing metric(s) {missing}")
    return {"row": row, "real": evaluation["real"], "mm_dist_breakdown": evaluation["mm_dist_breakdown"],
            "protocol": {"replications": p["replications"], "sample_sets": p["sample_sets"], "samples": len(captions),
                         "diversity_times": p["diversity_times"], "ddim_steps": settings["ddim_steps"],
                         "guidance_scale": settings["guidance_scale"], "eta": settings["eta"], "seed": settings["seed"],
                         "note": variance_note(p["sample_sets"], p["replications"])},
            "first_set": first_set, "set0_distances": [float(d) for d in distances]}
