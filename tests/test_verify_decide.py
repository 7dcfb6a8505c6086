"""Verification's decision on synthetic problems with known noise, and the diverse candidate pick."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.verify import decide, seed_noise, select_diverse, tv_distance
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


def test_seed_noise_is_the_pooled_within_candidate_std():
    assert seed_noise([[1.0], [2.0]]) is None
    np.testing.assert_allclose(seed_noise([[0.0, 2.0], [1.0, 1.0]]), 1.0)  # (2 + 0) / 2 dof


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
    assert two.margin == 0.0 and two.chosen == "c1"  # no spread at all: any lead counts
    noisy = [[-2.02, -1.98], [-2.05, -2.05], [-2.0, -1.96]]
    assert decide(names, noisy, [0, 0, 1]).chosen == "uniform"
    more = [[-2.02, -1.98, -2.0, -2.0, -2.01, -1.99, -2.0, -2.0], [-2.05, -2.05], [-2.0, -1.96, -1.98, -1.98, -1.97, -1.99, -1.98, -1.98]]
    assert decide(names, more, [0, 0, 1]).chosen == "c1"
