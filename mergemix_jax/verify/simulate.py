"""Verification's decision rule on simulated runs: how often it finds a better mixture, how often it
recommends a worse one, and what it costs in runs, for a given seed noise.

The stage's own functions run (`stage.settle_leader`, `decide.decide`) with a trainer that draws
each run's real utility as truth + seed effect + noise * N(0, 1) instead of training (the seed
effect, seed_sd * N(0, 1) per data seed, is shared by every mixture trained on that seed, as on the
demo), so the rule is measured exactly as `mergemix run` applies it. `benchmarks/verification_rule.py` prints the table the
docs/verification.md quotes; the tests check its direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from mergemix_jax.config.schema import PipelineConfig
from mergemix_jax.verify import stage
from mergemix_jax.verify.candidates import Candidate
from mergemix_jax.verify.decide import BASELINES, Decision, decide


@dataclass
class Outcome:
    """One simulated verification: the decision and the real runs it trained."""

    decision: Decision
    runs: int
    seeds: dict[str, int]  # real runs per mixture


def simulate_verification(truth: Mapping[str, float], noise: float, pipeline: PipelineConfig, rng: np.random.Generator, seed_sd: float = 0.0) -> Outcome:
    """Verify candidates whose true utilities are `truth` (names as in the stage: the baselines
    uniform and natural, any others): baselines on `pipeline.verify_seeds` seeds, the others on the
    screening seeds, then the stage's confirmation and sequential test."""
    seed_effects = seed_sd * rng.standard_normal(pipeline.verify_seeds + 2 * pipeline.verify_extra_seeds * pipeline.verify_extra_rounds + 1)

    def draw(seeds: list[int], name: str) -> list[float]:
        return list(truth[name] + seed_effects[seeds] + noise * rng.standard_normal(len(seeds)))

    def more_seeds(v: stage.Verified, seeds: list[int]) -> None:
        v.real_utility.extend(draw(seeds, v.candidate.name))

    screen = pipeline.verify_screen_seeds or pipeline.verify_seeds
    verified = []
    for name in truth:
        n = pipeline.verify_seeds if name in BASELINES else screen
        verified.append(stage.Verified(Candidate(name, np.zeros(1), [], {}), [], draw(list(range(n)), name), 0))
    stage.settle_leader(pipeline, 0, verified, more_seeds)
    real = [v.real_utility for v in verified]
    decision = decide(list(truth), real, [0.0] * len(real), pipeline.verify_confidence, min_seeds=pipeline.verify_seeds)
    return Outcome(decision, sum(map(len, real)), {name: len(r) for name, r in zip(truth, real, strict=True)})


def rule_table(truth: Mapping[str, float], noise: float, pipeline: PipelineConfig, rounds: list[int], draws: int, seed: int = 0, seed_sd: float = 0.0) -> list[dict]:
    """Per `verify_extra_rounds` value: the share of draws recommending a best mixture, a non-baseline, one
    truly worse than the best baseline; the mean
    regret against the best true utility, and the mean runs (draws each, one rng per row)."""
    best = max(truth.values())
    rows = []
    for r in rounds:
        rng = np.random.default_rng(seed)
        outcomes = [simulate_verification(truth, noise, replace(pipeline, verify_extra_rounds=r), rng, seed_sd) for _ in range(draws)]
        chosen = [o.decision.chosen for o in outcomes]
        rows.append(
            {
                "extra_rounds": r,
                "best_found": float(np.mean([truth[c] == best for c in chosen])),
                "candidate_chosen": float(np.mean([c not in BASELINES for c in chosen])),
                "worse_than_best_baseline": float(np.mean([truth[c] < max(truth[b] for b in BASELINES if b in truth) for c in chosen])),
                "regret": float(np.mean([best - truth[c] for c in chosen])),
                "runs": float(np.mean([o.runs for o in outcomes])),
            }
        )
    return rows
