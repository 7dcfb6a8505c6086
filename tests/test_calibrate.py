"""Calibration maps: monotone everywhere, exact on monotone fitting points, sane below 3 points."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.calibrate import Calibration, fit_calibration, load_calibration, save_calibration
from mergemix_jax.calibrate.isotonic import fit_domain_map

finite = st.floats(0.1, 8.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=12), st.lists(st.floats(-2.0, 12.0), min_size=2, max_size=20))
def test_map_is_monotone_everywhere(points, queries):
    x, y = np.asarray(points).T
    fitted = fit_domain_map("loss/d", x, y)
    q = np.sort(np.asarray(queries))
    assert np.all(np.diff(fitted(q)) >= -1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=3, max_size=12, unique=True), st.lists(st.floats(0.0, 1.0), min_size=12, max_size=12))
def test_map_is_exact_on_monotone_fitting_points(xs, steps):
    x = np.sort(np.asarray(xs))
    y = 1.0 + np.cumsum(np.asarray(steps[: len(x)]))  # non-decreasing in x
    fitted = fit_domain_map("loss/d", x, y)
    assert fitted.kind == "isotonic"
    np.testing.assert_allclose(fitted(x), y, atol=1e-9)


def test_isotonic_repairs_scale_but_keeps_each_domains_order():
    proxy = np.array([1.0, 1.4, 1.8, 2.4])  # a fast-forgotten domain: proxy spread 1.4 nats
    real = np.array([1.0, 1.1, 1.2, 1.3])  # real spread 0.3 nats
    fitted = fit_domain_map("loss/math", proxy, real)
    q = np.array([1.2, 1.6, 2.0])
    out = fitted(q)
    assert np.all(np.diff(out) > 0) and out.max() - out.min() < 0.3


def test_fallbacks_below_three_points():
    shift = fit_domain_map("loss/d", np.array([2.0, 3.0]), np.array([1.5, 2.7]))
    assert shift.kind == "shift"
    np.testing.assert_allclose(shift(np.array([2.0, 3.0])), [1.6, 2.6])
    identity = fit_domain_map("loss/d", np.array([]), np.array([]))
    assert identity.kind == "identity"
    np.testing.assert_allclose(identity(np.array([0.5, 7.0])), [0.5, 7.0])


def test_apply_recomputes_the_mean_and_round_trips(tmp_path):
    proxy = {"loss/a": np.array([1.0, 2.0, 3.0]), "loss/b": np.array([2.0, 3.0, 4.0])}
    real = {"loss/a": np.array([1.0, 1.5, 2.0]), "loss/b": np.array([2.0, 2.2, 2.4])}
    cal = fit_calibration(proxy, real, ["a", "b"])
    out = cal.apply({**proxy, "loss/mean": np.zeros(3), "acc/task": np.ones(3)})
    np.testing.assert_allclose(out["loss/mean"], (real["loss/a"] + real["loss/b"]) / 2, atol=1e-9)
    np.testing.assert_allclose(out["acc/task"], 1.0)
    save_calibration(cal, tmp_path, points={"n": 3})
    loaded = load_calibration(tmp_path)
    assert isinstance(loaded, Calibration)
    np.testing.assert_allclose(loaded.apply(proxy)["loss/a"], out["loss/a"])
    assert load_calibration(tmp_path / "missing") is None


def test_utility_metrics_besides_domain_losses_get_their_own_maps():
    """A benchmark utility (answer NLL of a task) is calibrated too, monotone and exact on its points."""
    proxy = {"loss/a": np.array([1.0, 2.0, 3.0]), "answer_nll/t": np.array([0.5, 1.5, 4.0])}
    real = {"loss/a": np.array([1.0, 1.5, 2.0]), "answer_nll/t": np.array([0.6, 0.8, 1.0])}
    plain = fit_calibration(proxy, real, ["a"])
    with_task = fit_calibration(proxy, real, ["a"], ["answer_nll/t", "loss/a", "loss/mean"])
    assert [m.metric for m in plain.maps] == ["loss/a"]
    assert [m.metric for m in with_task.maps] == ["loss/a", "answer_nll/t"]
    np.testing.assert_allclose(with_task.apply(proxy)["answer_nll/t"], real["answer_nll/t"], atol=1e-9)
    np.testing.assert_array_equal(plain.apply(proxy)["answer_nll/t"], proxy["answer_nll/t"])
    q = np.linspace(0.0, 5.0, 11)
    assert np.all(np.diff(with_task.apply({"answer_nll/t": q})["answer_nll/t"]) > 0)


def test_vertices_count_as_real_runs_only_for_reference_recipe_experts(tmp_path):
    """A vertex of the probe table is a real run only when expert k is the one-hot reference."""
    from mergemix_jax.config import config_from_dict
    from mergemix_jax.runkit import training
    from tests.pipeline_helpers import tiny_pipeline_raw

    def cfg(**pipeline):
        return config_from_dict(tiny_pipeline_raw(tmp_path, **pipeline))

    assert training.experts_are_references(cfg())
    assert not training.experts_are_references(cfg(expert_general_share=0.5))
    assert not training.experts_are_references(cfg(expert_schedule="cosine"))
    assert not training.experts_are_references(cfg(expert_steps=8, expert_checkpoint_step=4))
    assert training.experts_are_references(cfg(expert_steps=8, expert_checkpoint_step=8))
