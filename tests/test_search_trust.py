"""The trust region keeps every method above floor * prior and is the identity at floor 0."""

import numpy as np
import pytest

from mergemix_jax.config.schema import CMAESSearchConfig, GradientSearchConfig
from mergemix_jax.search.cmaes import cmaes_search
from mergemix_jax.search.gradient import gradient_search
from mergemix_jax.search.problem import black_box, synthetic_quadratic
from mergemix_jax.search.trust import floor_region, lift_result


@pytest.mark.parametrize("method", ["gradient", "cmaes"])
def test_searches_inside_the_floor_region_stay_above_the_floor(method):
    problem, w_star = synthetic_quadratic(4, optimum="face", seed=3)
    assert np.any(w_star == 0)  # the unconstrained optimum sits on a face
    sub, to_weights = floor_region(problem, 0.4)
    found = gradient_search(sub, GradientSearchConfig(steps=40)) if method == "gradient" else cmaes_search(sub, CMAESSearchConfig(generations=6, population_size=8))
    result = lift_result(found, to_weights)
    assert np.isclose(result.weights.sum(), 1.0)
    assert np.all(result.weights >= 0.4 * problem.prior - 1e-6)
    score, utility = black_box(problem)
    # the sub-problem's objective at v equals the full objective at the lifted mixture
    v = np.array([[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(black_box(sub)[0](v)["loss"], score(to_weights(v))["loss"], rtol=1e-5)
    assert np.isfinite(utility(score(result.weights[None]))).all()


def test_floor_zero_is_the_whole_simplex():
    problem, _ = synthetic_quadratic(3, seed=0)
    sub, to_weights = floor_region(problem, 0.0)
    assert sub is problem
    np.testing.assert_allclose(to_weights(np.array([0.2, 0.3, 0.5])), [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="floor"):
        floor_region(problem, 1.0)
