"""The output-space ensemble proxy: cached expert log-probabilities, log-sum-exp over experts."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mergemix_jax.eval import ensemble, evaluate, make_suite
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.model import forward, init_params
from tests.helpers import tiny_config
from tests.test_diagnostics_hvp import _batch


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config().model
    base = init_params(cfg, 0)
    experts = [init_params(cfg, s) for s in (1, 2, 3)]
    stack = build_expert_stack(base, experts, ("a", "b", "c"))
    batch = _batch(3)
    batch["loss_mask"][0, :5] = 0.0  # masked tokens must not count
    suite = make_suite({"a": batch, "b": _batch(4, rows=6)}, micro_batch=4)
    return cfg, experts, stack, suite


def _probability_average(cfg, experts, batch, w) -> float:
    """The definition: -masked mean log sum_k w_k softmax(logits_k)[target]."""
    probs = [np.asarray(jax.nn.softmax(forward(cfg, p, batch["inputs"], batch["positions"], batch["segment_ids"])), np.float64) for p in experts]
    mixed = sum(wk * pk for wk, pk in zip(w, probs, strict=True))
    p_target = np.take_along_axis(mixed, np.asarray(batch["targets"])[..., None], axis=-1)[..., 0]
    mask = np.asarray(batch["loss_mask"], np.float64)
    return float(-(np.log(p_target) * mask).sum() / mask.sum())


def test_ensemble_equals_direct_probability_averaging(tiny):
    cfg, experts, stack, suite = tiny
    weights = np.array([[0.3, 0.7, 0.0], [0.2, 0.3, 0.5]])
    got = ensemble.ensemble_metrics(cfg, stack, suite, weights)
    for n, w in enumerate(weights):
        for domain, batch in suite.heldout.items():
            np.testing.assert_allclose(got[f"loss/{domain}"][n], _probability_average(cfg, experts, batch, w), rtol=1e-5)
        np.testing.assert_allclose(got["loss/mean"][n], np.mean([got["loss/a"][n], got["loss/b"][n]]))
    assert set(got) == {"loss/a", "loss/b", "loss/mean"}


def test_one_hot_mixtures_are_each_experts_own_loss(tiny):
    cfg, experts, stack, suite = tiny
    got = ensemble.ensemble_metrics(cfg, stack, suite, np.eye(3))
    for k in range(3):
        own = evaluate(cfg, experts[k], suite)
        for name in ("loss/a", "loss/b", "loss/mean"):
            np.testing.assert_allclose(got[name][k], float(own[name]), rtol=1e-5)


def test_batched_equals_looped_and_backends_agree(tiny):
    cfg, _, stack, suite = tiny
    weights = np.random.default_rng(0).dirichlet(np.ones(3), 9)
    logprobs = ensemble.expert_logprobs(cfg, stack, suite)
    batched = logprobs.losses(weights, chunk_elements=50)  # several chunks per domain
    looped = [logprobs.losses(w[None]) for w in weights]
    on_device = logprobs.losses(weights, backend="jax", chunk_elements=50)
    for name in batched:
        np.testing.assert_allclose(batched[name], [r[name][0] for r in looped], rtol=1e-12)
        np.testing.assert_allclose(on_device[name], batched[name], rtol=1e-5)


def test_underflowing_tokens_fall_back_to_the_log_sum_exp():
    logp = np.array([[-0.1, -2000.0], [-3000.0, -0.5]])  # expert 0 holds token 0, expert 1 token 1
    got = ensemble.ExpertLogprobs(("x", "y"), {"d": logp}, {"d": np.ones(2)}).losses(np.array([[0.0, 1.0], [0.5, 0.5]]))
    np.testing.assert_allclose(got["loss/d"], [(3000.0 + 0.5) / 2, -(np.log(0.5 * np.exp(-0.1)) + np.log(0.5 * np.exp(-0.5))) / 2])


def test_cache_is_reused_without_forward_passes(tiny, tmp_path, monkeypatch):
    cfg, _, stack, suite = tiny
    weights = np.random.default_rng(1).dirichlet(np.ones(3), 5)
    first = ensemble.ensemble_metrics(cfg, stack, suite, weights, cache_dir=tmp_path)
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["0-a.npz", "1-b.npz", "2-c.npz"]

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran although the cache holds every expert")

    monkeypatch.setattr(ensemble, "one_expert_logprobs", no_forward)
    again = ensemble.ensemble_metrics(cfg, stack, suite, weights, cache_dir=tmp_path)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])


def test_cache_resumes_and_is_keyed_by_the_experts(tiny, tmp_path, monkeypatch):
    cfg, experts, stack, suite = tiny
    full = ensemble.expert_logprobs(cfg, stack, suite, tmp_path)
    (folder,) = tmp_path.iterdir()
    (folder / "1-b.npz").unlink()  # a job killed before expert 1 was saved
    computed = []
    real = ensemble.one_expert_logprobs
    monkeypatch.setattr(ensemble, "one_expert_logprobs", lambda c, s, q, k: computed.append(k) or real(c, s, q, k))
    resumed = ensemble.expert_logprobs(cfg, stack, suite, tmp_path)
    assert computed == [1]
    np.testing.assert_array_equal(resumed.logp_KxT["a"], full.logp_KxT["a"])
    other = build_expert_stack(stack.base, [experts[0], experts[2], experts[1]], ("a", "b", "c"))  # same names, other params
    assert ensemble.cache_key(cfg, other, suite) != ensemble.cache_key(cfg, stack, suite)


def test_bad_weights_are_refused(tiny):
    cfg, _, stack, suite = tiny
    logprobs = ensemble.expert_logprobs(cfg, stack, suite)
    for bad, message in (([[0.5, 0.5]], r"\[N, 3\]"), ([[-1.0, 1.0, 1.0]], ">= 0"), ([[0.0, 0.0, 0.0]], "no positive weight")):
        with pytest.raises(ValueError, match=message):
            logprobs.losses(np.array(bad))


def test_on_a_mesh_replicated_or_sharded_experts_give_the_same_losses(tiny):
    from mergemix_jax.config import MeshConfig
    from mergemix_jax.eval.batched import replicate, shard_expert_stack
    from mergemix_jax.parallel.mesh import build_mesh

    cfg, _, stack, _ = tiny
    suite = make_suite({"a": _batch(5, rows=8), "b": _batch(6, rows=3)})  # 8 rows split over 8 devices; 3 not
    weights = np.random.default_rng(2).dirichlet(np.ones(3), 4)
    plain = ensemble.ensemble_metrics(cfg, stack, suite, weights)
    data_parallel = build_mesh(MeshConfig(data=2, fsdp=4, tensor=1))
    placed = ensemble.ensemble_metrics(cfg, replicate(stack, data_parallel), replicate(suite, data_parallel), weights)
    sharded_mesh = build_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    sharded = ensemble.ensemble_metrics(cfg, shard_expert_stack(cfg, stack, sharded_mesh), replicate(suite, sharded_mesh), weights)
    for name in plain:
        np.testing.assert_allclose(placed[name], plain[name], rtol=2e-5, err_msg=name)
        np.testing.assert_allclose(sharded[name], plain[name], rtol=2e-5, err_msg=name)


def test_evaluate_mixtures_with_the_ensemble_proxy_writes_the_held_out_loss_columns(tiny, tmp_path):
    from mergemix_jax.eval import evaluate_mixtures, read_results, tokenize_task
    from tests.test_eval_tasks import MC, TOK

    cfg, _, stack, suite = tiny
    weights = np.random.default_rng(3).dirichlet(np.ones(3), 6)
    out = tmp_path / "ensemble.csv"
    summary = evaluate_mixtures(cfg, stack, weights[:4], suite, out, proxy="ensemble", progress=False)
    assert summary["metrics"] == ["loss/a", "loss/b", "loss/mean"] and summary["scored"] == 4
    resumed = evaluate_mixtures(cfg, stack, weights, suite, out, proxy="ensemble", progress=False)
    assert (resumed["scored"], resumed["skipped"]) == (2, 4)
    table = read_results(out)
    direct = ensemble.ensemble_metrics(cfg, stack, suite, weights)
    for name in summary["metrics"]:
        np.testing.assert_allclose(table[name], direct[name], rtol=1e-6)
    assert (tmp_path / "ensemble-cache").is_dir()
    with_tasks = make_suite(suite.heldout, {"mc": tokenize_task(MC, TOK, "mc")})  # a choice task: nothing it defines
    assert evaluate_mixtures(cfg, stack, weights, with_tasks, tmp_path / "t.csv", proxy="ensemble", progress=False)["metrics"] == summary["metrics"]
    with pytest.raises(ValueError, match=r"neither.*exact proxy"):
        evaluate_mixtures(cfg, stack, weights, make_suite(tasks={"mc": tokenize_task(MC, TOK, "mc")}), tmp_path / "u.csv", proxy="ensemble", progress=False)


def test_exact_answer_nll_is_the_probability_average_over_answer_tokens(tiny):
    """answer_nll/<task> of the ensemble: the experts' own value at a vertex, and the per-item mean of
    -log sum_k w_k p_k(answer token) (items weighted equally whatever their length) inside."""
    from mergemix_jax.eval import tokenize_task
    from tests.test_eval_tasks import QA, TOK

    cfg, experts, stack, suite = tiny
    task = tokenize_task(QA, TOK, "qa")
    with_qa = make_suite(suite.heldout, {"qa": task})
    assert ensemble.ensemble_metric_names(with_qa) == ["loss/a", "loss/b", "loss/mean", "answer_nll/qa"]
    weights = np.vstack([np.eye(3), [[0.2, 0.3, 0.5]]])
    got = ensemble.ensemble_metrics(cfg, stack, with_qa, weights)
    for k in range(3):
        np.testing.assert_allclose(got["answer_nll/qa"][k], float(evaluate(cfg, experts[k], with_qa)["answer_nll/qa"]), rtol=1e-5)
    batch = {key: np.asarray(v) for key, v in task.batch.items()}
    per_item = [_probability_average(cfg, experts, {key: v[i : i + 1] for key, v in batch.items()}, weights[3]) for i in range(len(QA))]
    np.testing.assert_allclose(got["answer_nll/qa"][3], np.mean(per_item), rtol=1e-5)


def test_eval_proxy_is_checked_against_the_utility():
    from mergemix_jax.config import ConfigError

    assert tiny_config(eval={"proxy": "ensemble"}).eval.proxy == "ensemble"
    with pytest.raises(ConfigError, match=r"eval\.proxy"):
        tiny_config(eval={"proxy": "quadratic"})
    with pytest.raises(ConfigError, match=r"held-out losses and exact-answer NLLs only.*acc/mc"):
        tiny_config(eval={"proxy": "ensemble"}, pipeline={"utility": {"acc/mc": 1.0}})
    assert tiny_config(eval={"proxy": "ensemble", "task_dir": "tasks", "task_max_len": 64}, pipeline={"utility": {"answer_nll/qa": 1.0}}).eval.proxy == "ensemble"
