"""Kill-and-resume harness: run a `mergemix` command in a subprocess, SIGKILL it at seeded points, rerun.

A kill point is (progress lines to wait for, extra delay in ms): the harness waits until the job's
progress file (metrics.jsonl, a results CSV) holds that many lines, sleeps the delay, then sends
SIGKILL. The points are drawn from a seeded generator, so a failing sweep names a point that
can be replayed; where exactly the process dies inside the delay still depends on timing, which
is the point: resume must be right wherever it lands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
_CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mergemix-test-jax-cache-{os.getuid()}")


def job_env(devices: int = 2) -> dict[str, str]:
    """Environment of a job subprocess: `devices` fake CPU devices and the shared compilation cache."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_COMPILATION_CACHE_DIR=_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        JAX_THREEFRY_PARTITIONABLE="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def mergemix(args: list[str]) -> list[str]:
    """argv running the CLI in a fresh interpreter."""
    return [sys.executable, "-m", "mergemix_jax.cli.main", *args]


@dataclass(frozen=True)
class KillPoint:
    lines: int  # complete lines the progress file must hold first
    delay_ms: int  # then wait this long and send SIGKILL

    def __str__(self) -> str:
        return f"after line {self.lines} + {self.delay_ms} ms"


def kill_points(seed: int, count: int, max_lines: int, max_delay_ms: int = 400) -> list[KillPoint]:
    """`count` seeded kill points with increasing line targets in [0, max_lines)."""
    rng = np.random.default_rng(seed)
    lines = np.sort(rng.choice(max_lines, size=count, replace=count > max_lines))
    return [KillPoint(int(n), int(rng.integers(0, max_delay_ms))) for n in lines]


def complete_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_and_kill(argv: list[str], progress: Path, point: KillPoint, env: dict, timeout: float = 300) -> bool:
    """Start `argv`, SIGKILL it at `point`; True if it was killed, False if it finished first (checked)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and complete_lines(progress) < point.lines:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv} made no progress to {point} in {timeout} s")
            time.sleep(0.02)
        time.sleep(point.delay_ms / 1000)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        _check_finished(proc, argv)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


def run_to_end(argv: list[str], env: dict, timeout: float = 300) -> None:
    """Run `argv` to completion; raise with its stderr if it fails."""
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr.decode()[-3000:]}")


def _check_finished(proc: subprocess.Popen, argv: list[str]) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.read().decode()[-3000:]}")
