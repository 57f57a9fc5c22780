"""ScoreHMR, "Score-Guided Diffusion for 3D Human Recovery" (Stathopoulos et al., 2024): score-guided
refinement of a regressed SMPL pose.

- ``model``: the pose denoiser (an MLP of 3 residual blocks with timestep FiLM and the image feature
  in every block, over 24 joints x 6D, predicting noise; cosine schedule, T = 1000), the pose
  vector's conversions and the training loss (Eq. 11);
- ``losses``: the guidance losses a user can swap: robust keypoint reprojection (Eq. 12), cross-view
  (Eq. 13) and temporal (Eq. 14) consistency, and their combination;
- ``refine``: the DDIM inversion / guided DDIM loop of Algorithm 1 over the shared diffusion core,
  with the camera translation optimised alongside, early stopping and a per-iteration history;
  ``ScoreHMROptions`` holds the paper's settings;
- ``smplify``: the fitting baselines: single-stage SMPLify with a Gaussian-mixture pose prior (fitted
  by EM), angle and shape priors, and its video (smoothness) and multi-view (mean body pose) variants.

The stages' logic (issue 26): ``data`` (a set's extraction beside its ground truth, the metrics and
their protocol), ``training`` (the denoiser's training pairs, pseudo ground truth, the loop),
``run`` (a method on a setting), ``report`` and ``figures`` (Tables 1-4 beside ``paper.yaml``,
findings, pictures). docs/scorehmr.md describes the stages.
"""
