"""Validation against real mixture training: rank statistics, noise ceiling, baselines (the reference
models are trained by runkit/references.py, which verification shares)."""
