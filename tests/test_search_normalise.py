"""Benchmark utility: per-metric normalisation fitted once on a reference table, macro-averaged; the
gradient objective over smooth stand-ins."""

import numpy as np
import pytest

from mergemix_jax.config import validation
from mergemix_jax.eval import suite
from mergemix_jax.search.normalise import (
    NORMALISATIONS,
    SMOOTH_PREFIXES,
    fit_normaliser,
    macro_utility,
    objective_weights,
)

REFERENCE = {"loss/mean": np.asarray([2.0, 3.0, 4.0, 5.0]), "acc/arc": np.asarray([0.25, 0.30, 0.40, 0.45])}
DIRECTIONS = {"loss/mean": "min", "acc/arc": "max"}


def test_choices_match_the_suite_and_the_config_checks():
    assert SMOOTH_PREFIXES == suite.SMOOTH_PREFIXES
    assert NORMALISATIONS == validation.NORMALISATIONS


@pytest.mark.parametrize("kind", ["minmax", "zscore", "rank"])
def test_normalised_utility_is_oriented_and_does_not_depend_on_the_batch(kind):
    maps = fit_normaliser(REFERENCE, DIRECTIONS, kind)
    u = macro_utility({"loss/mean": 1.0, "acc/arc": 1.0}, maps)
    batch = {"loss/mean": np.asarray([2.5, 4.5, 3.0]), "acc/arc": np.asarray([0.44, 0.26, 0.30])}
    values = u(batch)
    assert values[0] > values[2] > values[1]  # lower loss and higher accuracy are better
    alone = u({k: v[:1] for k, v in batch.items()})
    assert alone[0] == pytest.approx(values[0])  # a fixed map: the other rows do not move it


def test_minmax_and_rank_put_the_reference_on_a_common_unit_scale():
    minmax = fit_normaliser(REFERENCE, DIRECTIONS, "minmax")
    np.testing.assert_allclose(minmax["loss/mean"](np.asarray([5.0, 2.0])), [0.0, 1.0])
    np.testing.assert_allclose(minmax["acc/arc"](np.asarray([0.25, 0.45])), [0.0, 1.0])
    rank = fit_normaliser(REFERENCE, DIRECTIONS, "rank")
    np.testing.assert_allclose(rank["acc/arc"](REFERENCE["acc/arc"]), [0.125, 0.375, 0.625, 0.875])  # mid-rank percentiles
    assert rank["acc/arc"](np.asarray([1.0]))[0] == 1.0 and rank["acc/arc"](np.asarray([0.0]))[0] == 0.0
    # the raw sum would let the loss (range 3 nats) swamp the accuracy (range 0.2); the macro average weighs them equally
    u = macro_utility({"loss/mean": 1.0, "acc/arc": 1.0}, minmax)
    assert u({"loss/mean": np.asarray([3.5]), "acc/arc": np.asarray([0.45])})[0] == pytest.approx((0.5 + 1.0) / 2)


def test_gradient_objective_uses_stand_ins_and_warns_when_there_is_none():
    available = ["loss/mean", "acc/arc", "ce/arc", "exact/gsm"]
    weights, warnings = objective_weights({"loss/mean": 1.0, "acc/arc": 2.0, "exact/gsm": 1.0}, available)
    assert weights == {"loss/mean": 1.0, "ce/arc": 2.0}
    assert any("'acc/arc'" in w and "'ce/arc'" in w for w in warnings)
    assert any("'exact/gsm' has no smooth stand-in" in w for w in warnings)
    reference = {"loss/mean": np.asarray([2.0, 4.0]), "ce/arc": np.asarray([1.0, 1.5])}
    scaled, _ = objective_weights({"loss/mean": 1.0, "acc/arc": 1.0}, available, reference, "minmax")
    assert scaled == pytest.approx({"loss/mean": 0.5, "ce/arc": 2.0})  # each divided by its spread on the reference


def test_the_pipeline_searches_the_normalised_utility_and_a_stand_in_objective():
    from types import SimpleNamespace

    from mergemix_jax.config import load_config
    from mergemix_jax.pipeline.assembly import benchmark_utility
    from mergemix_jax.runkit.utility import fit_run_utility
    from mergemix_jax.search.problem import SearchProblem

    def score(w):
        return {"loss/mean": 3 - w[:, 0], "acc/qa": 0.3 + 0.1 * w[:, 1], "ce/qa": 1.0 - w[:, 1]}

    raw = SearchProblem(domains=("a", "b"), score=score, utility=lambda m: -m["loss/mean"] + m["acc/qa"])
    built = []
    reference = score(np.asarray([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    engine = SimpleNamespace(
        utility=fit_run_utility({"loss/mean": 1.0, "acc/qa": 1.0}, "minmax", reference),  # the run's fixed maps (eval/utility.json)
        config=load_config(None, ["search.normalise=minmax", "pipeline.methods=[gradient,subsets]"]),
        problem=raw,
        weights={"loss/mean": 1.0, "acc/qa": 1.0},
        metrics=["loss/mean", "acc/qa", "ce/qa"],
        search_problem=lambda weights, prior: built.append(weights) or SimpleNamespace(objective="stand-in objective"),
    )
    note = {}
    utility, objective = benchmark_utility(engine, reference, note)
    np.testing.assert_allclose(utility(score(np.asarray([[1.0, 0.0], [0.0, 1.0]]))), [0.5, 0.5])  # (1 + 0) / 2 and (0 + 1) / 2
    assert objective == "stand-in objective" and built == [{"loss/mean": 1.0, "ce/qa": 1.0}]  # both spreads are 1 here
    assert note["normalise"] == "minmax" and any("'ce/qa' instead" in w for w in note["gradient_warnings"])
