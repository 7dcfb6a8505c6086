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
    rows = stats.rank_rows("m", population, population * 2, masks, ceiling=population)
    assert rows[0]["spearman"] == pytest.approx(1.0) and rows[0]["ceiling_spearman"] == pytest.approx(1.0)
    assert rows[0]["recovery"] == pytest.approx(0.5)
    assert "| m | all | 4 | 1.000 |" in stats.format_table(rows)


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
