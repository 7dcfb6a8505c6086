"""Every command scores on the configured mesh: the engine behind `run`, `search`, `validate` and
`eval-mixtures` splits mixtures over the 8 test devices (or shards the experts with
eval.shard_experts), and its probe table, validate's proxy table and a gradient search equal the
same engine on one device."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import load_config
from mergemix_jax.config.schema import GradientSearchConfig
from mergemix_jax.pipeline import run_pipeline
from mergemix_jax.pipeline.stages import probe_weights
from mergemix_jax.runkit import mixtures, training
from mergemix_jax.runkit.engine import Engine, problem_from_checkpoints
from mergemix_jax.search.gradient import gradient_search
from tests.pipeline_helpers import tiny_pipeline_raw, write_config

pytestmark = pytest.mark.slow  # a pipeline to the experts, then scoring and search compiled on 8 devices

OPTIONS = GradientSearchConfig(steps=4, chunk=2, restarts=2, rel_tol=0.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(config, run folder) of a tiny pipeline stopped after its base and three experts."""
    folder = tmp_path_factory.mktemp("mesh")
    config = load_config(write_config(folder, tiny_pipeline_raw(folder)))
    return config, run_pipeline(config, stop_after="experts")


@pytest.fixture(scope="module")
def engines(run):
    config, run_dir = run
    sharded = dataclasses.replace(config, eval=dataclasses.replace(config.eval, shard_experts=True))
    return {"1 device": Engine(config, run_dir, mesh=None), "8 devices": Engine(config, run_dir), "sharded": Engine(sharded, run_dir)}


def _weights(config, k: int) -> np.ndarray:
    """The probe mixtures plus validate's sampled mixtures."""
    probe, _ = probe_weights(config, k)
    spread, _ = mixtures.spread_mixtures(k, 3, 1.0, seed=5)
    return np.concatenate([probe, spread])


def test_engines_use_the_configured_mesh(engines):
    assert engines["1 device"].mesh is None
    assert engines["8 devices"].mesh.size == 8 and not engines["8 devices"].shard_experts
    assert engines["8 devices"].stack.base["embed_VxD"].sharding.is_fully_replicated  # mixtures split, experts copied
    sharded = engines["sharded"]
    assert sharded.shard_experts and not sharded.stack.base["embed_VxD"].sharding.is_fully_replicated
    assert "fsdp" in str(sharded.stack.experts["embed_VxD"].sharding.spec)  # split like the model's parameters


@pytest.mark.parametrize("name", ["8 devices", "sharded"])
def test_probe_and_validate_tables_equal_one_device(engines, name, tmp_path):
    one, many = engines["1 device"], engines[name]
    weights = _weights(one.config, len(one.domains))
    expected = one.score_table(weights, tmp_path / "one.csv")
    got = many.score_table(weights, tmp_path / "many.csv")
    np.testing.assert_allclose(got["weights"], expected["weights"])
    assert got["metrics"].keys() == expected["metrics"].keys()
    for metric, values in expected["metrics"].items():
        np.testing.assert_allclose(got["metrics"][metric], values, rtol=2e-5, err_msg=metric)


@pytest.mark.parametrize("name", ["8 devices", "sharded"])
def test_gradient_search_equals_one_device(engines, name):
    expected = gradient_search(engines["1 device"].problem, OPTIONS)
    got = gradient_search(engines[name].problem, OPTIONS)
    np.testing.assert_allclose(got.weights, expected.weights, atol=2e-5)
    np.testing.assert_allclose(got.trace, expected.trace, rtol=2e-5)
    np.testing.assert_allclose(got.objective, expected.objective, rtol=2e-5)


def test_search_command_builds_its_problem_through_the_engine(run, engines):
    """`mergemix search --config --base --experts` (problem_from_checkpoints): the configured mesh, the same objective."""
    config, run_dir = run
    problem = problem_from_checkpoints(config, training.base_dir(config, run_dir), training.expert_dirs(config, run_dir))
    assert problem.domains == engines["8 devices"].domains
    w = jnp.full(len(problem.domains), 1 / len(problem.domains), jnp.float32)
    data = problem.objective.data[0].base["embed_VxD"]
    assert data.sharding.num_devices == 8  # placed on the configured mesh
    np.testing.assert_allclose(float(problem.objective(w)), float(engines["1 device"].problem.objective(w)), rtol=2e-5)
