"""Verification's decision on synthetic problems with known noise, and the diverse candidate pick."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.verify import decide, fit_seed_blocks, next_to_confirm, select_diverse, tv_distance
from mergemix_jax.verify.candidates import pool_from_tables


def _simulate(true_utilities, sigma, seeds, rng):
    return [list(u + sigma * rng.standard_normal(seeds)) for u in true_utilities]


def test_picks_the_best_real_candidate_when_it_clearly_wins():
    rng = np.random.default_rng(0)
    names = ["uniform", "natural", "c1", "c2", "c3"]
    truth = [-2.00, -2.02, -1.90, -2.10, -1.95]  # c1 best by 0.1 nats, noise 0.005
    wins = 0
    for _ in range(50):
        d = decide(names, _simulate(truth, 0.005, 2, rng), proxy_utilities=[0, 0, -1.0, -0.5, -2.0])
        wins += d.chosen == "c1"
    assert wins == 50
    assert d.verdict == "other_candidate" and d.proxy_pick == "c2"


def test_keeps_the_baseline_when_the_win_is_within_noise():
    rng = np.random.default_rng(1)
    names = ["uniform", "natural", "c1"]
    truth = [-2.000, -2.050, -2.000]  # c1 no better than uniform
    kept = sum(decide(names, _simulate(truth, 0.01, 2, rng), [0, 0, 1]).chosen == "uniform" for _ in range(200))
    assert kept >= 170  # a 90% one-sided test: ~10% false wins at most, and they are within noise


def test_proxy_pick_that_loses_is_reported():
    d = decide(["uniform", "natural", "c1"], [[-2.0, -2.01], [-2.1, -2.1], [-2.3, -2.31]], [0.0, 0.0, 5.0])
    assert d.chosen == "uniform" and d.verdict == "baseline_kept" and d.proxy_pick == "c1"
    assert "c1" in d.message and "worse than uniform" in d.message


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(-5, -1), min_size=2, max_size=2), min_size=3, max_size=7))
def test_never_recommends_a_mixture_that_trained_worse_than_a_baseline(real):
    names = ["uniform", "natural", *[f"c{i}" for i in range(len(real) - 2)]]
    d = decide(names, real, proxy_utilities=list(range(len(real))))
    means = {n: np.mean(r) for n, r in zip(names, real, strict=True)}
    assert means[d.chosen] >= max(means["uniform"], means["natural"])


def test_seed_blocks_remove_a_shared_seed_effect_even_with_unequal_seeds():
    effects, seed = np.array([0.80, 0.83, 0.86]), np.array([0.0, -0.05, 0.02, -0.09, 0.01])
    runs = [list(effects[0] + seed[:2]), list(effects[1] + seed), list(effects[2] + seed[:1])]
    blocks = fit_seed_blocks(runs)
    np.testing.assert_allclose(np.diff(blocks.means), np.diff(effects), atol=1e-12)  # raw means would differ by the seeds' effects
    assert blocks.noise == pytest.approx(0.0, abs=1e-9) and blocks.dof == 8 - 3 - 4
    assert fit_seed_blocks([[1.0], [2.0]]).noise is None  # one seed each: no degree of freedom
    np.testing.assert_allclose(fit_seed_blocks([[0.0, 2.0], [1.0, 1.0]]).noise, 1.0)  # residuals +-0.5 x 4 on 1 dof
    # balanced seeds: a contrast's sd is sqrt(1/n_a + 1/n_b) noise units; the same runs listed twice count once
    balanced = fit_seed_blocks([[0.1, 0.3, 0.2], [0.2, 0.5, 0.1], [0.2, 0.5, 0.1]])
    assert balanced.contrast_sd(0, 1) == pytest.approx(np.sqrt(2 / 3)) and balanced.dof == 2


def test_a_shared_seed_effect_does_not_hide_a_consistent_win():
    # c1 beats uniform by 0.03 on every seed, but seeds differ by up to 0.1: the within-mixture spread
    # (0.05) would swamp the lead, the paired seeds do not
    seed = [0.0, -0.1, 0.05, -0.06]
    real = [[0.80 + x for x in seed], [0.78 + x for x in seed], [0.83 + x + e for x, e in zip(seed, [0.004, -0.003, 0.002, -0.004], strict=True)]]
    d = decide(["uniform", "natural", "c1"], real, [0, 0, 1])
    assert d.chosen == "c1" and d.means["c1"] - d.means["uniform"] == pytest.approx(0.02975)
    assert d.noise < 0.01 < np.std(real[0], ddof=1)


def test_select_diverse_skips_near_duplicates_and_avoided_rows():
    w = np.array([[0.5, 0.5, 0.0], [0.52, 0.48, 0.0], [0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    assert select_diverse(w, scores, 3, 0.1) == [0, 2, 3]
    assert select_diverse(w, scores, 3, 0.1, avoid_MxK=np.array([[0.5, 0.5, 0.0]])) == [2, 3]
    assert tv_distance(w[0], w[2]) == 0.5


def test_pool_merges_sources_of_the_same_mixture():
    a = np.array([[0.25, 0.75], [0.5, 0.5]])
    pool = pool_from_tables([("cmaes", a[:1], {"loss/mean": np.array([1.0])}), ("probe", a, {"loss/mean": np.array([9.0, 2.0])})])
    assert len(pool) == 2 and pool[0].sources == ["cmaes", "probe"] and pool[0].proxy_metrics["loss/mean"] == 1.0


def test_more_seeds_shrink_the_margin():
    from mergemix_jax.verify.decide import decision_margin

    assert decision_margin(0.02, 4, 0.9) < decision_margin(0.02, 2, 0.9)
    np.testing.assert_allclose(decision_margin(0.02, 4, 0.9, 2), decision_margin(0.02, 2, 0.9, 4))
    # a lead of 0.02 with noise 0.02 is inside the margin at 2 seeds each and outside at 8
    names = ["uniform", "natural", "c1"]
    two = decide(names, [[-2.0, -2.0], [-2.05, -2.05], [-1.98, -1.98]], [0, 0, 1])
    assert two.margin == pytest.approx(0.0, abs=1e-9) and two.chosen == "c1"  # no spread at all: any lead counts
    noisy = [[-2.02, -1.98], [-2.05, -2.05], [-1.96, -2.0]]  # c1 ahead by 0.06, then behind by 0.02
    assert decide(names, noisy, [0, 0, 1]).chosen == "uniform"
    more = [[-2.02, -1.98, -2.0, -2.0, -2.01, -1.99, -2.0, -2.0], [-2.05, -2.05], [-1.96, -2.0, -1.97, -1.99, -1.98, -1.98, -1.97, -1.99]]
    assert decide(names, more, [0, 0, 1]).chosen == "c1"


def test_a_screened_candidate_is_never_recommended_on_fewer_seeds():
    # c1's single seed looks far better than uniform, but screening has not confirmed it
    real = [[-2.0, -2.01], [-2.05, -2.04], [-1.5]]
    d = decide(["uniform", "natural", "c1"], real, [0, 0, 1], min_seeds=2)
    assert d.chosen == "uniform" and d.verdict == "baseline_kept"
    assert next_to_confirm(["uniform", "natural", "c1"], real, 2) == "c1"
    assert next_to_confirm(["uniform", "natural", "c1"], [[-2.0, -2.01], [-2.05, -2.04], [-2.2]], 2) is None  # behind: no more seeds needed


def _screen_and_decide(truth, sigma, full, rng):
    """Baselines on `full` seeds, candidates on 1, leaders confirmed; (decision, real runs trained)."""
    names = ["uniform", "natural", *[f"c{i}" for i in range(1, len(truth) - 1)]]
    real = [list(t + sigma * rng.standard_normal(full if n in ("uniform", "natural") else 1)) for n, t in zip(names, truth, strict=True)]
    while (name := next_to_confirm(names, real, full)) is not None:
        i = names.index(name)
        real[i] += list(truth[i] + sigma * rng.standard_normal(full - len(real[i])))
    return decide(names, real, [0.0] * len(names), min_seeds=full), sum(map(len, real)), real, names


def test_screening_finds_the_clear_winner_with_fewer_runs():
    rng = np.random.default_rng(3)
    truth = [-2.00, -2.02, -1.90, -2.10, -1.95, -2.30]  # c1 wins by 0.05 over c3 and 0.1 over uniform; noise 0.01
    runs = []
    for _ in range(100):
        d, n, real, names = _screen_and_decide(truth, 0.01, 2, rng)
        assert d.chosen == "c1"
        assert all(len(r) == 2 for nm, r in zip(names, real, strict=True) if nm == d.chosen)
        runs.append(n)
    assert np.mean(runs) < 2 * len(truth)  # every candidate on 2 seeds would be 12 runs
    assert max(runs) <= 2 * len(truth)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-3, -1), min_size=3, max_size=7), st.integers(0, 2**31 - 1))
def test_screening_never_recommends_worse_than_a_baseline_or_unconfirmed(truth, seed):
    d, _, real, names = _screen_and_decide(truth, 0.05, 2, np.random.default_rng(seed))
    means = {n: np.mean(r) for n, r in zip(names, real, strict=True)}
    assert means[d.chosen] >= max(means["uniform"], means["natural"])
    assert len(real[names.index(d.chosen)]) == 2


def test_verification_stage_confirms_a_screened_leader_on_its_missing_seeds():
    from mergemix_jax.verify import Candidate, stage

    truth = {"uniform": 1.0, "natural": 0.9, "c1": 1.2, "c2": 0.5}
    trained = []

    def more_seeds(v, seeds):
        trained.append((v.candidate.name, list(seeds)))
        v.real_utility.extend(truth[v.candidate.name] - 0.01 * s for s in seeds)

    verified = [stage.Verified(Candidate(n, np.full(3, 1 / 3), [], {}), [], [truth[n]] * k, 0) for n, k in [("uniform", 2), ("natural", 2), ("c1", 1), ("c2", 1)]]
    stage.confirm_leaders(_pipeline(), 7, verified, more_seeds)
    assert trained == [("c1", [8])]  # its missing second seed (data seeds 7, 8); c2 trails the baselines: never topped up
    assert [len(v.real_utility) for v in verified] == [2, 2, 2, 1]


def test_the_margin_uses_the_t_quantile_of_the_noise():
    from scipy import stats

    from mergemix_jax.verify.decide import decision_margin

    np.testing.assert_allclose(decision_margin(0.02, 2, 0.9, dof=3), stats.t.ppf(0.9, 3) * 0.02)
    assert decision_margin(0.02, 2, 0.9, dof=3) > decision_margin(0.02, 2, 0.9, dof=30) > decision_margin(0.02, 2, 0.9)
    # a lead that clears the normal margin but not the t margin on 2 degrees of freedom is not a win
    real = [[-2.0, -2.02], [-2.1, -2.1], [-2.0, -2.0], [-3.0, -3.0]]  # lead 0.01; noise 0.0071 on 3 dof
    d = decide(["uniform", "natural", "c1", "c2"], real, [0, 0, 1, 0])
    assert d.noise_dof == 3 and d.chosen == "uniform"
    np.testing.assert_allclose(d.margin, stats.t.ppf(0.9, 3) * d.noise)
    assert d.means["c1"] - d.means["uniform"] > stats.norm.ppf(0.9) * d.noise  # the normal margin would have sold it


def _pipeline(**kw):
    from mergemix_jax.config.schema import PipelineConfig

    return PipelineConfig(verify_seeds=2, verify_screen_seeds=1, verify_extra_seeds=2, **kw)


def test_the_sequential_test_stops_within_its_budget_and_only_for_a_leader():
    from mergemix_jax.verify.simulate import simulate_verification

    rng = np.random.default_rng(0)
    truth = {"uniform": 0.0, "natural": 0.0, "c1": 0.02, "c2": -0.5}
    for rounds in (0, 1, 3):
        for _ in range(30):
            seeds = simulate_verification(truth, 0.03, _pipeline(verify_extra_rounds=rounds), rng).seeds
            assert max(seeds.values()) <= 2 + 2 * rounds and seeds["c2"] == 1  # c2, far behind, is never confirmed
    assert simulate_verification({"uniform": 0.0, "natural": -0.1, "c1": -0.3}, 0.01, _pipeline(verify_extra_rounds=3), rng).runs == 5  # a baseline leads: nothing to settle


def test_more_rounds_find_a_real_winner_more_often_and_rarely_pick_a_worse_one():
    """Simulated verification (noise 0.03 per run, candidates screened on 1 seed): a candidate better
    than the baselines by one noise sd is recommended more often with 2 extra rounds than with none,
    and candidates worse by one sd are almost never recommended."""
    from mergemix_jax.verify.simulate import rule_table

    better = {"uniform": 0.0, "natural": 0.0, "c1": 0.03, "c2": 0.0, "c3": -0.02}
    worse = {"uniform": 0.0, "natural": 0.0, "c1": -0.03, "c2": -0.03, "c3": -0.03}
    found = rule_table(better, 0.03, _pipeline(), [0, 2], draws=300)
    assert found[1]["best_found"] > found[0]["best_found"] + 0.1 and found[1]["regret"] < found[0]["regret"]
    assert found[1]["runs"] > found[0]["runs"]
    assert all(row["worse_than_best_baseline"] < 0.05 for row in rule_table(worse, 0.03, _pipeline(), [0, 2], draws=300))


def test_a_sequential_round_tops_up_every_baseline_the_leader_has_not_cleared():
    from mergemix_jax.verify import Candidate, stage

    trained = []

    def more_seeds(v, seeds):
        trained.append((v.candidate.name, list(seeds)))
        v.real_utility.extend([float(np.mean(v.real_utility))] * len(seeds))

    def verified(real):
        return [stage.Verified(Candidate(n, np.full(3, 1 / 3), [], {}), [], list(r), 0) for n, r in real.items()]

    # c1 leads natural (4 seeds) and uniform (2 seeds) by less than the margin: all three get 2 more seeds
    close = {"uniform": [0.80, 0.84], "natural": [0.80, 0.84, 0.79, 0.85], "c1": [0.86, 0.82, 0.85, 0.81], "c2": [0.5]}
    assert stage.resolve_leader(_pipeline(), 0, verified(close), more_seeds)
    assert trained == [("c1", [4, 5]), ("uniform", [2, 3]), ("natural", [4, 5])]
    # uniform is far behind (cleared): only natural, the baseline still inside the margin, is topped up
    trained.clear()
    assert stage.resolve_leader(_pipeline(), 0, verified({**close, "uniform": [0.60, 0.64]}), more_seeds)
    assert trained == [("c1", [4, 5]), ("natural", [4, 5])]
