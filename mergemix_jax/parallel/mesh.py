"""Device meshes from config, and multi-host start-up."""

from __future__ import annotations

import logging
import os

import jax

from mergemix_jax.config import ConfigError, MeshConfig
from mergemix_jax.parallel.partitioning import MESH_AXES

log = logging.getLogger(__name__)

def maybe_initialize_distributed() -> None:
    """Call `jax.distributed.initialize()` when the environment describes a multi-host job.

    Explicit launches set JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES and JAX_PROCESS_ID);
    `tpu_scripts/launch.sh` sets MERGEMIX_DISTRIBUTED=1 on every worker of a slice (whose ssh
    sessions do not reliably carry TPU_WORKER_HOSTNAMES), and jax discovers the slice itself.
    A single machine does nothing. Processes other than 0 then log warnings and errors only; a
    multi-process CPU job compiles without the persistent compilation cache.
    """
    if jax.distributed.is_initialized():
        return
    coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if coordinator:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif os.environ.get("MERGEMIX_DISTRIBUTED") == "1" or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()  # a multi-worker TPU slice describes itself
    else:
        return
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
    if jax.default_backend() == "cpu":
        # only process 0 writes the persistent compilation cache, so on a rerun it loads programs the
        # others compile, and CPU collectives (gloo) give up on a process that arrives 30 s late
        jax.config.update("jax_enable_compilation_cache", False)
    if jax.process_index() != 0:  # the other processes' INFO lines would repeat process 0's
        root = logging.getLogger()
        root.setLevel(max(root.getEffectiveLevel(), logging.WARNING))


def resolve_mesh_shape(mesh: MeshConfig, device_count: int, source: str = "config") -> tuple[int, int, int]:
    """Resolve a -1 axis and check the product equals the device count."""
    sizes = [mesh.data, mesh.fsdp, mesh.tensor]
    fixed = 1
    for size in sizes:
        if size != -1:
            fixed *= size
    if -1 in sizes:
        if device_count % fixed:
            raise ConfigError(
                f"{source}: mesh data={mesh.data} fsdp={mesh.fsdp} tensor={mesh.tensor} does not divide "
                f"the {device_count} devices; choose sizes whose product divides {device_count}"
            )
        sizes[sizes.index(-1)] = device_count // fixed
    elif fixed != device_count:
        raise ConfigError(
            f"{source}: mesh data*fsdp*tensor = {fixed} but there are {device_count} devices; "
            f"set one of mesh.data/fsdp/tensor to -1 or make the product {device_count}"
        )
    return tuple(sizes)  # type: ignore[return-value]


def build_mesh(mesh: MeshConfig, source: str = "config", devices=None) -> jax.sharding.Mesh:
    """A `(data, fsdp, tensor)` mesh with Auto axis types, so GSPMD propagates shardings."""
    devices = devices if devices is not None else jax.devices()
    shape = resolve_mesh_shape(mesh, len(devices), source)
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def configured_mesh(mesh: MeshConfig, source: str = "config") -> jax.sharding.Mesh | None:
    """The configured mesh over every device of every process (jax.distributed is started first when
    the environment describes a multi-host job), or None on a single device."""
    maybe_initialize_distributed()
    return build_mesh(mesh, source) if jax.device_count() > 1 else None
