"""The surrogate as published: prior-centred candidate pool with cap rejection, LightGBM presets,
earlier observations (probe table, swarm CSV) in the fit, and the reason for the regressor used."""

import csv
import dataclasses

import numpy as np
import pytest

from mergemix_jax.config.schema import SurrogateSearchConfig
from mergemix_jax.search.hierarchical import clusters_from_similarity
from mergemix_jax.search.problem import synthetic_quadratic
from mergemix_jax.search.regressors import _lightgbm, lightgbm_params, resolve_kind
from mergemix_jax.search.surrogate import prior_pool, surrogate_search
from mergemix_jax.search.swarm import read_swarm_csv

K = 4


def skewed_problem(caps=None):
    problem, w_star = synthetic_quadratic(K, "interior", seed=3)
    return dataclasses.replace(problem, prior=np.asarray([0.55, 0.25, 0.15, 0.05]), caps=caps), w_star


def test_pool_is_centred_on_the_tempered_prior_and_rejects_rows_above_the_caps():
    problem, _ = skewed_problem()
    options = SurrogateSearchConfig(prior_power=0.5)
    pool = prior_pool(problem, 20_000, options, np.random.default_rng(0))
    base = np.sqrt(problem.prior) / np.sqrt(problem.prior).sum()
    assert pool.shape == (20_000, K) and np.allclose(pool.sum(1), 1)
    np.testing.assert_allclose(pool.mean(0), base, atol=0.01)  # Dirichlet(base * s) has mean base for every s
    capped, _ = skewed_problem(caps=np.asarray([0.5, 0.5, 0.5, 0.5]))
    pool = prior_pool(capped, 5_000, options, np.random.default_rng(1))
    assert len(pool) == 5_000 and pool.max() <= 0.5 + 1e-6


def test_presets_carry_the_anchors_hyperparameters_and_regmix_stops_early():
    assert (lightgbm_params("demix").learning_rate, lightgbm_params("demix").n_estimators) == (0.01, 300)
    regmix = lightgbm_params("regmix")
    assert (regmix.learning_rate, regmix.n_estimators, regmix.early_stopping_rounds) == (0.01, 1000, 3)
    assert lightgbm_params("demix", n_estimators=50).n_estimators == 50
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(K), 200)
    y = (x**2).sum(1) + rng.normal(0, 0.05, 200)  # noisy: the held-out l2 stops improving long before 1000 trees
    predict = _lightgbm(x, y, 0, regmix)
    assert 0 < predict.__self__.best_iteration_ < 1000
    with pytest.raises(ValueError, match="preset must be one of"):
        lightgbm_params("olmix")


def test_auto_says_why_it_did_not_use_lightgbm():
    kind, why = resolve_kind("auto", 40, 64)
    assert kind == "ridge" and "only 40 mixtures < min_lightgbm_samples 64" in why
    assert resolve_kind("auto", 64, 64)[0] == "lightgbm"


def test_earlier_observations_join_the_fit_so_lightgbm_is_used_with_few_new_scores():
    problem, _ = synthetic_quadratic(K, "interior", seed=4)
    options = SurrogateSearchConfig(n_seeds=16, rounds=0, n_candidates=500, min_lightgbm_samples=64)
    alone = surrogate_search(problem, options)
    assert alone.extras["rounds"][0]["regressors"]["loss"] == "ridge" and "not lightgbm" in alone.extras["rounds"][0]["why"]
    x = np.random.default_rng(5).dirichlet(np.ones(K), 80)
    observed = dataclasses.replace(problem, observed=(x, problem.score(x)))
    result = surrogate_search(observed, options)
    first = result.extras["rounds"][0]
    assert first["regressors"]["loss"] == "lightgbm" and first["fit_rows"] == 96 and first["scored"] == 16
    assert result.extras["earlier_observations"] == 80 and result.n_evaluations == 17  # observations are not re-scored
    ignored = surrogate_search(observed, dataclasses.replace(options, use_observed=False))
    assert ignored.extras["rounds"][0]["fit_rows"] == 16


def write_swarm(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(rows)


def test_swarm_csv_rows_are_read_in_domain_order_and_added_to_the_fit(tmp_path):
    problem, _ = synthetic_quadratic(K, "interior", seed=6)
    x = np.random.default_rng(7).dirichlet(np.ones(K), 70)
    metrics = problem.score(x)
    path = tmp_path / "swarm.csv"
    # bare domain names, columns in another order, unnormalised weights, an extra text column
    write_swarm(path, [["run", "d3", "d1", "d0", "d2", "loss", "accuracy"]] + [
        [f"r{i}", *(2 * w[[3, 1, 0, 2]]).tolist(), metrics["loss"][i], metrics["accuracy"][i]] for i, w in enumerate(x)
    ])  # fmt: skip
    read_x, read_metrics = read_swarm_csv(path, problem.domains)
    np.testing.assert_allclose(read_x, x, atol=1e-12)
    np.testing.assert_allclose(read_metrics["loss"], metrics["loss"])
    result = surrogate_search(problem, SurrogateSearchConfig(n_seeds=8, rounds=0, n_candidates=300, swarm_csv=str(path)))
    assert result.extras["rounds"][0]["fit_rows"] == 78 and result.extras["rounds"][0]["regressors"]["loss"] == "lightgbm"
    write_swarm(path, [["d0", "d1", "loss"], [0.5, 0.5, 1.0]])
    with pytest.raises(ValueError, match="no column 'w/d2' or 'd2'"):
        read_swarm_csv(path, problem.domains)


def test_clusters_from_task_vector_cosines_group_aligned_experts():
    domains = ["web", "code", "math", "books", "stack"]
    cosine = np.full((5, 5), 0.05)
    for group in ([0, 3], [1, 2, 4]):
        cosine[np.ix_(group, group)] = 0.8
    np.fill_diagonal(cosine, 1.0)
    assert clusters_from_similarity(domains, cosine, 2) == {"web+books": ["web", "books"], "code+math+stack": ["code", "math", "stack"]}
    assert len(clusters_from_similarity(domains, cosine)) == 2  # round(sqrt(5))
    with pytest.raises(ValueError, match="n_clusters must be in"):
        clusters_from_similarity(domains, cosine, 6)
