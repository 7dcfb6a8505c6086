"""The budget benchmark's core (benchmarks/budget.py; docs/budget.md): would training B random
mixtures with the same real compute beat mergemix?

A real run is one training of one expert's size (the reference recipe: `pipeline.expert_steps` from
the base at a constant LR) on one mixture with one data seed. A strategy's budget B counts the real
runs it consumed to choose: random search its B pool runs, mergemix its K experts plus the
verification runs made before the recommendation it would give at B; merges, the probe and the
searches cost nothing; the evaluation runs that judge every final mixture are never part of B.

This module is pure numpy (no JAX, no training): the pool, random search (one seeded subset per
pipeline seed, and the exact expectation over every B-subset), reading a verification's trajectory,
the accounting of consumed runs, regrets and their 90% intervals. The real runs are behind the
`Runner` protocol (validate/budget_runs.py trains them), memoised per (mixture, data seed, suite) by
`RealRuns`, so every strategy and pipeline seed shares them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import stats

from mergemix_jax.verify.decide import fit_seed_blocks
from mergemix_jax.verify.stage import run_key

LEVEL = 0.9  # two-sided level of every interval
SELECT, EVAL = "select", "eval"  # the two suites: the search's own, and validate's out-of-sample one


class Runner(Protocol):
    """Trains (unless finished) and scores one real run: the metrics {name: value} of mixture
    `weights_K` trained with data seed `data_seed`, scored on suite `suite` (SELECT or EVAL)."""

    def run(self, weights_K: np.ndarray, data_seed: int, suite: str) -> dict[str, float]: ...


@dataclass
class RealRuns:
    """Every real run of the benchmark, asked for once per (mixture, data seed, suite): `log` lists
    each (run key, data seed) in the order first trained, with its purpose."""

    runner: Runner
    metrics: dict[tuple[str, int, str], dict[str, float]] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)

    def get(self, weights_K: np.ndarray, data_seed: int, suite: str, purpose: str) -> dict[str, float]:
        """The metrics of one run (trained and scored at most once per key)."""
        key = (run_key(weights_K), int(data_seed), suite)
        if key not in self.metrics:
            if not any(e["key"] == key[0] and e["data_seed"] == key[1] for e in self.log):
                self.log.append({"key": key[0], "data_seed": key[1], "weights": np.asarray(weights_K, np.float64).tolist(), "purpose": purpose})
            self.metrics[key] = self.runner.run(np.asarray(weights_K, np.float64), int(data_seed), suite)
        return self.metrics[key]


def select_runs(runs: RealRuns, pool_PxK: np.ndarray, select_seed: int) -> list[dict[str, float]]:
    """Random search's runs: each pool mixture once, on the selection data seed, scored on the search's suite."""
    return [runs.get(w, select_seed, SELECT, "random search selection") for w in pool_PxK]


def evaluate(runs: RealRuns, mixtures: Mapping[str, np.ndarray], eval_seeds: Sequence[int]) -> None:
    """Train and score every named mixture on every evaluation seed (out-of-sample suite)."""
    for name, w in mixtures.items():
        for seed in eval_seeds:
            runs.get(w, seed, EVAL, f"evaluation of {name}")


def pick_mixtures(variants: Mapping[str, Mapping[int, Sequence[TrajectoryPoint]]], domains: Sequence[str]) -> dict[str, np.ndarray]:
    """{run key: weights [K]} of every recommendation any variant made at any seed (each once)."""
    out = {}
    for by_seed in variants.values():
        for points in by_seed.values():
            for p in points:
                w = np.asarray([p.weights[d] for d in domains], np.float64)
                out[run_key(w)] = w
    return out


def evaluation_table(runs: RealRuns, keys: Sequence[str], eval_seeds: Sequence[int], utility) -> Evaluation:
    """The Evaluation of the mixtures `keys` (already evaluated) through `utility` (metrics -> float)."""
    return Evaluation({key: [float(utility(runs.metrics[(key, int(s), EVAL)])) for s in eval_seeds] for key in keys})


def dirichlet_pool(natural_K: np.ndarray, size: int, seed: int) -> np.ndarray:
    """[size, K] mixtures from Dirichlet(K * natural) (centred on the natural proportions; for K equal
    domains Dirichlet(1)), seeded by `seed` alone."""
    natural = np.asarray(natural_K, np.float64)
    alpha = np.maximum(len(natural) * natural, 1e-3)  # a domain with no tokens still gets a valid concentration
    return np.random.default_rng(seed).dirichlet(alpha, size=size)


def seeded_subset(pool_size: int, budget: int, seed: int) -> np.ndarray:
    """The pool indices random search trains at `budget` for pipeline seed `seed`: the first `budget`
    of a permutation seeded by `seed` (so a larger budget extends a smaller one)."""
    return np.random.default_rng(seed).permutation(pool_size)[:budget]


def best_measured(select_utility_P: np.ndarray, subset: np.ndarray) -> int:
    """The pool index random search keeps: the subset's best utility on its one selection run."""
    subset = np.asarray(subset)
    return int(subset[np.argmax(np.asarray(select_utility_P)[subset])])


