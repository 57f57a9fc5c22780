"""Calibrating SoPo's cut-off tau to our reward model's scale.

The paper's tau (0.45; swept 0.40-0.60) is a value of TMR's score ``cosine / 2 + 0.5``. Our
reward has the same formula but a sharper model: matched captions score about 0.96, mismatched
about 0.50 (``reports/metrics/reward.json``), so the prior's samples crowd near the top and the
paper's values would send almost no step to the DPO term. What tau does in the paper is decide
the share of steps whose worst online sample counts as a "valuable unpreferred" motion (Sec.
4.2; Sec. 5.2: "tau determines the proportion of generated motions treated as ..."). So we carry
that share over, not the value:

1. Paper tau ``p`` -> quantile ``q(p) = anchor_quantile + (p - anchor_tau) / 0.20 * span``
   (:meth:`TauCalibration.quantile`): linear, increasing, so the sweep's order and even spacing
   survive. Defaults: the sweep's midpoint 0.50, TMR's cosine 0 (a pair no closer than a random
   caption's), maps to the median, and the 0.20-wide sweep to a 0.50-wide band of quantiles:
   0.40, 0.45, 0.50, 0.55, 0.60 -> 0.25, 0.375, 0.50, 0.625, 0.75. The paper gives no share, so
   these anchors are ours: both terms stay in play at every point of the sweep, and the default
   0.45 sends about 3 steps in 8 to the DPO term at the start. A stage may set ``anchor_quantile``
   to a measured share instead (e.g. that of the prior's K-groups holding an evaluator-judged miss).
2. Quantile -> our threshold: the ``q``-quantile of ``r(x_l, c)``, the lowest reward among K
   samples of the prior for a training caption (:func:`group_minima`), which is exactly what
   Algorithm 1 compares with tau; so at the start of fine-tuning a share ``q`` of the steps takes
   the DPO term (the policy then drifts, as the paper's does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from humandiff.io.artifacts import ArtifactError
from humandiff.sopo.options import REWARD_RANGE

#: The paper's sweep of tau (Table 3).
PAPER_TAUS = (0.40, 0.45, 0.50, 0.55, 0.60)
#: Width of the paper's sweep, the unit of ``span``.
PAPER_SWEEP_WIDTH = PAPER_TAUS[-1] - PAPER_TAUS[0]


def _finite(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ArtifactError(f"TauCalibration: parameter '{name}' must be a finite number, got {value!r}")


@dataclass(frozen=True)
class TauCalibration:
    """The map from the paper's tau to a quantile of the group-minimum reward (module doc)."""

    anchor_tau: float = 0.50
    anchor_quantile: float = 0.50
    span: float = 0.50

    def __post_init__(self) -> None:
        for name in ("anchor_tau", "anchor_quantile", "span"):
            _finite(getattr(self, name), name)
        low, high = REWARD_RANGE
        if not low < self.anchor_tau < high:
            raise ArtifactError(f"TauCalibration: parameter 'anchor_tau' must lie inside ({low}, {high}), got {self.anchor_tau}")
        if not 0.0 < self.anchor_quantile < 1.0:
            raise ArtifactError(f"TauCalibration: parameter 'anchor_quantile' must lie in (0, 1), got {self.anchor_quantile}")
        if not self.span > 0:
            raise ArtifactError(f"TauCalibration: parameter 'span' must be > 0, got {self.span}")

    def quantile(self, paper_tau: float) -> float:
        """``q(p)``, strictly increasing in ``p``; a value outside (0, 1) is a one-line error."""
        _finite(paper_tau, "paper_tau")
        q = self.anchor_quantile + (paper_tau - self.anchor_tau) / PAPER_SWEEP_WIDTH * self.span
        if not 0.0 < q < 1.0:
            raise ArtifactError(f"TauCalibration: tau {paper_tau} maps to quantile {q:.3f}, outside (0, 1); "
                                "narrow 'span' or move the anchor")
        return q


def group_minima(rewards: np.ndarray) -> np.ndarray:
    """``r(x_l, c)`` (N,): the lowest reward of each caption's K samples, rewards (N, K)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2 or rewards.shape[0] == 0 or rewards.shape[1] < 1 or not np.isfinite(rewards).all():
        raise ArtifactError(f"calibration: rewards must be a finite (N, K) array with N, K >= 1, got shape {rewards.shape}")
    return rewards.min(1)


def reward_threshold(rewards: np.ndarray, paper_tau: float, calibration: TauCalibration = TauCalibration()) -> float:
    """Our threshold for the paper's ``paper_tau``: the ``calibration.quantile(paper_tau)``-quantile of the
    group minima of ``rewards`` (N, K), the prior's K samples per training caption scored by our reward."""
    return float(np.quantile(group_minima(rewards), calibration.quantile(paper_tau)))


def calibrate_taus(rewards: np.ndarray, paper_taus: tuple[float, ...] = PAPER_TAUS,
                   calibration: TauCalibration = TauCalibration()) -> dict[float, dict[str, float]]:
    """For each paper tau, ``{"quantile": q, "threshold": ours, "dpo_share": share of group minima below it}``:
    the paper's 0.40-0.60 sweep as five of ours (non-decreasing, from one set of rewards)."""
    minima = group_minima(rewards)
    out = {}
    for tau in paper_taus:
        q = calibration.quantile(tau)
        threshold = float(np.quantile(minima, q))
        out[float(tau)] = {"quantile": q, "threshold": threshold, "dpo_share": float((minima < threshold).mean())}
    return out
