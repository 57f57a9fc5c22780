"""Reusable training machinery: ``loop`` (a DDP-ready, resumable loop with EMA and a loss curve),
``ema`` (the averaged copy) and ``device`` (where a stage runs).

Import from the modules themselves: this file imports nothing, so a stage that only needs
``train.device`` does not depend on the loop (its code deps are its import closure).
"""
