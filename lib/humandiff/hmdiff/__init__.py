"""HMDiff ("Distribution-Aligned Diffusion for Human Mesh Recovery", Foo et al., ICCV 2023): mesh
recovery by reverse diffusion over the vertices of a coarse mesh, aligned to a pose-heatmap prior by
the Distribution Alignment Technique (DAT). The paper's package (issue 28).

- ``model``: the vertex denoiser ``g`` (vertex-ID 64 + step 61 + xyz 3 = 128-d tokens, one vertex
  self-attention layer, one vertex-image cross-attention layer, a linear output; linear schedule,
  K = 200), the regression Baselines A and B (``mode="regression"``, ``stack``), the pose-heatmap
  context of Table 4, and the mesh up-sampling (learned coarse -> middle, fixed middle -> full).
- ``dat``: :class:`~humandiff.hmdiff.dat.HMDiffOptions` (the paper's N = 25, DDIM 40, r = 0.05,
  gamma = 0.2, and the Table 5 ablation switches), the input-specific distribution U drawn from the
  xy and depth heatmaps, and Algorithm 1 over the shared diffusion core (``Guidance`` mode
  ``dat_mode``: "x0" by default, "xt" the paper's; DAT from ``min_alpha_bar``, 0 the paper's)
  with an explicit activation-strategy state and a per-step history of R_k and DAT on/off.
- ``losses``: the diffusion loss plus the vertex, joint, surface-normal and edge losses on the
  clean estimate, weights as :class:`~humandiff.hmdiff.losses.LossWeights`.

The coarse-mesh hierarchy and the coarse joint regressor (DAT's f) live with the body model,
:mod:`humandiff.body.hierarchy`.

The stages' logic: ``data`` (geometry, one image set's inputs and truth), ``settings`` (the
``hmdiff`` params section), ``training`` (``train_hmdiff``), ``run`` (``eval_hmdiff``: one table row),
``report`` (``report_hmdiff``; the paper's numbers in ``paper.yaml``). See docs/hmdiff.md.
"""
