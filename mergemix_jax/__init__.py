"""mergemix-jax: find an LLM data mixture by merging per-domain experts."""

__version__ = "0.1.0"
