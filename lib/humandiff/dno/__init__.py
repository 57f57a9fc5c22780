"""DNO, "Optimizing Diffusion Noise Can Serve As Universal Motion Priors": optimise the initial
noise of the text-to-motion prior.

- ``optimize``: the noise optimisation loop (``optimize_noise``) and its options;
- ``criteria``: the task losses (editing, control, refinement) a user can swap;
- ``tasks``: the task tables (edit actions, control targets, refinement noise);
- ``metrics``: the paper's metrics (content preservation, objective error, realism).
"""
