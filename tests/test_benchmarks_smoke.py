"""Every benchmark script runs in its `--smoke` mode (tiny sizes), so a config or API change that breaks
one fails here instead of rotting unseen. Each runs as its own process, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# script -> whether its smoke run is slow (trains or runs a pipeline: over ~20 s on 2 cores)
SMOKE = {
    "verification_rule.py": False,  # simulated runs only
    "ensemble_eval.py": True,
    "fault_sweep.py": True,  # runs tests/test_faults_kill.py (kills) as a subprocess
    "fidelity.py": True,  # a tiny pipeline and its validation
    "merge_eval.py": True,
    "task_signal.py": True,  # a tiny run's experts, then 4 tiny real runs
    "trust_region.py": True,  # a tiny run up to the probe, then real runs of the picks
}
# scripts without a smoke test yet (owned elsewhere); each entry is a debt, remove it with the smoke mode
PENDING = {"scale_plan.py", "train_throughput.py", "budget.py"}
HELPERS = {"smoke.py"}  # imported by the scripts, not run


def _param(script: str, slow: bool):
    return pytest.param(script, marks=[pytest.mark.slow] if slow else [], id=script.removesuffix(".py"))


@pytest.mark.parametrize("script", [_param(s, slow) for s, slow in SMOKE.items()])
def test_benchmark_smoke_mode_runs(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one device, as a user's laptop runs them
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{script} --smoke printed nothing"


def test_every_benchmark_script_has_a_smoke_test():
    scripts = {p.name for p in BENCHMARKS.glob("*.py")}
    missing = scripts - set(SMOKE) - PENDING - HELPERS
    assert not missing, f"benchmarks without a --smoke test: {sorted(missing)} (add a --smoke mode and list them in SMOKE)"
    for script in SMOKE:
        assert "--smoke" in (BENCHMARKS / script).read_text(), f"{script} has no --smoke flag"
