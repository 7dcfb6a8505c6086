"""Test-session setup: 8 fake CPU devices, so sharding logic is exercised on one machine."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The data cache (token counts, domain index) of the tests stays out of the home folder.
os.environ.setdefault("MERGEMIX_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mergemix-test-data-cache-{os.getpid()}"))

import jax

jax.config.update("jax_threefry_partitionable", True)

# Many tests compile the same tiny train step; a per-session on-disk cache compiles each once.
_CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mergemix-test-jax-cache-{os.getuid()}")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# No test may depend on wall-clock timing: hypothesis's per-example deadline is off for every test
# (a loaded 2-core CI machine made a 200 ms deadline fail a pure config-parsing property).
from hypothesis import settings  # noqa: E402

settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")
