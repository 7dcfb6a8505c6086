"""Write a found mixture: the mixture file (JSON with provenance), and exports for other trainers
(export/formats.py: MaxText, levanter, OLMo-core, torchtitan, grain, seqio, JSON).

Names are imported on first use, so `mergemix --help` (which lists the export formats) stays free
of jax.
"""

import importlib

_SOURCES = {
    "mixture_overrides": "grain_config",
    "read_grain_mixture": "grain_config",
    "write_grain_mixture": "grain_config",
    "MixtureFile": "mixture_file",
    "config_hash": "mixture_file",
    "mixture_from_result": "mixture_file",
    "read_mixture": "mixture_file",
    "write_mixture": "mixture_file",
    "to_seqio_mixture": "seqio_mixture",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
