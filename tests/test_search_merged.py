"""Search on a real merged model: the objective equals batched scoring, and gradient search improves it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import ModelConfig
from mergemix_jax.eval import make_suite
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.model import init_params
from mergemix_jax.search.gradient import GradientOptions, gradient_search
from mergemix_jax.search.merged import merged_problem, parse_metric_weights
from tests.helpers import TINY_MODEL

K, ROWS, SEQ = 3, 4, 16


@pytest.fixture(scope="module")
def problem():
    cfg = ModelConfig(**TINY_MODEL)
    base = init_params(cfg, seed=0)
    rng = np.random.default_rng(0)
    experts = [jax.tree.map(lambda b: b + 0.02 * rng.standard_normal(b.shape).astype(np.float32), base) for _ in range(K)]
    stack = build_expert_stack(base, experts, ["web", "code", "math"])

    def batch():
        tokens = rng.integers(1, cfg.vocab_size, (ROWS, SEQ + 1)).astype(np.int32)
        return {
            "inputs": tokens[:, :-1],
            "targets": tokens[:, 1:],
            "positions": np.tile(np.arange(SEQ, dtype=np.int32), (ROWS, 1)),
            "segment_ids": np.ones((ROWS, SEQ), np.int32),
            "loss_mask": np.ones((ROWS, SEQ), np.float32),
        }

    suite = make_suite({"web": batch(), "code": batch(), "math": batch()})
    return merged_problem(cfg, stack, suite, {"loss/web": 2.0, "loss/math": 1.0}, mixtures_per_device=2)


def test_objective_equals_the_weighted_batched_scores(problem):
    weights = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.8, 0.1]])
    metrics = problem.score(weights)
    expected = 2.0 * metrics["loss/web"] + metrics["loss/math"]
    got = [float(jax.jit(problem.objective)(jnp.asarray(w, jnp.float32))) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(problem.utility(metrics), -expected, rtol=1e-6)


def test_gradient_search_on_the_merged_model_beats_the_uniform_mixture(problem):
    result = gradient_search(problem, GradientOptions(parametrisation="softmax", steps=10, chunk=10, restarts=1))
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
