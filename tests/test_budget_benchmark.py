"""The budget benchmark (benchmarks/budget.py, mergemix_jax/validate/budget.py): accounting, random
search's exact expectation, trajectory reading and intervals, on a fake runner (no training)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from mergemix_jax.validate import budget
from mergemix_jax.validate.budget import EVAL, SELECT, RealRuns, Strategies, TrajectoryPoint
from mergemix_jax.verify.stage import run_key

DOMAINS = ["a", "b", "c"]
TARGET = np.asarray([0.5, 0.3, 0.2])


class FakeRunner:
    """loss/mean = distance to TARGET + a per-seed offset + per-run noise; counts every call."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.trained: Counter = Counter()

    def run(self, weights_K, data_seed, suite):
        key = (run_key(weights_K), data_seed)
        if key not in {k[:2] for k in self.calls}:
            self.trained[key] += 1
        self.calls[(*key, suite)] += 1
        noise = np.random.default_rng([data_seed, int(run_key(weights_K), 16) % 2**31]).normal(0, 0.01)
        return {"loss/mean": float(np.sum((weights_K - TARGET) ** 2) + 0.001 * (data_seed % 7) + noise)}


def utility(metrics):
    return -metrics["loss/mean"]


def point(runs, w):
    return TrajectoryPoint(runs, f"m{runs}", dict(zip(DOMAINS, np.asarray(w, float).tolist(), strict=True)))


def simulate(seeds=(0, 1, 2), budgets=(3, 5, 7, 9), pool_size=6):
    """The benchmark's flow (validate/budget_runs.measure) on the fake runner."""
    runs = RealRuns(FakeRunner())
    pool = budget.dirichlet_pool(np.asarray([0.5, 0.25, 0.25]), pool_size, seed=11)
    uniform, natural = np.full(3, 1 / 3), np.asarray([0.5, 0.25, 0.25])
    select = budget.select_runs(runs, pool, select_seed=0)
    named = {"uniform": uniform, "natural": natural} | {f"pool{i}": w for i, w in enumerate(pool)}
    budget.evaluate(runs, named, [10_000, 10_001])
    # mergemix: trajectories per seed; seed 1 recommends a pool mixture and uniform, so picks repeat across seeds
    variants = {
        "shipped": {s: [point(4, pool[0] if s == 1 else TARGET)] for s in seeds},
        "acq": {s: [point(0, uniform), point(2, pool[1]), point(5, TARGET + np.asarray([0.05, -0.05, 0.0]))] for s in seeds},
    }
    picks = budget.pick_mixtures(variants, DOMAINS)
    budget.evaluate(runs, {f"pick {k}": w for k, w in picks.items()}, [10_000, 10_001])
    keys = [run_key(w) for w in named.values()] + list(picks)
    ev = budget.evaluation_table(runs, list(dict.fromkeys(keys)), [10_000, 10_001], utility)
    s = Strategies(DOMAINS, list(seeds), list(budgets), [run_key(w) for w in pool], np.asarray([utility(m) for m in select]), 0, {"uniform": run_key(uniform), "natural": run_key(natural)}, variants)
    return runs, budget.analyse(s, ev), pool, variants


def test_every_real_run_is_trained_once_and_only_selection_runs_are_charged():
    runs, result, pool, _ = simulate()
    fake = runs.runner
    assert set(fake.trained.values()) == {1}
    assert set(fake.calls.values()) == {1}
    select_runs = {(run_key(w), 0) for w in pool}
    assert {k for k, n in fake.trained.items() if k[1] == 0} == select_runs
    assert all(suite == SELECT for (_, seed, suite) in fake.calls if seed == 0)
    assert all(suite == EVAL for (_, seed, suite) in fake.calls if seed >= 10_000)
    # 2 baselines + 6 pool + picks (TARGET, its neighbour; pool0, pool1 and uniform are already evaluated), 2 seeds each
    assert sum(1 for (_, seed) in fake.trained if seed >= 10_000) == 2 * (2 + 6 + 2)
    for row in result["rows"]:
        for seed, charged in row["charged"].items():
            assert charged <= row["B"]
            if row["strategy"] == "random":
                assert charged == row["B"]
            if row["strategy"] in ("shipped", "acq"):
                assert charged == len(DOMAINS) + row["runs_beyond_experts"][seed]


