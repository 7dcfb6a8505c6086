"""Non-finite scores are flagged, never ranked: a diverged expert cannot win a search."""

import dataclasses
import logging

import jax
import numpy as np
import pytest

from mergemix_jax.config import ModelConfig
from mergemix_jax.config.schema import SurrogateSearchConfig
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import make_suite
from mergemix_jax.eval.api import evaluate_mixtures
from mergemix_jax.eval.results import read_results
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.model import init_params
from mergemix_jax.search.problem import black_box, synthetic_quadratic
from mergemix_jax.search.subsets import subset_search
from mergemix_jax.search.surrogate import surrogate_search
from mergemix_jax.search.utility import weighted_utility
from tests.helpers import TINY_MODEL


def test_evaluation_flags_the_mixtures_of_a_diverged_expert(tmp_path, caplog):
    cfg = ModelConfig(**{**TINY_MODEL, "tie_embeddings": False})
    base = init_params(cfg, 0)
    healthy = jax.tree.map(lambda p: p * 1.01, base)
    # finite but huge output weights: any share of this expert overflows the logits to inf
    diverged = {**base, "final_norm": {"scale": base["final_norm"]["scale"] * 1e38}, "unembed_DxV": base["unembed_DxV"] * 1e12}
    stack = build_expert_stack(base, [healthy, diverged], ["ok", "bad"])
    suite = make_suite({"heldout": batch_from_sequences(np.random.default_rng(0).integers(1, 64, (2, 9)))})
    weights = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.7, 0.3]])
    with caplog.at_level(logging.WARNING):
        summary = evaluate_mixtures(cfg, stack, weights, suite, tmp_path / "r.csv", progress=False)
    assert summary["non_finite_rows"] == [1, 2, 3]
    assert "NaN/inf" in caplog.text
    table = read_results(tmp_path / "r.csv")
    assert np.isfinite(table["loss/mean"][0]) and not np.isfinite(table["loss/mean"][1:]).any()


def test_utility_ranks_non_finite_mixtures_last():
    problem, _ = synthetic_quadratic(2, seed=0)
    problem = dataclasses.replace(problem, score=lambda w: {"loss": w[:, 0]}, utility=weighted_utility({"loss": 1.0}, {"loss": "min"}))
    _, utility = black_box(problem)
    u = utility({"loss": np.array([2.0, np.nan, 1.0, np.inf])})
    assert u[2] == -1.0 and u[0] == -2.0 and np.all(u[[1, 3]] == -np.inf)
    assert int(np.argmax(u)) == 2


def poisoned(problem, bad_mixture: np.ndarray):
    """The same problem, but the scorer returns NaN for one mixture (a diverged merge)."""

    def score(w):
        metrics = problem.score(w)
        hit = np.all(np.isclose(np.asarray(w), bad_mixture[None], atol=1e-6), axis=1)
        return {name: np.where(hit, np.nan, values) for name, values in metrics.items()}

    return dataclasses.replace(problem, score=score)


@pytest.mark.parametrize("method", ["subsets", "surrogate"])
def test_search_never_picks_a_nan_mixture(method):
    problem, w_star = synthetic_quadratic(4, "vertex", seed=3)
    bad = poisoned(problem, w_star)
    if method == "subsets":
        result = subset_search(bad)
    else:
        result = surrogate_search(bad, SurrogateSearchConfig(n_seeds=24, rounds=1, regressor="ridge"))
    assert not np.allclose(result.weights, w_star, atol=1e-6)
    assert np.isfinite(result.objective)
