"""Validation against real mixture training: reference models, rank statistics, noise ceiling, baselines."""
