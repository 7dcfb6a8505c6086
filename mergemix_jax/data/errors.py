"""The one exception type of the data package."""

from __future__ import annotations

from mergemix_jax.config import ConfigError


class DataError(ConfigError):
    """Input data that cannot be used; the message names the domain, file or line and the fix.

    A subclass of `ConfigError` so the CLI reports it as a clean one-line error.
    """
