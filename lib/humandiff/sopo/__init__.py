"""SoPo ("Text-to-Motion Generation Using Semi-Online Preference Optimization"): semi-online preference optimisation of the text-to-motion prior.

Home of the paper's package (issue 27): Algorithm 1, its loss variants and the DPO baselines.
Not implemented yet.
"""
