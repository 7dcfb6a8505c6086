"""Merge to Mix: the chosen subset is exported as the union of its datasets, weighted by their tokens."""

import dataclasses

import numpy as np
import pytest

from mergemix_jax.config.schema import SubsetSearchConfig
from mergemix_jax.search.problem import synthetic_quadratic
from mergemix_jax.search.subsets import subset_search


def face_problem(**changes):
    problem, w_star = synthetic_quadratic(4, "face", seed=10)  # the best subset: uniform on 2 of 4 domains
    return dataclasses.replace(problem, **changes), w_star


def test_union_export_weights_the_chosen_subset_by_tokens():
    tokens = np.asarray([100.0, 300.0, 50.0, 600.0])
    problem, w_star = face_problem(tokens=tokens)
    result = subset_search(problem, SubsetSearchConfig())
    chosen = w_star > 0
    np.testing.assert_allclose(result.extras["scored_weights"], w_star, atol=1e-9)  # the merge scored uniform weights
    np.testing.assert_allclose(result.weights, np.where(chosen, tokens, 0) / tokens[chosen].sum())
    assert result.extras["export"] == "union by tokens"
    uniform = subset_search(problem, SubsetSearchConfig(export="uniform"))
    np.testing.assert_allclose(uniform.weights, w_star, atol=1e-9)


def test_union_export_respects_the_caps_and_needs_token_counts():
    tokens = np.asarray([100.0, 300.0, 50.0, 600.0])
    problem, _ = face_problem(tokens=tokens, caps=np.full(4, 0.55))
    result = subset_search(problem, SubsetSearchConfig())
    assert result.weights.max() <= 0.55 + 1e-6 and result.weights.sum() == pytest.approx(1.0)
    no_tokens, _ = face_problem()
    assert subset_search(no_tokens, SubsetSearchConfig()).extras["export"].startswith("uniform (no token counts")
