"""SoPo's settings: :class:`SoPoOptions`, whose defaults are the paper's (Sec. 5, Appendix C.1), and its variants.

Variants (``variant``), all one loss (:mod:`humandiff.sopo.loss`) with three switches, the pair's
source, the reweighting ``beta_w = beta (C - S(x_w))`` and the valuable-unpreferred filter
``r(x_l, c) < tau``:

========================  =========================================  ==========  ======
variant                   pair (x_w, x_l)                            reweight    filter
========================  =========================================  ==========  ======
``sopo``                  dataset x_w, lowest-reward of K online     yes         yes     (Eq. S15 / S28, Alg. 1)
``sopo_no_vu``            as sopo                                    yes         no      (Table 3 "w/o VU")
``dsopo``                 as sopo                                    no          no      (Eq. 12 / S12)
``usopo``                 as sopo                                    no          yes     (Eq. 13 / S16)
``dpo_offline``           best / worst of K reference samples,       no          no      (MoDiPO-like, Eq. 7)
                          drawn once before training
``dpo_online``            best / worst of the policy's K each step   no          no      (online DPO, Sec. 3.2)
========================  =========================================  ==========  ======

``tau`` is on the paper's reward scale (TMR's ``cosine / 2 + 0.5``, in [0, 1]); the threshold
the loss compares our reward with comes from :mod:`humandiff.sopo.calibration`.
Where the paper is silent (the number of steps, the warm-up length, AdamW's weight decay, the
guidance of the online samples, the T w_t factor), the default is ours and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Mapping, get_args

from humandiff.io.artifacts import ArtifactError

Variant = Literal["sopo", "sopo_no_vu", "dsopo", "usopo", "dpo_offline", "dpo_online"]
VARIANTS: tuple[str, ...] = get_args(Variant)
#: Where a variant's pair comes from: "dataset" (x_w from the training set, x_l online), "offline"
#: (both from the reference, drawn once), "online" (both from the policy, each step).
PAIR_SOURCE = {"sopo": "dataset", "sopo_no_vu": "dataset", "dsopo": "dataset", "usopo": "dataset",
               "dpo_offline": "offline", "dpo_online": "online"}
#: The loss space: "x0" (our model's own per-sample error) or "eps" (the paper's, by the SNR weight per t).
ErrorSpace = Literal["x0", "eps"]
#: The reward's range (TMR score ``cosine / 2 + 0.5``); tau must lie strictly inside it.
REWARD_RANGE = (0.0, 1.0)


@dataclass(frozen=True)
class SoPoOptions:
    """SoPo's settings; defaults are the paper's MDM setup unless marked "ours".

    - ``K`` online samples per caption (MDM: 4, MLD: 2), ``tau`` the cut-off on the paper's
      reward scale (0.45), ``C`` (2) and ``beta`` (1) of ``beta_w = beta (C - S(x_w))``.
    - ``lr`` 1e-5 for AdamW (``weight_decay``: ours, AdamW's usual 0.01) with a linear warm-up of
      ``warmup_steps`` (ours: 100; the paper: "over the initial steps") and a cosine decay to 0 at
      ``steps`` (ours: 2000; the paper trains "up to 100 minutes" on one RTX 4090).
    - ``batch_size`` 64; ``ddim_steps`` 50 for the online samples and for evaluation;
      ``guidance_scale`` 2.5 at test; ``sample_guidance`` the guidance of the online samples (ours:
      2.5, the sampler the policy is judged with; the paper does not say).
    - ``dpo_scale``: the ``T w_t`` factor of Diffusion-DPO in front of the error differences (ours:
      1000 with w_t = 1, i.e. the T of MDM's 1000-step schedule, as Diffusion-DPO's ``T`` is the
      model's number of diffusion steps); ``error_space`` (ours: "x0") see :mod:`humandiff.sopo.loss`.
    """

    variant: Variant = "sopo"
    K: int = 4
    tau: float = 0.45
    C: float = 2.0
    beta: float = 1.0
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 100
    steps: int = 2000
    batch_size: int = 64
    ddim_steps: int = 50
    guidance_scale: float = 2.5
    sample_guidance: float = 2.5
    dpo_scale: float = 1000.0
    error_space: ErrorSpace = "x0"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ArtifactError(f"SoPoOptions: parameter 'variant' must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name in ("K", "steps", "batch_size", "ddim_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"SoPoOptions: parameter '{name}' must be a positive integer, got {value!r}")
        if self.K < 2:
            raise ArtifactError(f"SoPoOptions: parameter 'K' must be >= 2 (a best and a worst sample), got {self.K}")
        if not isinstance(self.warmup_steps, int) or isinstance(self.warmup_steps, bool) or self.warmup_steps < 0:
            raise ArtifactError(f"SoPoOptions: parameter 'warmup_steps' must be a non-negative integer, "
                                f"got {self.warmup_steps!r}")
        for name in ("tau", "C", "beta", "lr", "weight_decay", "guidance_scale", "sample_guidance", "dpo_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ArtifactError(f"SoPoOptions: parameter '{name}' must be a finite number, got {value!r}")
        low, high = REWARD_RANGE
        if not low < self.tau < high:
            raise ArtifactError(f"SoPoOptions: parameter 'tau' must lie inside the reward's range ({low}, {high}), "
                                f"got {self.tau}")
        if not self.C > 1.0:
            raise ArtifactError(f"SoPoOptions: parameter 'C' must be > 1 (the paper's C > 1), got {self.C}")
        for name in ("beta", "lr", "dpo_scale"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"SoPoOptions: parameter '{name}' must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ArtifactError(f"SoPoOptions: parameter 'weight_decay' must be >= 0, got {self.weight_decay}")
        if self.error_space not in get_args(ErrorSpace):
            raise ArtifactError(f"SoPoOptions: parameter 'error_space' must be 'x0' or 'eps', got {self.error_space!r}")

    @property
    def pair_source(self) -> str:
        """"dataset", "offline" or "online" (:data:`PAIR_SOURCE`)."""
        return PAIR_SOURCE[self.variant]

    @property
    def reweight(self) -> bool:
        """Whether x_w's term is weighted by ``beta_w = beta (C - S(x_w))`` (else ``beta``)."""
        return self.variant in ("sopo", "sopo_no_vu")

    @property
    def filtered(self) -> bool:
        """Whether the DPO term needs ``r(x_l, c) < tau`` (else the preferred-only term)."""
        return self.variant in ("sopo", "usopo")

    def with_overrides(self, overrides: Mapping[str, Any]) -> "SoPoOptions":
        """A copy with ``overrides`` (e.g. a params.yaml block); unknown names are a one-line error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ArtifactError(f"SoPoOptions: unknown parameter(s) {', '.join(unknown)}")
        return replace(self, **dict(overrides))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learning_rate(step: int, options: SoPoOptions) -> float:
    """Learning rate of optimiser step ``step`` in ``[0, steps)``: ``lr * (step + 1) / warmup_steps``
    during the warm-up, then ``lr * (1 + cos(pi * (step - W) / (steps - W))) / 2`` (0 after the last step)."""
    W = options.warmup_steps
    if step < W:
        return options.lr * (step + 1) / W
    progress = min((step - W) / max(options.steps - W, 1), 1.0)
    return options.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
