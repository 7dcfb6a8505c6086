"""DeMix's component recipe as an expert option: general-data share, cosine-to-a-floor schedule,
an intermediate checkpoint as the expert, and the dilution-corrected merge weights."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mergemix_jax.config import ConfigError, ModelConfig, config_from_dict
from mergemix_jax.data.pipeline import make_sequence_dataset
from mergemix_jax.eval import load_expert_stack
from mergemix_jax.merge import build_expert_stack, linear_merge, merge
from mergemix_jax.merge.dilution import (
    corrected_weights,
    effective_proportions,
    make_dilution,
    merge_coefficients,
    unreachable_rows,
)
from mergemix_jax.model import init_params
from mergemix_jax.runkit import training
from mergemix_jax.train.checkpoint import CheckpointError, load_params
from mergemix_jax.train.optimizer import learning_rate_schedule
from tests.helpers import TINY_MODEL
from tests.pipeline_helpers import tiny_pipeline_raw

CFG = ModelConfig(**TINY_MODEL)


def simplex(k: int, min_size: int = 0):
    """Hypothesis strategy: a point of the k-simplex (float64)."""
    return st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-3).map(lambda v: np.asarray(v) / sum(v))


@settings(max_examples=60, deadline=None)
@given(k=st.integers(2, 6), data=st.data(), share=st.floats(0.0, 0.95))
def test_corrected_weights_round_trip_to_the_target(k, data, share):
    """Inside the reachable set, the corrected weights' effective proportions are the target again,
    and clipping leaves them alone."""
    w = data.draw(simplex(k))
    general = data.draw(simplex(k))
    target = effective_proportions(w, share, general)  # a reachable target: (1 - s) w + s g
    back = np.asarray(corrected_weights(target, share, general), np.float64)
    np.testing.assert_allclose(effective_proportions(back, share, general), target, atol=1e-5)
    np.testing.assert_allclose(back, w, atol=1e-5)
    dilution = make_dilution(share, general)
    np.testing.assert_allclose(np.asarray(merge_coefficients(target, dilution), np.float64), w, atol=1e-5)
    assert not unreachable_rows(target, dilution).any()


def test_demix_correction_is_2w_minus_one_over_k_for_half_uniform():
    a = np.asarray([0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(np.asarray(corrected_weights(a, 0.5, np.full(4, 0.25))), 2 * a - 0.25, atol=1e-6)


def test_targets_out_of_reach_are_clipped_to_the_simplex_and_flagged():
    dilution = make_dilution(0.5, [0.25] * 4)
    targets = np.asarray([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], np.float32)
    coefficients = np.asarray(merge_coefficients(targets, dilution))
    assert (coefficients >= 0).all()
    np.testing.assert_allclose(coefficients.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(coefficients[0], [1.0, 0.0, 0.0, 0.0])  # a vertex merges to its expert alone
    np.testing.assert_allclose(coefficients[1], [0.5, 0.5, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(coefficients[2], targets[2], atol=1e-6)  # the general mixture itself is reachable
    assert unreachable_rows(targets, dilution).tolist() == [True, True, False]


def test_share_zero_means_no_correction_anywhere():
    assert make_dilution(0.0, [0.5, 0.5]) is None
    w = jnp.asarray([0.2, 0.8])
    assert merge_coefficients(w, None) is w
    assert not unreachable_rows(np.eye(2), None).any()


@pytest.fixture(scope="module")
def stack():
    base = init_params(CFG, 0)
    rng = np.random.default_rng(1)
    experts = [jax.tree.map(lambda b, k=k: b + jnp.asarray(0.02 * rng.standard_normal(b.shape), b.dtype), base) for k in range(3)]
    return build_expert_stack(base, experts, ["prose", "code", "math"])


def assert_trees_close(a, b, atol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_merge_of_a_diluted_stack_uses_the_corrected_weights(stack):
    w = jnp.asarray([0.5, 0.3, 0.2])
    assert_trees_close(merge(stack, w), linear_merge(stack, w))  # no dilution: bit for bit as before
    diluted = dataclasses.replace(stack, dilution=make_dilution(0.5, [1 / 3] * 3))
    assert_trees_close(merge(diluted, w), linear_merge(stack, 2 * w - 1 / 3), atol=1e-6)
    assert_trees_close(jax.jit(merge)(diluted, jnp.asarray([0.0, 1.0, 0.0])), jax.tree.map(lambda e: e[1], stack.experts))


def tiny(tmp_path, **pipeline):
    raw = tiny_pipeline_raw(tmp_path, **pipeline)
    return config_from_dict(json.loads(json.dumps(raw)), "tiny.yaml")


def test_defaults_keep_todays_pure_domain_constant_lr_experts(tmp_path):
    config = tiny(tmp_path)
    out = tmp_path / "e"
    assert training.expert_config(config, tmp_path, out, "code") == training.short_run_config(config, tmp_path, out, {"code": 1.0})
    assert training.expert_dilution(config) is None
    assert training.expert_step(config, [out]) is None


def test_a_diluted_expert_sees_the_general_data(tmp_path):
    """share 0.5 over the base's own (uniform) mixture: 2/3 own domain, 1/6 each other one, in the stream."""
    config = tiny(tmp_path, expert_general_share=0.5)
    assert training.general_mixture(config) == pytest.approx({"prose": 1 / 3, "code": 1 / 3, "math": 1 / 3})
    cfg = training.expert_config(config, tmp_path, tmp_path / "e", "code")
    assert cfg.train.mixture == pytest.approx({"prose": 1 / 6, "code": 2 / 3, "math": 1 / 6})
    stream = iter(make_sequence_dataset(config.data, cfg.train.mixture, seq_len=32, seed=0))
    domains = np.asarray([int(next(stream)["domain"]) for _ in range(300)])
    shares = np.bincount(domains, minlength=3) / len(domains)
    np.testing.assert_allclose(shares, [1 / 6, 2 / 3, 1 / 6], atol=0.06)