def test_charge_refuses_a_run_counted_twice_or_over_budget():
    p = point(2, TARGET)
    assert budget.charge(budget.mergemix_runs("v/seed0", DOMAINS, p), 5) == 5
    with pytest.raises(AssertionError, match="twice"):
        budget.charge([("pool", "k", 0), ("pool", "k", 0)], 4)
    with pytest.raises(AssertionError, match="budget"):
        budget.charge(budget.mergemix_runs("v/seed0", DOMAINS, p), 4)


def test_random_search_expectation_equals_brute_force_enumeration():
    rng = np.random.default_rng(3)
    select = rng.normal(size=7)
    select[4] = select[2]  # a tie: the lower index wins, as argmax
    regret = rng.uniform(size=7)
    for b in range(1, 8):
        subsets = list(itertools.combinations(range(7), b))
        brute = np.mean([regret[budget.best_measured(select, np.asarray(c))] for c in subsets])
        assert budget.pick_probabilities(select, b) @ regret == pytest.approx(brute, abs=1e-12)
    assert budget.pick_probabilities(select, 7)[np.argmax(select)] == pytest.approx(1.0)


def test_seeded_subsets_grow_with_the_budget_and_differ_by_seed():
    small, large = budget.seeded_subset(12, 4, seed=3), budget.seeded_subset(12, 8, seed=3)
    assert list(large[:4]) == list(small) and len(set(large)) == 8
    assert list(budget.seeded_subset(12, 8, seed=4)) != list(large)


def test_trajectory_pick_per_budget():
    points = [point(0, [1, 0, 0]), point(2, [0, 1, 0]), point(2, [0, 0, 1]), point(6, TARGET)]
    k = 4
    assert budget.pick_at(points, k, 3) is None  # below the experts alone
    assert budget.pick_at(points, k, 4).weights["a"] == 1.0
    assert budget.pick_at(points, k, 5).weights["a"] == 1.0
    assert budget.pick_at(points, k, 6).weights["c"] == 1.0  # the last entry with K + r <= B
    assert budget.pick_at(points, k, 9).weights["c"] == 1.0
    assert budget.pick_at(points, k, 10).runs == 6


def test_read_trajectory_without_one_uses_the_final_choice_and_its_real_runs():
    cand = [
        {"name": "uniform", "weights": dict(zip(DOMAINS, [1 / 3] * 3, strict=True)), "real_utility": [0.1, 0.2]},
        {"name": "natural", "weights": dict(zip(DOMAINS, [1 / 3] * 3, strict=True)), "real_utility": [0.1, 0.2], "measured_as": "uniform"},
        {"name": "c1", "weights": dict(zip(DOMAINS, [0.6, 0.2, 0.2], strict=True)), "real_utility": [0.3, 0.3]},
        {"name": "c2", "weights": dict(zip(DOMAINS, [0.2, 0.6, 0.2], strict=True)), "real_utility": [0.0]},
    ]
    (only,) = budget.read_trajectory({"candidates": cand, "chosen": "c1"}, DOMAINS)
    assert only.runs == 5 and only.weights["a"] == 0.6
    traj = {"candidates": cand, "chosen": "c1", "trajectory": [{"runs": 0, "chosen": "p", "weights": cand[3]["weights"]}, {"runs": 3, "chosen": "c1", "weights": cand[2]["weights"]}]}
    assert [p.runs for p in budget.read_trajectory(traj, DOMAINS)] == [0, 3]
    traj["trajectory"].reverse()
    with pytest.raises(ValueError, match="decrease"):
        budget.read_trajectory(traj, DOMAINS)


