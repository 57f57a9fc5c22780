"""Models that judge motion: the Guo-style evaluator for the metrics (``evaluator``) and the
TMR-style reward model used only as SoPo's training signal (``tmr``).
"""
