"""Evaluating merged models: fixed-token suites, batched scoring of many mixtures, the quadratic proxy."""

from mergemix_jax.eval.api import (
    build_suite,
    chunk_scorer_for,
    evaluate_mixtures,
    load_expert_stack,
    merge_fn_from_config,
)
from mergemix_jax.eval.batched import iter_scores, make_chunk_scorer, merge_fn_for, score_mixtures, score_one
from mergemix_jax.eval.quadratic import QuadraticModel, fit_quadratic, quadratic_scores
from mergemix_jax.eval.results import ResultsFileError, open_results, read_results
from mergemix_jax.eval.suite import EvalSuite, evaluate, make_suite, metric_names, smooth_metric_names
from mergemix_jax.eval.tasks import TaskArrays, tokenize_task

__all__ = [
    "EvalSuite",
    "QuadraticModel",
    "ResultsFileError",
    "TaskArrays",
    "build_suite",
    "chunk_scorer_for",
    "evaluate",
    "evaluate_mixtures",
    "fit_quadratic",
    "iter_scores",
    "load_expert_stack",
    "make_chunk_scorer",
    "make_suite",
    "merge_fn_for",
    "merge_fn_from_config",
    "metric_names",
    "open_results",
    "quadratic_scores",
    "read_results",
    "score_mixtures",
    "score_one",
    "smooth_metric_names",
    "tokenize_task",
]