def test_t_interval_and_paired_differences():
    x = [0.01, 0.03, -0.02, 0.05]
    mean, lo, hi = budget.t_interval(x)
    half = stats.t.ppf(0.95, 3) * np.std(x, ddof=1) / 2
    assert (mean, lo, hi) == pytest.approx((0.0175, 0.0175 - half, 0.0175 + half))
    assert not budget.resolved(lo, hi) and budget.resolved(0.001, 0.2) and budget.resolved(-0.3, -0.1)
    assert np.isnan(budget.t_interval([0.2])[1])
    _, result, _, _ = simulate()
    rows = {(r["strategy"], r["B"]): r for r in result["rows"]}
    acq, rand = rows[("acq", 5)], rows[("random", 5)]
    diffs = [acq["per_seed"][s] - rand["per_seed"][s] for s in (0, 1, 2)]
    noise, dof = result["noise"], result["noise_dof"]
    eval_half = stats.t.ppf(0.95, dof) * noise * np.sqrt(2 / 2)  # two evaluation seeds
    seeds_half = stats.t.ppf(0.95, 2) * np.std(diffs, ddof=1) / np.sqrt(3)
    assert acq["vs_random"]["mean"] == pytest.approx(np.mean(diffs))
    assert acq["vs_random"]["lo_seeds"] == pytest.approx(np.mean(diffs) - seeds_half)
    assert acq["vs_random"]["hi"] == pytest.approx(np.mean(diffs) + np.hypot(seeds_half, eval_half))
    assert "vs_random_2B" in acq and acq["vs_random_2B"]["n"] == 0  # 10 > the pool: no random search at 2B
    assert rows[("acq", 3)]["picks"][0] == run_key(np.full(3, 1 / 3)) and rows[("acq", 9)]["runs_beyond_experts"][0] == 5
    uni = rows[("uniform", 0)]  # the same mixture for every seed: the evaluation noise alone
    assert uni["hi"] - uni["mean"] == pytest.approx(eval_half) and uni["n"] == 3
    assert rand["expected"] >= 0 and min(r["mean"] for r in result["rows"]) >= 0
    assert ("shipped", 3) not in rows  # K + 4 = 7 > 3: no answer at B = 3


def _cli():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("budget_cli", Path(__file__).resolve().parents[1] / "benchmarks" / "budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bad_variant_and_eval_seeds_are_one_line_errors(tmp_path, capsys):
    import yaml
    from pipeline_helpers import tiny_pipeline_raw

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_pipeline_raw(tmp_path)))
    cli = _cli()
    out = tmp_path / "out"
    assert cli.main(["--config", str(config), "--seeds", "0", "--budgets", "4", "--variant", "bad=pipeline.verify_candidates", "--out", str(out)]) == 2
    assert "--variant bad" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "--seeds", "0", "--budgets", "4", "--eval-seeds", "1", "--out", str(out)]) == 2
    assert "--eval-seeds" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "--seeds", "0", "--budgets", "4", "--variant", "x=pipeline.no_such_key=1", "--out", str(out)]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


@pytest.mark.slow
def test_smoke_end_to_end_and_rerun_reuses_every_run(tmp_path):
    import json

    import yaml
    from pipeline_helpers import tiny_pipeline_raw

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_pipeline_raw(tmp_path)))
    out = tmp_path / "out"
    argv = ["--config", str(config), "--seeds", "0", "5", "--budgets", "3", "8", "12", "--smoke", "--out", str(out)]
    assert _cli().main(argv) == 0
    payload = json.loads((out / "budget.json").read_text())
    assert payload["seeds"] == [0] and len(payload["pool"]["keys"]) == 3
    strategies = {r["strategy"] for r in payload["rows"]}
    assert {"uniform", "natural", "random", "shipped"} <= strategies
    assert (out / "budget.md").read_text().count("| shipped |") >= 1 and (out / "budget.png").stat().st_size > 0
    runs = sorted(p.name for p in (out / "runs").glob("*/*"))
    assert len(runs) == len({(e["key"], e["data_seed"]) for e in payload["runs"]}) == len(payload["runs"])
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*/train_time.json")}
    assert _cli().main(argv) == 0  # resumed: every real run reused, none retrained
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*/train_time.json")} == stamps
    assert json.loads((out / "budget.json").read_text())["rows"] == payload["rows"]


def test_a_variant_run_on_another_base_or_scoring_the_evaluation_items_is_refused(tmp_path):
    import yaml
    from pipeline_helpers import tiny_pipeline_raw

    from mergemix_jax.config import ConfigError, config_from_dict
    from mergemix_jax.pipeline.stages import with_overrides
    from mergemix_jax.validate.budget_runs import check_disjoint, check_same_base
    from mergemix_jax.validate.run import scoring_config

    config = config_from_dict(tiny_pipeline_raw(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"pipeline": {"base_dir": str(tmp_path / "base")}}))
    check_same_base(config, run, str((tmp_path / "base").resolve()), "variant v seed 0")
    with pytest.raises(ConfigError, match="used base"):
        check_same_base(config, run, str(tmp_path / "other"), "variant v seed 0")
    scoring = scoring_config(config, run)  # the search scored 2 held-out sequences: evaluation starts after them
    check_disjoint(scoring, config, "variant v seed 0")
    with pytest.raises(ConfigError, match="eval"):
        check_disjoint(scoring, with_overrides(config, eval={"heldout_sequences": 3}), "variant v seed 0")
