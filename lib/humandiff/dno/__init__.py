"""DNO, "Optimizing Diffusion Noise Can Serve As Universal Motion Priors": optimise the initial
noise of the text-to-motion prior.

- ``optimize``: the noise optimisation loop (``optimize_noise``) and its options;
- ``criteria``: the task losses (editing, control, refinement) a user can swap;
- ``tasks``: the task tables (edit actions, control targets, refinement noise);
- ``task_tables``: the pipeline's task tables from the ``dno_tasks`` settings;
- ``run``: one family of tasks solved by one method (input, guided baseline, DNO), on a device;
- ``metrics``: the paper's metrics (content preservation, objective error, realism);
- ``report`` and ``figures``: the paper's tables beside ours (its numbers in ``paper.yaml``),
  the findings checked, contact sheets, videos and loss curves.
"""
