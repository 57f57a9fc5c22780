"""SoPo ("Text-to-Motion Generation Using Semi-Online Preference Optimization"): semi-online preference optimisation of the text-to-motion prior.

The paper's package (issue 27), on the shared diffusion core and the MDM prior:

- :mod:`~humandiff.sopo.options`: :class:`SoPoOptions` (the paper's defaults: K=4, tau 0.45, C=2,
  beta=1, AdamW 1e-5 with warm-up and cosine decay, batch 64, 50-step DDIM, guidance 2.5) and the
  variants ``sopo``, ``sopo_no_vu``, ``dsopo``, ``usopo`` (Table 3), ``dpo_offline`` (MoDiPO-like)
  and ``dpo_online``; the learning-rate schedule.
- :mod:`~humandiff.sopo.loss`: Algorithm 1's loss for one batch (Eq. S15 / S28): the lowest-reward
  online sample as x_l, ``beta_w = beta (C - S(x_w))`` in the reward model's motion latent, the
  DPO / preferred-only switch on tau, Diffusion-DPO errors of our x0 model and their per-t relation
  to the paper's eps errors.
- :mod:`~humandiff.sopo.algorithm`: one training step with its collaborators passed in (policy,
  frozen reference, online sampler, reward, optimiser) and its history record; the offline pair
  builder of the MoDiPO baseline.
- :mod:`~humandiff.sopo.calibration`: tau on our reward's scale, as a quantile of the prior's own
  group-minimum rewards; the paper's 0.40-0.60 sweep mapped to five of ours.

- :mod:`~humandiff.sopo.run`: the stages' logic (params, inputs, the calibration run, the offline
  pairs, the resumable fine-tuning loop); :mod:`~humandiff.sopo.evaluate`: one row by evaluate_t2m's
  protocol through its library; :mod:`~humandiff.sopo.report`: Tables 1 and 3, the findings, the
  paper's numbers (``paper.yaml``). Stages: ``sopo_calibrate``, ``sopo_offline_pairs``,
  ``sopo@<run>``, ``sopo_offline@dpo_offline``, ``evaluate_sopo@<row>``, ``report_sopo`` (docs/sopo.md).
"""
