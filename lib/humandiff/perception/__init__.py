"""The perception network: 2D keypoints with confidences, xy and depth pose heatmaps, spatial
feature tokens and an HMR-style SMPL regression (``model``), its training set view (``dataset``)
and the stored layout of its outputs (``extraction``) that ScoreHMR and HMDiff read.
"""