def pick_probabilities(select_utility_P: np.ndarray, budget: int) -> np.ndarray:
    """[P] probability that pool mixture i is random search's pick when its `budget` mixtures are a
    uniformly random subset: with r_i mixtures measured better (ties: lower index first, as argmax),
    C(P - 1 - r_i, budget - 1) / C(P, budget) (exact; equals enumerating every subset)."""
    u = np.asarray(select_utility_P, np.float64)
    p = len(u)
    order = np.lexsort((np.arange(p), -u))  # best first
    out = np.zeros(p)
    for rank, i in enumerate(order):
        out[i] = math.comb(p - 1 - rank, budget - 1) / math.comb(p, budget)
    return out


@dataclass(frozen=True)
class TrajectoryPoint:
    """A recommendation a verification made after `runs` real runs beyond the experts."""

    runs: int
    chosen: str
    weights: dict[str, float]


def read_trajectory(verification: Mapping, domains: Sequence[str]) -> list[TrajectoryPoint]:
    """The recommendations of a verification.json: its "trajectory" list when it has one, else one
    point, the final choice after every real run it trained (candidates' real_utility entries, except
    those "measured_as" another candidate's runs)."""
    if "trajectory" in verification:
        points = [TrajectoryPoint(int(e["runs"]), str(e["chosen"]), {d: float(e["weights"][d]) for d in domains}) for e in verification["trajectory"]]
        if any(b.runs < a.runs for a, b in itertools.pairwise(points)):
            raise ValueError("verification trajectory: 'runs' must not decrease from one entry to the next")
        return points
    candidates = verification["candidates"]
    runs = sum(len(c["real_utility"]) for c in candidates if not c.get("measured_as"))
    chosen = next(c for c in candidates if c["name"] == verification["chosen"])
    return [TrajectoryPoint(runs, chosen["name"], {d: float(chosen["weights"][d]) for d in domains})]


def pick_at(points: Sequence[TrajectoryPoint], n_experts: int, budget: int) -> TrajectoryPoint | None:
    """The recommendation at budget B: the last point, in order, with K + runs <= B (later ones ignored);
    None when even the first needs more (the strategy has no answer at B)."""
    chosen = None
    for point in points:
        if n_experts + point.runs > budget:
            break
        chosen = point
    return chosen


def charge(runs: Sequence[tuple], budget: int) -> int:
    """The real runs a pick consumed, checked: none counted twice, no more than `budget`. Returns the count."""
    if len(set(runs)) != len(runs):
        twice = sorted({r for r in runs if runs.count(r) > 1})
        raise AssertionError(f"real runs counted twice: {twice}")
    if len(runs) > budget:
        raise AssertionError(f"{len(runs)} real runs charged to a budget of {budget}")
    return len(runs)


