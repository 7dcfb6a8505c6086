"""Search on a real merged model: the objective equals batched scoring, and gradient search improves it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import ModelConfig
from mergemix_jax.config.schema import GradientSearchConfig
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import make_suite
from mergemix_jax.merge import build_expert_stack, linear_merge
from mergemix_jax.model import init_params
from mergemix_jax.search.gradient import gradient_search
from mergemix_jax.search.grouped import grouped_linear_merge, leaf_groups
from mergemix_jax.search.merged import merged_problem, parse_metric_weights
from tests.helpers import TINY_MODEL

K, ROWS, SEQ = 3, 4, 16


@pytest.fixture(scope="module")
def parts():
    cfg = ModelConfig(**TINY_MODEL)
    base = init_params(cfg, seed=0)
    rng = np.random.default_rng(0)
    experts = [jax.tree.map(lambda b: b + 0.02 * rng.standard_normal(b.shape).astype(np.float32), base) for _ in range(K)]
    stack = build_expert_stack(base, experts, ["web", "code", "math"])

    def batch():
        return batch_from_sequences(rng.integers(1, cfg.vocab_size, (ROWS, SEQ + 1)))

    suite = make_suite({"web": batch(), "code": batch(), "math": batch()})
    return cfg, stack, suite


@pytest.fixture(scope="module")
def problem(parts):
    return merged_problem(*parts, {"loss/web": 2.0, "loss/math": 1.0}, mixtures_per_device=2)


def test_objective_equals_the_weighted_batched_scores(problem):
    weights = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.8, 0.1]])
    metrics = problem.score(weights)
    expected = 2.0 * metrics["loss/web"] + metrics["loss/math"]
    got = [float(jax.jit(problem.objective)(jnp.asarray(w, jnp.float32))) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(problem.utility(metrics), -expected, rtol=1e-6)


def test_gradient_search_on_the_merged_model_beats_the_uniform_mixture(problem):
    result = gradient_search(problem, GradientSearchConfig(parametrisation="softmax", steps=10, chunk=10, restarts=1))
    uniform = result.trace[0]  # the first step evaluates the start: the prior, uniform here
    assert result.objective < uniform - 1e-4
    assert result.domains == ("web", "code", "math") and abs(result.weights.sum() - 1) < 1e-5


def test_unknown_metrics_and_bad_specs_are_named(problem):
    with pytest.raises(ValueError, match=r"metrics \['acc/qa'\] are not in the evaluation suite"):
        merged_problem(None, None, make_suite({"web": _dummy_batch()}), {"acc/qa": 1.0})
    assert parse_metric_weights("loss/web=0.5,loss/mean") == {"loss/web": 0.5, "loss/mean": 1.0}
    with pytest.raises(ValueError, match="expected name=number"):
        parse_metric_weights("loss/web=heavy")


def _dummy_batch():
    ones = np.ones((1, 4), np.int32)
    return {"inputs": ones, "targets": ones, "positions": ones, "segment_ids": ones, "loss_mask": ones.astype(np.float32)}


def test_grouped_merge_with_equal_rows_is_the_linear_merge(parts):
    _, stack, _ = parts
    ids, names = leaf_groups(stack.base, "layer")
    assert names == ("embed", "head", "layer000", "layer001")
    assert leaf_groups(stack.base, "module")[1] == ("attn", "embed", "mlp", "norm")
    w = jnp.asarray([0.2, 0.5, 0.3])
    grouped = grouped_linear_merge(stack, jnp.tile(w, (len(names), 1)), ids, scale=0.8)
    for a, b in zip(jax.tree.leaves(grouped), jax.tree.leaves(linear_merge(stack, w, scale=0.8)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_per_layer_gradient_search_on_the_merged_model(parts):
    grouped = merged_problem(*parts, {"loss/web": 2.0, "loss/math": 1.0}, groups="layer")
    assert grouped.n_groups == 4 and grouped.weight_shape == (4, K)
    result = gradient_search(grouped, GradientSearchConfig(parametrisation="mirror", steps=10, chunk=10, restarts=1))
    assert result.group_weights.shape == (4, K)
    np.testing.assert_allclose(result.group_weights.sum(1), 1.0, atol=1e-5)
    assert result.objective < result.trace[0] - 1e-4  # better than the uniform start in every group
