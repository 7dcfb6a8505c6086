"""The score cache: a rerun replays scored mixtures from disk and scores only new ones."""

import dataclasses

import numpy as np
import pytest

from mergemix_jax.search.cache import CachedScorer
from mergemix_jax.search.problem import synthetic_quadratic
from mergemix_jax.search.subsets import subset_search


class Counting:
    def __init__(self, score):
        self.score, self.rows = score, 0

    def __call__(self, w):
        self.rows += len(w)
        return self.score(w)


def test_rerun_resumes_from_the_cache_with_identical_results(tmp_path):
    problem, _ = synthetic_quadratic(4, "face", seed=0)
    first_scorer = Counting(problem.score)
    cached = CachedScorer(first_scorer, tmp_path / "scores.jsonl")
    first = subset_search(dataclasses.replace(problem, score=cached))
    assert first_scorer.rows == 15
    again_scorer = Counting(problem.score)
    reloaded = CachedScorer(again_scorer, tmp_path / "scores.jsonl")
    again = subset_search(dataclasses.replace(problem, score=reloaded))
    assert again_scorer.rows == 0 and reloaded.hits == 15
    np.testing.assert_array_equal(first.weights, again.weights)
    assert first.objective == again.objective


def test_repeated_rows_are_scored_once_and_a_cut_last_line_is_dropped(tmp_path):
    problem, _ = synthetic_quadratic(3, seed=1)
    scorer = Counting(problem.score)
    path = tmp_path / "scores.jsonl"
    cached = CachedScorer(scorer, path)
    w = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    out = cached(w)
    assert scorer.rows == 2 and out["loss"][0] == out["loss"][1]
    np.testing.assert_allclose(out["loss"], problem.score(w)["loss"])
    with path.open("a") as handle:
        handle.write('{"hash": "abc", "metr')  # an interrupted append
    assert len(CachedScorer(scorer, path).cache) == 2
    path.write_text('not json\n{"hash": "x", "metrics": {}}\n')
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        CachedScorer(scorer, path)
