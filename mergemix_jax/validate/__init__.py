"""Validation against real mixture training: rank statistics, noise ceiling, baselines (the reference
models are trained by runs/references.py, which verification shares)."""
