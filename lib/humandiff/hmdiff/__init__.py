"""HMDiff ("Distribution-Aligned Diffusion for Human Mesh Recovery"): mesh recovery by reverse
diffusion over mesh vertices, aligned to a pose-heatmap prior by the Distribution Alignment
Technique.

Home of the paper's package (issue 28): the vertex denoiser and the DAT reverse process over the
shared diffusion core. Not implemented yet.
"""
