"""The engine: ONE path from a Config to what every command scores with.

`Engine(config, run_dir)` (a pipeline run folder) or `Engine.from_checkpoints(config, base, experts)`
(any train run folders) loads the expert stack, builds the evaluation suite and the configured mesh,
places the stack on it (replicated, mixtures split over the devices; or sharded like the model's
parameters with `eval.shard_experts`), and offers the merge function, the search problem and an
exact, resumable scorer. `mergemix run`, `search`, `validate`, `eval-mixtures` and notebooks use it
alike, so they score on the same devices the same way. Relative `eval.task_dir` and data paths are
resolved against the config file by `load_config`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.eval import (
    build_suite,
    evaluate_mixtures,
    load_expert_stack,
    merge_fn_from_config,
    metric_names,
)
from mergemix_jax.eval.batched import MergeFn, replicate, shard_expert_stack
from mergemix_jax.eval.results import read_table
from mergemix_jax.merge.dilution import unreachable_rows
from mergemix_jax.merge.stack import ExpertStack
from mergemix_jax.parallel.mesh import configured_mesh
from mergemix_jax.parallel.multihost import is_writer, sync
from mergemix_jax.runkit import training
from mergemix_jax.runkit.mixtures import natural_prior
from mergemix_jax.runkit.problem import utility_weights
from mergemix_jax.search.merged import merged_problem, parse_metric_weights
from mergemix_jax.search.problem import SearchProblem, parse_synthetic, synthetic_quadratic

log = logging.getLogger(__name__)


class Engine:
    """The loaded experts (placed on the mesh), the evaluation suite and the search problem, built once
    per process. Attributes: config, run_dir, mesh, stack, model_cfg, suite (host arrays, so it also
    scores single-device models; the scorers replicate it on the mesh), metrics, weights (the
    utility's metric weights), merge_fn; `problem` is built on first use."""

    def __init__(
        self,
        config: Config,
        run_dir: Path | None = None,
        *,
        base_dir: str | os.PathLike | None = None,
        expert_dirs: Sequence[str | os.PathLike] | None = None,
        mesh: jax.sharding.Mesh | str | None = "config",
    ):
        if base_dir is None or expert_dirs is None:
            if run_dir is None:
                raise ValueError("Engine needs a pipeline run folder or base_dir and expert_dirs")
            base_dir, expert_dirs = training.base_dir(config, run_dir), training.expert_dirs(config, run_dir)
        self.config, self.run_dir = config, run_dir
        training.check_scorable(config, expert_dirs)  # finished experts, tokenizer ids within model.vocab_size
        self.mesh = configured_mesh(config.mesh) if isinstance(mesh, str) else mesh
        stack, self.model_cfg = load_expert_stack(base_dir, expert_dirs, config.model, step=training.expert_step(config, expert_dirs))
        stack = training.dilute_stack(config, stack)  # DeMix components: merge weights dilution-corrected
        self.shard_experts = config.eval.shard_experts and self.mesh is not None
        self.stack = shard_expert_stack(self.model_cfg, stack, self.mesh) if self.shard_experts else replicate(stack, self.mesh)
        self.suite = build_suite(dataclasses.replace(config, model=self.model_cfg))  # placed by each scorer
        self.metrics = metric_names(self.suite)
        self.weights = utility_weights(config.pipeline.utility, self.metrics)
        self.merge_fn: MergeFn = merge_fn_from_config(config.eval)

    @classmethod
    def from_checkpoints(
        cls, config: Config, base_dir: str | os.PathLike, expert_dirs: Sequence[str | os.PathLike], mesh: jax.sharding.Mesh | str | None = "config"
    ) -> Engine:
        """An engine over any base and expert train run folders (the experts are named by folder)."""
        return cls(config, base_dir=base_dir, expert_dirs=expert_dirs, mesh=mesh)

    @property
    def domains(self) -> tuple[str, ...]:
        return self.stack.names

    @functools.cached_property
    def utility(self):
        """The run's utility (runkit/utility.py RunUtility): `pipeline.utility`'s metrics normalised by
        `search.normalise` with maps fitted once on the probe table and saved in <run>/eval/utility.json;
        every stage that ranks mixtures (search, select, verify, validate) scores through it."""
        from mergemix_jax.runkit.utility import run_utility

        return run_utility(self.config, self.run_dir, self.weights)

    @functools.cached_property
    def problem(self) -> SearchProblem:
        """The merged search problem: the utility's smooth metrics as objective, every metric scored."""
        return self.search_problem(self.weights, prior=natural_prior(self.config))

    def search_problem(self, metric_weights: dict[str, float], prior: np.ndarray | None = None, groups: str = "") -> SearchProblem:
        """A merged search problem on this engine's stack, suite, mesh and merge (see search.merged)."""
        e = self.config.eval
        if groups and e.merge != "linear":
            raise ValueError(f"per-{groups} weights need eval.merge=linear, the config has {e.merge!r}")
        return merged_problem(
            self.model_cfg, self.stack, self.suite, metric_weights, merge_fn=self.merge_fn, prior=prior,
            mixtures_per_device=e.mixtures_per_device, mesh=self.mesh, groups=groups, merge_scale=e.merge_scale,
            shard_experts=self.shard_experts, mixtures_per_step=e.mixtures_per_step,
        )  # fmt: skip

    def evaluate(self, weights_BxK: np.ndarray, out: str | os.PathLike, proxy: str = "exact", progress: bool | None = None) -> dict:
        """Score every mixture into the resumable CSV `out` (see eval.evaluate_mixtures); the summary.
        With diluted experts, mixtures out of their reach are merged with clipped weights (a warning).
        Multi-host: every process scores, process 0 writes, and all wait until the CSV is written."""
        progress = self.config.train.progress if progress is None else progress
        warn_unreachable(self.stack, weights_BxK, str(out))
        summary = evaluate_mixtures(self.model_cfg, self.stack, weights_BxK, self.suite, out, self.config.eval, proxy, self.mesh, progress=progress and is_writer())
        sync(f"scored {out}")
        return summary

    def score_table(self, weights_BxK: np.ndarray, out: Path) -> dict:
        """Score every mixture exactly into the resumable CSV `out`; returns the table (see read_table)."""
        self.evaluate(weights_BxK, out)
        return read_table(out, self.domains)


def problem_from_checkpoints(
    config, base_dir: str, expert_dirs: list[str], metrics: str = "loss/mean", groups: str = "", mesh: jax.sharding.Mesh | str | None = "config"
) -> SearchProblem:
    """Load the base and experts (train run folders) and the config's evaluation suite into a problem,
    on the configured mesh (`mesh="config"`; None = one device) with the eval section's merge,
    chunking and expert sharding.

    The experts are named by folder; name each folder after its data domain so the mixture file's
    weights key the grain/seqio exports by domain.
    """
    engine = Engine.from_checkpoints(config, base_dir, expert_dirs, mesh=mesh)
    return engine.search_problem(parse_metric_weights(metrics), groups=groups)


def build_problem(
    synthetic: str | None = None,
    seed: int = 0,
    config=None,
    base_dir: str = "",
    expert_dirs: list[str] | None = None,
    metrics: str = "loss/mean",
    groups: str = "",
) -> tuple[SearchProblem, np.ndarray | None]:
    """The problem the CLI searches, and its known optimum (synthetic only, else None).

    `synthetic` ("quadratic:K[:kind]") builds a problem with a known optimum; otherwise the base and
    expert checkpoints are merged and scored by the config's evaluation suite (search.merged).
    """
    if synthetic:
        return synthetic_quadratic(seed=seed, **parse_synthetic(synthetic))
    if config is None or not base_dir or not expert_dirs:
        raise ValueError(
            "give --config, --base and --experts to search over merged experts, "
            "or use --synthetic quadratic:K to run a search on a synthetic problem"
        )
    return problem_from_checkpoints(config, base_dir, list(expert_dirs), metrics, groups=groups), None


def warn_unreachable(stack: ExpertStack, weights_BxK: np.ndarray, what: str) -> int:
    """Warn (and return how many) when mixtures lie outside what a merge of the stack's diluted
    experts can reach (some a_k < share * general_k): they are merged with clipped weights."""
    rows = unreachable_rows(weights_BxK, stack.dilution)
    if rows.any():
        d = stack.dilution
        log.warning(
            "%s: %d of %d mixtures give some domain less than share x general (%g x %s), which no merge of experts "
            "trained with pipeline.expert_general_share=%g reaches; they are merged with the corrected weights clipped at 0 (the nearest reachable merge)",
            what, int(rows.sum()), len(rows), d.share, np.round(d.general, 3).tolist(), d.share,
        )  # fmt: skip
    return int(rows.sum())

