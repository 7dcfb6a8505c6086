"""Validation maths: rank statistics, normalised utility, ranks, and the two non-merging baselines."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.eval import evaluate, make_suite
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.model import forward, init_params
from mergemix_jax.validate import baselines, stats
from tests.helpers import tiny_config
from tests.test_diagnostics_hvp import _batch


def test_rank_correlations_of_monotone_and_reversed_orders():
    x = np.array([0.3, 1.0, 2.5, 2.6, 7.0])
    assert stats.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert stats.kendall(x, -(x**3)) == pytest.approx(-1.0)
    assert np.isnan(stats.spearman(x, np.ones_like(x)))
    assert np.isnan(stats.kendall(x[:2], x[:2]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3), st.lists(st.floats(-5.0, 5.0), min_size=3, max_size=3))
def test_normalised_utility_ignores_each_domains_scale_and_offset(scales, offsets):
    rng = np.random.default_rng(0)
    table = {f"loss/{d}": rng.normal(size=8) for d in "abc"}
    moved = {f"loss/{d}": s * table[f"loss/{d}"] + o for d, s, o in zip("abc", scales, offsets, strict=True)}
    np.testing.assert_allclose(stats.normalised_utility(moved, "abc"), stats.normalised_utility(table, "abc"), atol=1e-6)


def test_rank_of_and_subsets():
    population = np.array([-3.0, -1.0, -2.0, -0.5])
    assert stats.rank_of(-0.1, population) == 1
    assert stats.rank_of(-1.5, population) == 3
    masks = stats.subsets(["vertex", "vertex", "centre", "dirichlet"], population)
    assert masks["interior"].tolist() == [False, False, True, True]
    assert masks["top quartile"].tolist() == [False, False, False, True]
    rows = stats.rank_rows("m", population, [population * 2, population * 2], masks, others={"calibrated": None})
    assert rows[0]["spearman"] == pytest.approx(1.0) and rows[0]["reliability"] == pytest.approx(1.0) and rows[0]["bound"] == pytest.approx(1.0)
    assert rows[0]["recovery"] == pytest.approx(0.5) and np.isnan(rows[0]["calibrated_spearman"])
    assert "| m | all | 4 | 1.000 [1.00, 1.00] | – |" in stats.format_table(rows)
    one = stats.rank_rows("m", population, [population], masks)
    assert np.isnan(one[0]["reliability"]) and np.isnan(one[0]["bound"])  # no replicate, no bound


def _noisy_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + rng.normal(size=n)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_mixtures():
    widths = []
    for n in (12, 48, 400):
        x, y = _noisy_pair(n, n)
        rho = stats.spearman(x, y)
        lo, hi = stats.spearman_interval(x, y, stats.bootstrap_indices(n, seed=1))
        assert lo <= rho <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] > 0.3 and widths[2] < 0.2  # 12 mixtures: a wide interval, as fidelity-notes measured


def test_perfect_predictor_reaches_sqrt_of_the_replicate_reliability():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=4000)  # expected outcome of each mixture
    rep1, rep2 = (truth + rng.normal(scale=0.8, size=truth.size) for _ in range(2))
    r = stats.spearman(rep1, rep2)
    assert 0.5 < r < 0.75
    assert stats.spearman(truth, rep1) == pytest.approx(stats.predictor_bound(r, 1), abs=0.02)
    assert stats.spearman(truth, (rep1 + rep2) / 2) == pytest.approx(stats.predictor_bound(r, 2), abs=0.02)
    assert stats.predictor_bound(r, 1) > r  # the replicate Spearman is not a ceiling
    row = stats.rank_rows("u", truth, [rep1, rep2], {"all": np.ones(truth.size, bool)}, n_boot=200)[0]
    assert row["spearman"] == pytest.approx(row["bound"], abs=0.02)
    assert row["bound_lo"] <= row["bound"] <= row["bound_hi"]


def test_indistinguishable_set_with_known_noise():
    truth = np.array([0.0, -0.001, -0.002, -0.3, -0.5, -1.0])  # utility, higher is better; the first three within noise
    noise = 0.01
    hits = np.zeros(truth.size)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        runs = truth + rng.normal(scale=noise, size=(2, truth.size))
        estimated = stats.replicate_noise(runs[0], runs[1])
        hits += stats.indistinguishable(runs.mean(axis=0), estimated, replicates=2)
    assert np.all(hits[:3] / 200 > 0.75) and np.all(hits[3:] == 0)
    assert stats.indistinguishable(truth, float("nan")).tolist() == [True] + [False] * 5


def test_regret_interval_follows_the_seed_noise():
    refs = np.array([-1.0, -1.2, -1.5])
    assert stats.regret_interval(refs, -1.1, 0.0) == pytest.approx((0.1, 0.1, 0.1))
    regret, lo, hi = stats.regret_interval(refs, -1.1, 0.05, replicates=2)
    assert regret == pytest.approx(0.1) and lo < regret < hi and hi - lo < 0.3
    assert np.isnan(stats.regret_interval(refs, -1.1, float("nan"))[1])
    regret, lo, hi = stats.regret_interval(np.array([-1.0, -1.01, -1.5]), -1.0, 0.05, replicates=2, pick_index=0)  # the pick is the best reference
    assert regret == 0.0 and lo >= 0.0 and hi > 0.0  # shares its own draw: never better than itself


def test_loss_interpolation_is_exact_at_vertices():
    expert = {"loss/a": np.array([1.0, 2.0, 4.0])}
    got = baselines.loss_interpolation(np.vstack([np.eye(3), [[0.5, 0.25, 0.25]]]), expert)
    np.testing.assert_allclose(got["loss/a"], [1.0, 2.0, 4.0, 2.0])


def test_output_space_baseline_averages_next_token_probabilities():
    cfg = tiny_config().model
    base = init_params(cfg, 0)
    experts = [init_params(cfg, s) for s in (1, 2)]
    stack = build_expert_stack(base, experts, ("a", "b"))
    batch = _batch(3)
    batch["loss_mask"][0, :5] = 0.0  # masked tokens must not count
    suite = make_suite({"a": batch, "b": _batch(4)})
    weights = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    got = baselines.output_space(cfg, stack, suite, weights)
    for k in range(2):  # a one-hot mixture is the expert itself
        own = evaluate(cfg, experts[k], suite)
        np.testing.assert_allclose(got["loss/a"][k], float(own["loss/a"]), rtol=1e-5)
        np.testing.assert_allclose(got["loss/mean"][k], float(own["loss/mean"]), rtol=1e-5)
    probs = [np.asarray(jax.nn.softmax(forward(cfg, p, batch["inputs"], batch["positions"], batch["segment_ids"])), np.float64) for p in experts]
    mixed = 0.3 * probs[0] + 0.7 * probs[1]
    p_target = np.take_along_axis(mixed, batch["targets"][..., None], axis=-1)[..., 0]
    mask = batch["loss_mask"]
    np.testing.assert_allclose(got["loss/a"][2], -(np.log(p_target) * mask).sum() / mask.sum(), rtol=1e-5)
