"""Black-box searches on scores: surrogate (MergeMix/DeMix), subsets (Merge to Mix), CMA-ES, hierarchical."""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config.schema import (
    CMAESSearchConfig,
    GradientSearchConfig,
    SubsetSearchConfig,
    SurrogateSearchConfig,
)
from mergemix_jax.search.cmaes import cmaes_search
from mergemix_jax.search.gradient import gradient_search
from mergemix_jax.search.hierarchical import hierarchical_search
from mergemix_jax.search.problem import black_box, synthetic_quadratic
from mergemix_jax.search.simplex import simplex_grid
from mergemix_jax.search.subsets import subset_masks, subset_search
from mergemix_jax.search.surrogate import surrogate_search
from mergemix_jax.search.types import SearchResult
from mergemix_jax.search.utility import weighted_utility

K = 5


class CountingScorer:
    """Wraps a scorer and records the number of rows of every call."""

    def __init__(self, score):
        self.score, self.calls = score, []

    def __call__(self, weights):
        self.calls.append(np.asarray(weights).copy())
        return self.score(weights)


def counted(problem):
    scorer = CountingScorer(problem.score)
    return dataclasses.replace(problem, score=scorer), scorer


@pytest.mark.parametrize("optimum", ["interior", "face", "vertex"])
def test_surrogate_with_ridge_finds_the_optimum_and_scores_n_then_halves(optimum):
    problem, w_star = synthetic_quadratic(K, optimum, seed=7)
    problem, scorer = counted(problem)
    options = SurrogateSearchConfig(n_seeds=40, rounds=2, regressor="ridge", n_candidates=4000, batch_size=1000)
    result = surrogate_search(problem, options)
    assert np.abs(result.weights - w_star).max() < 0.02
    assert [len(c) for c in scorer.calls] == [40, 20, 10, 1]  # seeds, n/2, n/4, the verification
    assert result.n_evaluations == 71


def test_surrogate_with_lightgbm_gets_close_and_reports_the_verified_prediction():
    problem, w_star = synthetic_quadratic(K, "interior", seed=8)
    result = surrogate_search(problem, SurrogateSearchConfig(n_seeds=96, rounds=2, regressor="lightgbm", n_candidates=4000))
    f = lambda w: float(problem.objective(jnp.asarray(w, jnp.float32)))  # noqa: E731
    # a tree surrogate on ~170 points in 5-D is coarse: close in weights, most of the way in objective
    assert np.abs(result.weights - w_star).max() < 0.15
    assert f(result.weights) - f(w_star) < 0.2 * (f(np.full(K, 1 / K)) - f(w_star))
    assert {r["regressors"]["loss"] for r in result.extras["rounds"]} == {"lightgbm"}
    verified = float(problem.objective(jnp.asarray(result.extras["predicted_weights"], jnp.float32)))
    assert result.extras["verified_utility"] == pytest.approx(0.5 - verified, abs=1e-5)  # utility = 0.5 - loss


def test_auto_regressor_falls_back_to_ridge_with_few_samples():
    problem, _ = synthetic_quadratic(K, "interior", seed=9)
    result = surrogate_search(problem, SurrogateSearchConfig(n_seeds=16, rounds=0, n_candidates=500, min_lightgbm_samples=64))
    assert result.extras["rounds"][0]["regressors"] == {"loss": "ridge", "accuracy": "ridge"}


@pytest.mark.parametrize("n", [1, 3, 8])
def test_subset_masks_enumerate_every_nonempty_subset_once(n):
    masks = subset_masks(n)
    assert masks.shape == (2**n - 1, n)
    assert len({m.tobytes() for m in masks}) == 2**n - 1 and masks.any(1).all()


def test_subset_search_scores_all_subsets_in_batches_and_finds_the_uniform_face():
    problem, w_star = synthetic_quadratic(6, "face", seed=10)  # the optimum is uniform on 3 of 6 domains
    problem, scorer = counted(problem)
    result = subset_search(problem, SubsetSearchConfig(batch_size=16))
    assert sum(len(c) for c in scorer.calls) == 63 and max(len(c) for c in scorer.calls) == 16
    np.testing.assert_allclose(result.weights, w_star, atol=1e-9)
    assert result.extras["subset"] == [f"d{i}" for i in np.flatnonzero(w_star)]
    with pytest.raises(ValueError, match="N must be in"):
        subset_masks(17)


