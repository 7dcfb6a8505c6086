"""Verification's decision rule on simulated runs (no training): power, harm and cost per budget.

    python benchmarks/verification_rule.py [--noise 0.018] [--seed-sd 0.03] [--draws 2000] [--rounds 0 1 2 3]
    python benchmarks/verification_rule.py --smoke     # 20 draws, rounds 0 and 1: checks it runs

Runs the stage's own confirmation, sequential test and decision (mergemix_jax/verify/simulate.py)
on the demo's verification shape (uniform and natural on 2 seeds, three candidates screened on 1).
A run's utility is truth + seed effect (shared by every mixture on that data seed, sd `--seed-sd`)
+ its own noise (sd `--noise`); the defaults are the demo's measured split (docs/results.md). Three truths, in
units of one run's total sd: one candidate better by 1 sd, all equal, all candidates worse by 1 sd;
each once with the demo's split and once with the same total sd as per-run noise only. For each
`pipeline.verify_extra_rounds` it prints how often the best mixture is recommended, how often a
candidate (not a baseline) is, how often one truly worse than the best baseline is, the mean regret
(in total sds) and the mean real runs.
"""

from __future__ import annotations

import argparse

import numpy as np
from smoke import add_smoke_flag, apply_smoke  # benchmarks/smoke.py

from mergemix_jax.config.schema import PipelineConfig
from mergemix_jax.verify.simulate import rule_table

TRUTHS = {
    "one candidate better by 1 sd": {"uniform": 0.0, "natural": 0.0, "c1": 1.0, "c2": 0.0, "c3": -0.67},
    "all equal": {"uniform": 0.0, "natural": 0.0, "c1": 0.0, "c2": 0.0, "c3": 0.0},
    "candidates worse by 1 sd": {"uniform": 0.0, "natural": 0.0, "c1": -1.0, "c2": -1.0, "c3": -1.0},
}


def main() -> None:
    """Print the table (see module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.018, help="a run's own noise sd")
    parser.add_argument("--seed-sd", type=float, default=0.03, help="sd of the data seed's effect, shared by every mixture")
    parser.add_argument("--draws", type=int, default=2000, help="simulated verifications per row")
    parser.add_argument("--rounds", type=int, nargs="+", default=[0, 1, 2, 3], help="verify_extra_rounds values")
    add_smoke_flag(parser)
    args = apply_smoke(parser.parse_args(), draws=20, rounds=[0, 1])
    total = float(np.hypot(args.noise, args.seed_sd))
    pipeline = PipelineConfig(verify_seeds=2, verify_screen_seeds=1, verify_extra_seeds=2, verify_confidence=0.9)
    print(f"one run's sd {total:.4f}; {args.draws} draws per row; confidence {pipeline.verify_confidence}")
    print(f"{'noise':<22} {'truth':<30} {'rounds':>6} {'best found':>10} {'a candidate':>11} {'worse picked':>12} {'regret (sd)':>11} {'runs':>6}")
    for split, (noise, seed_sd) in {f"seed {args.seed_sd} + own {args.noise}": (args.noise, args.seed_sd), f"own {total:.4f} only": (total, 0.0)}.items():
        for label, truth_sd in TRUTHS.items():
            truth = {k: v * total for k, v in truth_sd.items()}
            for row in rule_table(truth, noise, pipeline, args.rounds, args.draws, seed_sd=seed_sd):
                print(f"{split:<22} {label:<30} {row['extra_rounds']:>6} {row['best_found']:>10.3f} {row['candidate_chosen']:>11.3f} {row['worse_than_best_baseline']:>12.3f} {row['regret'] / total:>11.3f} {row['runs']:>6.1f}")


if __name__ == "__main__":
    main()
