"""Larger kill-and-resume sweep than CI runs: the fault-injection kill tests over several seeds.

    python benchmarks/fault_sweep.py --seeds 5 --kills 6
    python benchmarks/fault_sweep.py --smoke    # one seed, one kill point per job type: checks it runs

Each seed draws new kill points (tests/fault_injection.py `kill_points`); every run checks that the
resumed training params equal the uninterrupted ones bit for bit and that the batched-evaluation
results file holds identical rows. Prints one line per seed and the total of kill points tried.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from smoke import add_smoke_flag, apply_smoke  # benchmarks/smoke.py

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (kill-point draws)")
    parser.add_argument("--kills", type=int, default=6, help="kill points per job type and seed")
    add_smoke_flag(parser)
    args = apply_smoke(parser.parse_args(), seeds=1, kills=1)
    failures, tried = 0, 0
    for seed in range(args.seeds):
        env = {**os.environ, "MERGEMIX_FAULT_SEED": str(seed), "MERGEMIX_FAULT_KILLS": str(args.kills)}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_faults_kill.py"],
            cwd=REPO, env=env, capture_output=True, text=True,
        )
        tried += 2 * args.kills  # training + batched evaluation
        status = "ok" if done.returncode == 0 else "FAILED"
        failures += done.returncode != 0
        print(f"seed {seed}: {2 * args.kills} kill points, {status} in {time.perf_counter() - start:.0f} s")
        if done.returncode:
            print(done.stdout[-4000:])
    print(f"{tried} kill points over {args.seeds} seeds; {failures} seed(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