def test_subset_search_skips_subsets_over_the_caps():
    problem, _ = synthetic_quadratic(4, "face", seed=11)
    problem = dataclasses.replace(problem, caps=np.array([0.4, 0.4, 0.4, 0.4]))
    result = subset_search(problem)
    # uniform weights 1/n <= 0.4 needs n >= 3: the 4 triples and the full set remain
    assert result.extras["n_subsets"] == 5 and result.extras["skipped_over_caps"] == 10


def test_cmaes_finds_interior_face_and_vertex_optima_one_score_call_per_generation():
    for seed, optimum in enumerate(["interior", "face", "vertex"]):
        problem, w_star = synthetic_quadratic(K, optimum, seed=12 + seed)
        problem, scorer = counted(problem)
        result = cmaes_search(problem, CMAESSearchConfig(population_size=16, generations=80, patience=20), seed=seed)
        assert np.abs(result.weights - w_star).max() < 1e-2, optimum
        assert all(len(c) == 16 for c in scorer.calls) and len(scorer.calls) == result.extras["generations"]
        w = np.concatenate(scorer.calls)
        assert np.all(w >= 0) and np.allclose(w.sum(1), 1, atol=1e-5)


def test_cmaes_keeps_every_candidate_within_the_caps():
    problem, _ = synthetic_quadratic(K, "vertex", seed=20)
    problem = dataclasses.replace(problem, caps=np.full(K, 0.3))
    problem, scorer = counted(problem)
    result = cmaes_search(problem, CMAESSearchConfig(generations=10))
    assert np.concatenate(scorer.calls).max() <= 0.3 + 1e-5 and result.weights.max() <= 0.3 + 1e-5


def grid_solver(resolution: int = 200):
    """Exact-enough stage solver for small subproblems: the best point of a fine simplex grid."""

    def solve(sub):
        score, utility = black_box(sub)
        grid = simplex_grid(sub.k, resolution if sub.k <= 3 else 40)
        if sub.caps is not None:
            grid = grid[np.all(grid <= sub.caps + 1e-9, axis=1)]
        u = utility(score(grid))
        best = int(np.argmax(u))
        return SearchResult("grid", sub.domains, grid[best], -float(u[best]), 0.0, len(grid))

    return solve


@pytest.mark.parametrize("optimum", ["interior", "face", "vertex"])
def test_hierarchical_search_composes_cluster_and_split_solutions(optimum):
    problem, w_star = synthetic_quadratic(K, optimum, seed=21)
    clusters = {"a": ["d0", "d1"], "b": ["d2", "d3", "d4"]}
    result = hierarchical_search(problem, clusters, grid_solver(), sweeps=3)
    assert np.abs(result.weights - w_star).max() < 0.03  # the stage grids step by 1/200 and 1/40
    assert [s["stage"] for s in result.extras["stages"]] == ["clusters", "a", "b"] * 3


def test_hierarchical_search_with_gradient_stages_finds_the_optimum():
    problem, w_star = synthetic_quadratic(K, "vertex", seed=21)
    solve = functools.partial(gradient_search, options=GradientSearchConfig(parametrisation="projected", steps=200, chunk=100, restarts=1))
    result = hierarchical_search(problem, {"a": ["d0", "d1"], "b": ["d2", "d3", "d4"]}, solve, sweeps=1)
    assert np.abs(result.weights - w_star).max() < 1e-2
    assert result.method == "hierarchical/gradient/projected"


def test_hierarchical_clusters_are_checked():
    problem, _ = synthetic_quadratic(4, seed=0)
    with pytest.raises(ValueError, match="in no cluster"):
        hierarchical_search(problem, {"a": ["d0"], "b": ["d1", "d2"]}, gradient_search)
    with pytest.raises(ValueError, match="is in clusters 'a' and 'b'"):
        hierarchical_search(problem, {"a": ["d0", "d1"], "b": ["d1", "d2", "d3"]}, gradient_search)
    with pytest.raises(ValueError, match="unknown domain 'x'"):
        hierarchical_search(problem, {"a": ["x"], "b": ["d1"]}, gradient_search)


def test_weighted_utility_signs_and_missing_metrics():
    utility = weighted_utility({"loss": 2.0, "acc": 1.0}, {"loss": "min", "acc": "max"})
    np.testing.assert_allclose(utility({"loss": np.array([1.0, 0.5]), "acc": np.array([0.2, 0.4])}), [-1.8, -0.6])
    with pytest.raises(KeyError, match=r"no metric\(s\) \['acc'\]"):
        utility({"loss": np.array([1.0])})
    with pytest.raises(ValueError, match="needs a direction"):
        weighted_utility({"loss": 1.0}, {})
