"""Write a found mixture: the mixture file (JSON with provenance) and exporters to grain and seqio."""

from mergemix_jax.export.grain_config import mixture_overrides, read_grain_mixture, write_grain_mixture
from mergemix_jax.export.mixture_file import MixtureFile, config_hash, mixture_from_result, read_mixture, write_mixture
from mergemix_jax.export.seqio_mixture import to_seqio_mixture

__all__ = [
    "MixtureFile",
    "config_hash",
    "mixture_from_result",
    "mixture_overrides",
    "read_grain_mixture",
    "read_mixture",
    "to_seqio_mixture",
    "write_grain_mixture",
    "write_mixture",
]
