"""What `mergemix run` feeds its searches: repetition caps from token counts and data.max_epochs,
and the probe table as mixtures already scored."""

import logging
from types import SimpleNamespace

import numpy as np

from mergemix_jax.config import load_config
from mergemix_jax.data import token_counts
from mergemix_jax.pipeline.assembly import search_problem
from mergemix_jax.runkit.utility import RunUtility
from mergemix_jax.search.problem import synthetic_quadratic
from tests.pipeline_helpers import write_corpus


def fake_engine(tmp_path, *overrides):
    domains = write_corpus(tmp_path / "corpus", docs=20)
    specs = ", ".join(f"{{name: {d['name']}, paths: [{d['paths'][0]}], format: jsonl}}" for d in domains)
    config = load_config(None, [f"data.domains=[{specs}]", "train.steps=10", "train.batch_size=4", "train.seq_len=32", *overrides])
    problem, _ = synthetic_quadratic(3, seed=0)
    problem = problem.__class__(**{**problem.__dict__, "domains": tuple(d["name"] for d in domains)})
    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    utility = RunUtility({"loss/mean": 1.0})  # the run's utility (runkit/utility.py), as Engine.utility gives it
    return SimpleNamespace(config=config, problem=problem, domains=problem.domains, run_dir=run_dir, weights={"loss/mean": 1.0}, metrics=["loss/mean"], utility=utility)


def test_caps_come_from_token_counts_max_epochs_and_the_final_runs_tokens(tmp_path):
    engine = fake_engine(tmp_path, "data.max_epochs=2")
    problem, note = search_problem(engine)
    counts = token_counts(engine.config.data)
    tokens = np.asarray([counts[d]["train"] for d in engine.domains], np.float64)
    np.testing.assert_allclose(problem.caps, np.minimum(2 * tokens / (10 * 4 * 32), 1.0), rtol=1e-6)
    assert note["token_budget"] == 10 * 4 * 32 and note["observed_mixtures"] == 0 and problem.observed is None
    off, note = search_problem(fake_engine(tmp_path / "off", "search.caps=false"))
    assert off.caps is None and note["caps"] is None


def test_infeasible_caps_are_reported_and_the_search_runs_uncapped(tmp_path, caplog):
    engine = fake_engine(tmp_path, "data.max_epochs=0.01")
    with caplog.at_level(logging.WARNING):
        problem, note = search_problem(engine)
    assert problem.caps is None and note["caps"].startswith("infeasible") and "searching without caps" in caplog.text
