"""mergemix-jax: find an LLM data mixture by merging per-domain experts.

The Python API (see docs/python-api.md): `load_config(path, overrides)`, `run(config_or_path,
overrides)` and `validate(config_or_path, overrides)`, the functions behind `mergemix run` and
`mergemix validate`. Importing the package is cheap: jax loads when one of them is called.
"""

# The subpackage mergemix_jax.validate is loaded first: loading it binds the package attribute
# `validate`, which the API function below then replaces for good (later submodule imports such as
# mergemix_jax.validate.run do not rebind it).
import mergemix_jax.validate  # noqa: F401  (a docstring only: cheap)
from mergemix_jax.api import load_config, run, validate

__version__ = "0.1.0"
__all__ = ["load_config", "run", "validate"]
