"""Calibrating the merged proxy from real training runs (multi-fidelity): per-domain monotone maps."""

from mergemix_jax.calibrate.isotonic import (
    CALIBRATION_FILE,
    Calibration,
    DomainMap,
    fit_calibration,
    load_calibration,
    save_calibration,
)

__all__ = ["CALIBRATION_FILE", "Calibration", "DomainMap", "fit_calibration", "load_calibration", "save_calibration"]
