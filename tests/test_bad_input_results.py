"""Issue 14, cases 2 and 3: a results file or score cache is never continued under other settings, and a
weights file is never read by guessing (off-simplex rows, extra or repeated columns)."""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mergemix_jax.config import EvalConfig, ModelConfig, config_from_dict
from mergemix_jax.data import batch_from_sequences
from mergemix_jax.eval import evaluate_mixtures, make_suite
from mergemix_jax.eval.results import ResultsFileError, open_results, result_columns, settings_path
from mergemix_jax.eval.weights_file import WeightsFileError, read_weights_file
from mergemix_jax.merge import build_expert_stack
from mergemix_jax.model import init_params
from mergemix_jax.search.cache import CachedScorer, ScoreCacheError, search_settings
from tests.helpers import TINY_MODEL

CFG = ModelConfig(**TINY_MODEL)
EVAL = EvalConfig(mixtures_per_device=4)
WEIGHTS = np.array([[0.5, 0.5], [1.0, 0.0]], np.float32)


@pytest.fixture(scope="module")
def stack_and_suite():
    base = init_params(CFG, 0)
    rng = np.random.default_rng(0)
    experts = [jax.tree.map(lambda b: b + jnp.asarray(0.05 * rng.standard_normal(b.shape), b.dtype), base) for _ in range(2)]
    suite = make_suite({"web": batch_from_sequences(rng.integers(1, 64, (4, 13)).astype(np.int32))})
    return build_expert_stack(base, experts, ["code", "web"]), suite


# ---------------------------------------------------------------- case 2: results files


def test_results_file_refuses_another_merge(stack_and_suite, tmp_path):
    stack, suite = stack_and_suite
    out = tmp_path / "r.csv"
    evaluate_mixtures(CFG, stack, WEIGHTS[:1], suite, out, EVAL, progress=False)
    before = out.read_text()
    ties = dataclasses.replace(EVAL, merge="ties")
    with pytest.raises(ResultsFileError, match=r"r.csv was begun with other evaluation settings.*merge \(eval.merge\): 'linear' in the file, 'ties' now.*new --out file or delete"):
        evaluate_mixtures(CFG, stack, WEIGHTS, suite, out, ties, progress=False)
    assert out.read_text() == before  # nothing appended
    resumed = evaluate_mixtures(CFG, stack, WEIGHTS, suite, out, dataclasses.replace(EVAL, mixtures_per_device=2), progress=False)
    assert (resumed["scored"], resumed["skipped"]) == (1, 1)  # speed settings do not count


def test_results_file_refuses_another_suite_or_other_parameters(stack_and_suite, tmp_path):
    stack, suite = stack_and_suite
    out = tmp_path / "r.csv"
    evaluate_mixtures(CFG, stack, WEIGHTS[:1], suite, out, EVAL, progress=False)
    fewer = make_suite({"web": jax.tree.map(lambda x: x[:2], suite.heldout["web"])})  # e.g. eval.heldout_sequences=2
    with pytest.raises(ResultsFileError, match=r"suite \(the evaluation data .*eval.heldout_sequences"):
        evaluate_mixtures(CFG, stack, WEIGHTS, fewer, out, EVAL, progress=False)
    retrained = dataclasses.replace(stack, experts=jax.tree.map(lambda e: e * 1.01, stack.experts))
    with pytest.raises(ResultsFileError, match=r"expert_params \(the expert parameters \(--experts\)\)"):
        evaluate_mixtures(CFG, retrained, WEIGHTS, suite, out, EVAL, progress=False)


def test_results_file_of_an_older_mergemix_is_resumed_with_a_warning(tmp_path, caplog):
    columns = result_columns(["code", "web"], ["loss/mean"])
    out = tmp_path / "old.csv"
    out.write_text("row,weights_hash,w/code,w/web,loss/mean\n0,aa,0.5,0.5,2.0\n")
    with caplog.at_level(logging.WARNING):
        assert open_results(out, columns, {"merge": "linear"}) == {0: "aa"}
    assert "records no evaluation settings" in caplog.text
    assert settings_path(out).is_file()
    with pytest.raises(ResultsFileError, match="merge"):
        open_results(out, columns, {"merge": "ties"})


# ---------------------------------------------------------------- case 2: the search score cache