def test_cosine_expert_schedule_decays_to_the_floor(tmp_path):
    config = tiny(tmp_path, expert_schedule="cosine", expert_lr_floor=0.2, expert_steps=10)
    cfg = training.expert_config(config, tmp_path, tmp_path / "e", "math")
    assert cfg.optim.schedule == "cosine"
    lr = learning_rate_schedule(cfg.optim, cfg.train.steps)
    assert float(lr(cfg.train.steps)) == pytest.approx(0.2 * cfg.optim.learning_rate, rel=1e-5)
    reference = training.short_run_config(config, tmp_path, tmp_path / "r", {"math": 0.5, "code": 0.5})
    assert reference.optim.schedule == "constant"  # references do not follow the expert recipe


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ({"expert_general_share": 1.0}, r"pipeline\.expert_general_share.*\[0, 1\)"),
        ({"expert_general_share": -0.1}, r"pipeline\.expert_general_share"),
        ({"expert_lr_floor": 0.0}, r"pipeline\.expert_lr_floor.*\(0, 1\]"),
        ({"expert_lr_floor": 1.5}, r"pipeline\.expert_lr_floor"),
        ({"expert_checkpoint_step": -1}, r"pipeline\.expert_checkpoint_step.*>= 0"),
        ({"expert_checkpoint_step": 9, "expert_steps": 3}, r"pipeline\.expert_checkpoint_step.*pipeline\.expert_steps = 3"),
        ({"expert_schedule": "linear"}, r"pipeline\.expert_schedule.*constant"),
    ],
)
def test_bad_recipe_values_name_the_field(tmp_path, pipeline, message):
    with pytest.raises(ConfigError, match=message):
        tiny(tmp_path, **pipeline)


def test_recipe_fields_change_the_run_folder(tmp_path):
    from mergemix_jax.pipeline import run_dir_for

    folders = {run_dir_for(tiny(tmp_path, **p)) for p in ({}, {"expert_general_share": 0.5}, {"expert_schedule": "cosine"}, {"expert_lr_floor": 0.5}, {"expert_checkpoint_step": 2})}
    assert len(folders) == 5


@pytest.mark.slow  # trains a base and diluted experts
def test_experts_are_merged_from_the_chosen_checkpoint_step(tmp_path):
    config = tiny(tmp_path, expert_steps=4, expert_checkpoint_step=2, base_steps=2)
    run = tmp_path / "run"
    training.train_unless_finished(training.base_config(config, run))
    out = training.expert_dirs(config, run)[0]
    training.train_unless_finished(training.expert_config(config, run, out, config.data.domains[0].name))
    step = training.expert_step(config, [out])
    assert step == 2
    stack, _ = load_expert_stack(run / "base", [out], config.model, step=step)
    at_two, _ = load_params(out, config.model, step=2)
    final, _ = load_params(out, config.model)
    assert_trees_close(jax.tree.map(lambda e: e[0], stack.experts), at_two)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(at_two), jax.tree.leaves(final), strict=True))
    missing = dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, expert_checkpoint_step=3))
    with pytest.raises(CheckpointError, match=r"pipeline\.expert_checkpoint_step=3.*saved steps are \[2, 4\]"):
        training.expert_step(missing, [out])


def test_searches_run_inside_the_region_diluted_experts_reach():
    """The search region w = s g + (1 - s) v: every v on the simplex lifts to a reachable mixture
    whose merge weights are v itself; without dilution the region is the trust floor's (the whole
    simplex at floor 0)."""
    from mergemix_jax.search.problem import synthetic_quadratic
    from mergemix_jax.search.trust import search_region

    problem, _ = synthetic_quadratic(4, "interior", seed=0)
    same, identity = search_region(problem, 0.0, None)
    assert same is problem and np.allclose(identity(np.eye(4)), np.eye(4))
    dilution = make_dilution(0.5, [0.25] * 4)
    region, to_weights = search_region(problem, 0.0, dilution.share * np.asarray(dilution.general))
    v = np.random.default_rng(0).dirichlet(np.ones(4), size=8)
    w = to_weights(v)
    assert not unreachable_rows(w, dilution).any()
    np.testing.assert_allclose(np.asarray(merge_coefficients(w, dilution)), v, atol=1e-5)
    np.testing.assert_allclose(float(region.objective(jnp.asarray(v[0], jnp.float32))), float(problem.objective(jnp.asarray(w[0], jnp.float32))), rtol=1e-5)


def test_verification_candidates_are_only_mixtures_the_diluted_merge_reaches(tmp_path):
    from types import SimpleNamespace

    from mergemix_jax.verify.stage import reachable

    diluted, pure = SimpleNamespace(config=tiny(tmp_path, expert_general_share=0.5)), SimpleNamespace(config=tiny(tmp_path))
    assert reachable(diluted, np.full(3, 1 / 3)) and not reachable(diluted, np.asarray([0.5, 0.5, 0.0]))
    assert reachable(pure, np.asarray([0.5, 0.5, 0.0]))


def test_verification_without_reachable_candidates_trains_only_the_baselines():
    from mergemix_jax.verify.stage import first_round, next_calibrated

    assert first_round(None, [], [], None) == [] and next_calibrated(None, [], [], None) is None
