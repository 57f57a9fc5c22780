"""The MDM-style text-to-motion prior: the model (``mdm``) and its public sampler (``sampler``).

DNO edits with it, SoPo fine-tunes it, and ``evaluate_t2m`` scores it.
"""
