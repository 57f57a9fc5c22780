"""The perception network: 2D keypoints with confidences, xy and depth pose heatmaps, spatial
feature tokens and an HMR-style SMPL regression (``model``), its training set view (``dataset``),
its training objective, run fingerprint and metrics (``train``), the run over the image sets
(``extract``), the stored layout of its outputs (``extraction``) that ScoreHMR and HMDiff read, and
its scores, report and figure (``report``).
"""
