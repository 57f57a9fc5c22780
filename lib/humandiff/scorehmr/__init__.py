"""ScoreHMR ("Score-Guided Diffusion for 3D Human Recovery"): score-guided refinement of a regressed SMPL pose.

Home of the paper's package (issue 26): the pose denoiser, the guidance losses and the
refinement loop over the shared diffusion core. Not implemented yet.
"""