def _scorer(weights_BxK):
    return {"loss/mean": np.asarray(weights_BxK, np.float64) @ np.array([1.0, 2.0])}


def test_score_cache_refuses_scores_of_another_search(tmp_path):
    config = config_from_dict({})
    path = tmp_path / "scores.jsonl"
    linear = search_settings(config, {"merged": ["code", "web"]}, str(tmp_path / "base"), [str(tmp_path / "code")])
    CachedScorer(_scorer, path, linear)(WEIGHTS)
    again = CachedScorer(_scorer, path, linear)
    again(WEIGHTS)
    assert (again.hits, again.misses) == (2, 0)
    ties = search_settings(config_from_dict({"eval": {"merge": "ties"}}), {"merged": ["code", "web"]}, str(tmp_path / "base"), [str(tmp_path / "code")])
    with pytest.raises(ScoreCacheError, match=r"scores.jsonl holds scores of another search.*eval \(the evaluation settings.*'merge': 'ties'.*new --cache file"):
        CachedScorer(_scorer, path, ties)
    speed_only = search_settings(config_from_dict({"eval": {"mixtures_per_device": 2}}), {"merged": ["code", "web"]}, str(tmp_path / "base"), [str(tmp_path / "code")])
    CachedScorer(_scorer, path, speed_only)  # not a different search


def test_score_cache_drops_a_partial_last_line_from_the_file(tmp_path):
    path = tmp_path / "scores.jsonl"
    CachedScorer(_scorer, path)(WEIGHTS)
    path.write_text(path.read_text() + '{"hash": "ab')  # killed mid-append
    cached = CachedScorer(_scorer, path)
    cached(np.array([[0.25, 0.75]]))
    assert len(CachedScorer(_scorer, path).cache) == 3  # the new line was not glued to the partial one


# ---------------------------------------------------------------- case 3: weights files


def weights_file(tmp_path, text, **kwargs):
    path = tmp_path / "w.csv"
    path.write_text(text)
    return read_weights_file(path, ["code", "web", "math", "dialogue"], **kwargs)


@pytest.mark.parametrize(
    "text, message",
    [
        ("code,web,math,dialogue\n5,5,5,5\n", r"w.csv line 2: the weights \[5.0, 5.0, 5.0, 5.0\] sum to 20, not 1.*--normalize-weights"),
        ("5,5,5,5\n", r"line 1: the weights .* sum to 20, not 1"),
        ("code,web,math,dialogue\n0.25,0.25,0.25,0.25,0.1\n", r"w.csv line 2: 5 values, but the header names 4 columns"),
        ("code,web,math,dialogue,code\n0.25,0.25,0.25,0.25,0\n", r"the header names \['code'\] more than once"),
        ("0.5,0.5\n", r"line 1: 2 values, but there are 4 experts"),
        ("code,web,math,dialogue\n", r"a header but no weight rows"),
        ("code,web,math,dialogue\n0.5,0.5,0,-0\n0.5,0.6,-0.1,0\n", r"row 1 has a negative weight"),
    ],
)
def test_weights_file_refuses_what_it_would_have_to_guess(tmp_path, text, message):
    with pytest.raises(WeightsFileError, match=message):
        weights_file(tmp_path, text)


def test_weights_file_reads_legitimate_files(tmp_path, caplog):
    rows = weights_file(tmp_path, "dialogue,math,web,code\n0.1,0.2,0.3,0.4\n")  # columns by name, any order
    np.testing.assert_allclose(rows, [[0.4, 0.3, 0.2, 0.1]])
    with caplog.at_level(logging.WARNING):
        labelled = weights_file(tmp_path, "code,web,math,dialogue,note\n0.25,0.25,0.25,0.25,even\n")
    np.testing.assert_allclose(labelled, [[0.25] * 4])
    assert "columns ['note'] name no expert" in caplog.text
    results = "row,weights_hash,w/code,w/web,w/math,w/dialogue,loss/mean\n0,aa,0.25,0.25,0.25,0.25,3.1\n"
    np.testing.assert_allclose(weights_file(tmp_path, results), [[0.25] * 4])  # a results file's mixtures
    with caplog.at_level(logging.WARNING):
        normalized = weights_file(tmp_path, "5,5,5,5\n", normalize=True)
    np.testing.assert_allclose(normalized, [[0.25] * 4])
    assert "divided each by its sum (--normalize-weights)" in caplog.text
