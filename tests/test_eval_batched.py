"""Batched scoring = a loop of single merges; sharded over 8 devices = unsharded; resumable results files."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mergemix_jax.eval.api as api
from mergemix_jax.config import EvalConfig, MeshConfig, ModelConfig
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import (
    ResultsFileError,
    chunk_scorer_for,
    evaluate_mixtures,
    make_suite,
    read_results,
    score_mixtures,
    score_one,
    tokenize_task,
)
from mergemix_jax.eval.batched import merge_fn_for, shard_expert_stack
from mergemix_jax.merge import build_expert_stack, sample_dirichlet
from mergemix_jax.model import init_params
from mergemix_jax.parallel.mesh import build_mesh
from tests.helpers import TINY_MODEL
from tests.test_eval_tasks import MC, QA, TOK

CFG = ModelConfig(**TINY_MODEL)
K = 3
EVAL = EvalConfig(mixtures_per_device=4)  # one chunk shape for every test here


@pytest.fixture(scope="module")
def setup():
    base = init_params(CFG, 0)
    rng = np.random.default_rng(0)
    experts = [jax.tree.map(lambda b: b + jnp.asarray(0.05 * rng.standard_normal(b.shape), b.dtype), base) for _ in range(K)]
    stack = build_expert_stack(base, experts, ["code", "web", "math"])
    tokens = rng.integers(1, 64, (4, 13)).astype(np.int32)
    heldout = batch_from_sequences(tokens)
    suite = make_suite({"web": heldout}, {"mc": tokenize_task(MC, TOK, "mc"), "qa": tokenize_task(QA, TOK, "qa")})
    return stack, suite, chunk_scorer_for(CFG, EVAL)  # the scorer evaluate_mixtures reuses: compiled once


def test_batched_scores_equal_a_loop_of_single_merges(setup):
    stack, suite, scorer = setup
    weights = sample_dirichlet(7, K, seed=1)  # 7 = one full chunk of 4 plus a padded chunk
    batched = score_mixtures(CFG, stack, weights, suite, mixtures_per_device=4, scorer=scorer)
    single = jax.jit(lambda w: score_one(CFG, stack, w, suite))
    for b, w in enumerate(weights):
        for name, value in single(w).items():
            np.testing.assert_allclose(batched[name][b], value, rtol=2e-5, atol=1e-6, err_msg=f"{name} row {b}")
    assert len({round(float(x), 6) for x in batched["loss/web"]}) == 7  # mixtures really differ


def test_sharded_over_8_devices_equals_unsharded(setup):
    stack, suite, scorer = setup
    assert jax.device_count() == 8
    mesh = build_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    weights = sample_dirichlet(11, K, seed=2)
    sharded = score_mixtures(CFG, stack, weights, suite, mixtures_per_device=1, mesh=mesh)
    plain = score_mixtures(CFG, stack, weights, suite, mixtures_per_device=4, scorer=scorer)
    for name in plain:
        np.testing.assert_allclose(sharded[name], plain[name], rtol=2e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow  # sharded scorer compiled on 8 devices
def test_fsdp_sharded_experts_equal_unsharded(setup, tmp_path):
    stack, suite, scorer = setup
    mesh = build_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    placed = shard_expert_stack(CFG, stack, mesh)
    up = placed.experts["blocks"][0]["mlp"]["w_up_DxF"]
    assert up.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert up.addressable_shards[0].data.shape == (K, CFG.d_model // 4, CFG.d_ff // 2)  # 1/8 per device
    weights = sample_dirichlet(5, K, seed=5)
    eval_cfg = dataclasses.replace(EVAL, shard_experts=True, mixtures_per_device=2)
    evaluate_mixtures(CFG, stack, weights, suite, tmp_path / "fsdp.csv", eval_cfg, mesh=mesh, progress=False)
    sharded = read_results(tmp_path / "fsdp.csv")
    plain = score_mixtures(CFG, stack, weights, suite, mixtures_per_device=4, scorer=scorer)
    for name in plain:
        np.testing.assert_allclose(sharded[name], plain[name], rtol=2e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow  # TIES merge compiled into the batched scorer
def test_ties_merge_runs_batched(setup):
    stack, suite, scorer = setup
    weights = sample_dirichlet(2, K, seed=3)
    ties = score_mixtures(CFG, stack, weights, suite, mixtures_per_device=4, merge_fn=merge_fn_for("ties", density=0.5))
    linear = score_mixtures(CFG, stack, weights, suite, mixtures_per_device=4, scorer=scorer)
    assert np.isfinite(ties["loss/web"]).all() and not np.allclose(ties["loss/web"], linear["loss/web"])


def test_interrupted_job_resumes_without_rescoring_or_losing_rows(setup, tmp_path, monkeypatch):
    stack, suite, _ = setup
    out = tmp_path / "results.csv"
    weights = sample_dirichlet(10, K, seed=4)
    cfg = EVAL
    full = evaluate_mixtures(CFG, stack, weights, suite, tmp_path / "reference.csv", cfg, progress=False)
    assert full["scored"] == 10

    real_append, calls = api.append_results, []

    def crash_on_second_chunk(*args, **kwargs):
        calls.append(list(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_append(*args, **kwargs)

    monkeypatch.setattr(api, "append_results", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        evaluate_mixtures(CFG, stack, weights, suite, out, cfg, progress=False)
    monkeypatch.setattr(api, "append_results", real_append)
    assert read_results(out)["row"].tolist() == [0, 1, 2, 3]
    with open(out, "a") as f:
        f.write("4,abc,0.1")  # a write torn by the crash
    scored_rows = []
    real_iter = api.iter_scores
    monkeypatch.setattr(api, "iter_scores", lambda *a, **k: (scored_rows.extend(k["rows"].tolist()), real_iter(*a, **k))[1])
    resumed = evaluate_mixtures(CFG, stack, weights, suite, out, cfg, progress=False)
    assert (resumed["skipped"], resumed["scored"]) == (4, 6) and scored_rows == list(range(4, 10))
    got, want = read_results(out), read_results(tmp_path / "reference.csv")
    assert got["row"].tolist() == list(range(10))
    for name in want:
        if name == "weights_hash":
            assert got[name].tolist() == want[name].tolist()
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=name)
    again = evaluate_mixtures(CFG, stack, weights, suite, out, cfg, progress=False)
    assert (again["skipped"], again["scored"]) == (10, 0)


def test_results_file_of_another_job_or_corrupt_is_refused(setup, tmp_path):
    stack, suite, _ = setup
    out = tmp_path / "r.csv"
    weights = sample_dirichlet(3, K, seed=5)
    evaluate_mixtures(CFG, stack, weights, suite, out, EVAL, progress=False)
    with pytest.raises(ResultsFileError, match="row 0 was scored for other weights"):
        evaluate_mixtures(CFG, stack, sample_dirichlet(3, K, seed=6), suite, out, progress=False)
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], lines[1], "1,deadbeef,not-a-number", *lines[3:]]) + "\n")
    with pytest.raises(ResultsFileError, match=r"line 3.*corrupt"):
        evaluate_mixtures(CFG, stack, weights, suite, out, progress=False)
    with pytest.raises(ResultsFileError, match=r"columns .* differ"):
        evaluate_mixtures(CFG, stack, weights, suite, out, proxy="quadratic", progress=False)