def random_runs(pool_keys: Sequence[str], subset: np.ndarray, select_seed: int) -> list[tuple]:
    """What random search consumed: one selection run per pool mixture of its subset."""
    return [("pool", pool_keys[i], select_seed) for i in subset]


def mergemix_runs(run_name: str, domains: Sequence[str], point: TrajectoryPoint) -> list[tuple]:
    """What mergemix consumed for `point`: the K experts of its run and its first `point.runs`
    verification runs (named by order: the trajectory counts them, it does not list them)."""
    return [("expert", run_name, d) for d in domains] + [("verify", run_name, j) for j in range(point.runs)]


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi): the Student-t interval of the mean at `level` (nan bounds below two values)."""
    x = np.asarray(values, np.float64)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def resolved(lo: float, hi: float) -> bool:
    """True when an interval excludes 0."""
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))


@dataclass
class Evaluation:
    """Every evaluated mixture's utilities on the E evaluation seeds: `utility[key]` = [E]."""

    utility: dict[str, list[float]]

    def mean(self, key: str) -> float:
        return float(np.mean(self.utility[key]))

    @property
    def oracle(self) -> tuple[str, float]:
        """The best evaluated mixture by evaluation mean: (key, mean)."""
        key = max(self.utility, key=self.mean)
        return key, self.mean(key)

    def regret(self, key: str) -> float:
        """Oracle's evaluation mean minus this mixture's (>= 0; higher utility is better)."""
        return self.oracle[1] - self.mean(key)

    def noise(self) -> tuple[float | None, int]:
        """One run's noise: the residual sd of utility = mixture + evaluation seed (verify.decide), with its dof."""
        blocks = fit_seed_blocks(list(self.utility.values()))
        return blocks.noise, blocks.dof


@dataclass
class Strategies:
    """What the analysis needs (all keys are verify.stage.run_key of the mixture).
    `select_utility`: [P] the pool mixtures' utilities on their selection run; `variants`:
    {variant: {seed: trajectory}} (a seed without a finished run is absent)."""

    domains: list[str]
    seeds: list[int]
    budgets: list[int]
    pool_keys: list[str]
    select_utility: np.ndarray
    select_seed: int
    baselines: dict[str, str]  # uniform / natural -> key
    variants: dict[str, dict[int, list[TrajectoryPoint]]]


def analyse(s: Strategies, ev: Evaluation) -> dict:
    """Regret rows per (strategy, B): per-seed regrets, their mean with a 90% t-interval, the runs
    charged, and for mergemix the paired difference to random search (same seed) at B and at 2B."""
    k, rows = len(s.domains), []
    oracle_key, oracle_mean = ev.oracle
    noise, dof = ev.noise()
    eval_half = noise_half(noise, dof, len(next(iter(ev.utility.values()))))
    for name, key in s.baselines.items():
        rows.append({"strategy": name, "B": 0, "per_seed": {seed: ev.regret(key) for seed in s.seeds}, "picks": {seed: key for seed in s.seeds}, "charged": {seed: 0 for seed in s.seeds}})
    pool_regret = np.asarray([ev.regret(key) for key in s.pool_keys])
    random_by_b: dict[int, dict[int, float]] = {}
    for b in (b for b in s.budgets if b <= len(s.pool_keys)):
        row = {"strategy": "random", "B": b, "per_seed": {}, "picks": {}, "charged": {}}
        for seed in s.seeds:
            subset = seeded_subset(len(s.pool_keys), b, seed)
            i = best_measured(s.select_utility, subset)
            row["per_seed"][seed], row["picks"][seed] = float(pool_regret[i]), s.pool_keys[i]
            row["charged"][seed] = charge(random_runs(s.pool_keys, subset, s.select_seed), b)
        row["expected"] = float(pick_probabilities(s.select_utility, b) @ pool_regret)
        random_by_b[b] = row["per_seed"]
        rows.append(row)
    for variant, by_seed in s.variants.items():
        for b in s.budgets:
            row = {"strategy": variant, "B": b, "per_seed": {}, "picks": {}, "charged": {}, "runs_beyond_experts": {}}
            for seed, points in by_seed.items():
                point = pick_at(points, k, b)
                if point is None:
                    continue
                key = run_key(np.asarray([point.weights[d] for d in s.domains]))
                row["per_seed"][seed], row["picks"][seed], row["runs_beyond_experts"][seed] = ev.regret(key), key, point.runs
                row["charged"][seed] = charge(mergemix_runs(f"{variant}/seed{seed}", s.domains, point), b)
            if row["per_seed"]:
                for label, other in (("vs_random", b), ("vs_random_2B", 2 * b)):
                    paired = [row["per_seed"][seed] - random_by_b[other][seed] for seed in row["per_seed"] if other in random_by_b]
                    row[label] = interval(paired, eval_half)
                rows.append(row)
    for row in rows:
        row.update(interval(list(row["per_seed"].values()), eval_half))
    return {"rows": rows, "oracle": {"key": oracle_key, "eval_mean": oracle_mean}, "noise": noise, "noise_dof": dof}


def noise_half(noise: float | None, dof: int, n_eval: int, level: float = LEVEL) -> float:
    """Half-width of the evaluation noise of a difference of two n_eval-run means,
    t(level, dof) x noise x sqrt(2 / n_eval) (nan without a noise estimate)."""
    if noise is None or dof < 1:
        return float("nan")
    return float(stats.t.ppf(0.5 + level / 2, dof) * noise * np.sqrt(2.0 / n_eval))


def interval(values: list[float], eval_half: float) -> dict:
    """Mean of per-seed values with two intervals: `lo_seeds`/`hi_seeds`, the Student-t interval over
    pipeline seeds, and `lo`/`hi`, its half-width combined in quadrature with the evaluation noise's
    `eval_half`. The seeds' spread holds the evaluation noise only where their picks differ; where
    they coincide (uniform, random search at B = P) it holds none, so the combined interval, which
    decides `resolved`, is the safe one (a little wide where picks differ)."""
    mean, lo, hi = t_interval(values)
    seeds_half = (hi - mean) if np.isfinite(hi) else (0.0 if len(values) == 1 else float("nan"))
    half = float(np.hypot(seeds_half, eval_half))
    return {"n": len(values), "mean": mean, "lo_seeds": lo, "hi_seeds": hi, "lo": mean - half, "hi": mean + half, "resolved": resolved(mean - half, mean + half)}


def _cell(d: dict) -> str:
    if not d or not d.get("n"):
        return "–"
    if not np.isfinite(d["lo"]):
        return f"{d['mean']:+.4f} (n={d['n']})"
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]{' **resolved**' if d['resolved'] else ''}"


def format_table(result: dict, unit: str) -> str:
    """The markdown table of `analyse`'s rows (see docs/budget.md, "Reading the table")."""
    noise = result["noise"]
    lines = [
        f"Regret = the oracle's evaluation mean minus the pick's, in {unit} (0 = the best evaluated mixture; lower is better). "
        f"One run's noise (residual sd of the evaluation runs, mixture + seed fit): {'–' if noise is None else f'{noise:.4f}'} ({result['noise_dof']} dof). "
        "Intervals: 90%, Student-t over pipeline seeds combined in quadrature with the evaluation noise (t x noise x sqrt(2/E)); paired = mergemix minus random search on the same seed (negative: mergemix better); "
        "**resolved** = the interval excludes 0.",
        "",
        "| strategy | B (real runs) | seeds | mean regret [90%] | E[random search] (all subsets) | paired vs random at B [90%] | paired vs random at 2B [90%] |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        expected = f"{row['expected']:+.4f}" if "expected" in row else ""
        lines.append(f"| {row['strategy']} | {row['B']} | {row['n']} | {_cell(row)} | {expected} | {_cell(row.get('vs_random', {}))} | {_cell(row.get('vs_random_2B', {}))} |")
    return "\n".join(lines)
