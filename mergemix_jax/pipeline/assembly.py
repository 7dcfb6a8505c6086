"""The one assembly of a search problem from a config: `mergemix run` and `mergemix search` both use it.

From an Engine (the experts, suite and utility of a config) it builds what every search method
solves: the merged problem with the run's utility (pipeline.utility, normalised by search.normalise
on the probe table) and a gradient objective over smooth stand-ins; repetition caps from token
counts and data.max_epochs over the final run's tokens (search.caps, search.token_budget); the probe
table as mixtures already scored; the trust region (search.trust_floor, and the mixtures diluted
experts reach); and hierarchical search's clusters (search.hierarchical.clusters, else cut from the
task-vector cosines). Without a run folder (experts given as checkpoints) there is no probe table:
no normalisation, no earlier observations; everything else is the same. `SearchAssembly.run` runs one
method the way the pipeline does (inside the region when the method's registry entry says so).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mergemix_jax.config import Config
from mergemix_jax.config.schema import SearchConfig
from mergemix_jax.eval.results import read_table
from mergemix_jax.runkit import training
from mergemix_jax.search.problem import SearchProblem, caps_from_tokens
from mergemix_jax.search.types import SearchResult

if TYPE_CHECKING:
    from mergemix_jax.runkit.engine import Engine

log = logging.getLogger(__name__)


@dataclass
class SearchAssembly:
    """What the searches of one config solve. `problem`: the whole (capped) simplex; `region`: the
    same problem inside the trust region, in its own coordinates, mapped back by `to_weights`;
    `clusters`: hierarchical search's ({name: [domains]}, None when not needed); `note`: what went in
    (recorded in each mixture file)."""

    problem: SearchProblem
    region: SearchProblem
    to_weights: Callable[[np.ndarray], np.ndarray]
    clusters: dict[str, list[str]] | None
    note: dict

    def run(self, method: str, config: SearchConfig) -> SearchResult:
        """Run `method` with the options of `config`: inside the region, lifted back to mixtures, when
        its registry entry respects the trust region; on the whole simplex otherwise (subsets)."""
        from mergemix_jax.search.registry import METHODS, run_search
        from mergemix_jax.search.trust import lift_result

        if method in METHODS and not METHODS[method].trust_region:
            return run_search(self.problem, method, config, clusters=self.clusters)
        return lift_result(run_search(self.region, method, config, clusters=self.clusters), self.to_weights)


def domain_tokens(config: Config, domains: Sequence[str]) -> np.ndarray | None:
    """[K] training tokens of each domain (data.domains' counts, cached), or None when a domain is
    not one of the config's data.domains (experts given as folders named otherwise)."""
    from mergemix_jax.data import token_counts

    if not config.data.domains or not set(domains) <= {d.name for d in config.data.domains}:
        return None
    counts = token_counts(config.data)
    return np.asarray([counts[d]["train"] for d in domains], np.float64)


def with_caps(problem: SearchProblem, tokens: np.ndarray | None, config: Config, note: dict) -> SearchProblem:
    """`problem` with its token counts and repetition caps (search.caps: at most data.max_epochs passes
    over a domain in the final run's tokens); infeasible caps (sum < 1) are dropped with a warning."""
    budget = config.search.token_budget or float(config.train.steps * config.train.batch_size * config.train.seq_len)
    caps = caps_from_tokens(tokens, budget, config.data.max_epochs) if config.search.caps and tokens is not None else None
    note.update(token_budget=budget, max_epochs=config.data.max_epochs, caps=None if caps is None else dict(zip(problem.domains, caps.tolist(), strict=True)))
    if tokens is None and config.search.caps:
        note["caps"] = "none: no token counts for the domains (not data.domains of the config)"
    if caps is not None and caps.sum() < 1:
        log.warning("repetition caps sum to %.3f < 1: %g tokens need more than data.max_epochs=%g passes; searching without caps", caps.sum(), budget, config.data.max_epochs)
        caps, note["caps"] = None, f"infeasible (sum {caps.sum():.3f} < 1): searched without caps"
    return dataclasses.replace(problem, caps=caps, tokens=tokens)


def probe_observations(engine: Engine) -> tuple[np.ndarray, dict] | None:
    """(mixtures [N, K], {metric: [N]}) of the run's probe table (eval/probe.csv), or None (no run folder or no rows)."""
    probe = None if engine.run_dir is None else engine.run_dir / "eval" / "probe.csv"
    if probe is None or not probe.is_file():
        return None
    table = read_table(probe, engine.domains)
    return (table["weights"], table["metrics"]) if len(table["weights"]) else None


def merged_base(engine: Engine, tokens: np.ndarray | None, groups: str = "") -> SearchProblem:
    """The engine's merged problem, its prior the domains' natural token proportions (uniform without counts)."""
    names = tuple(d.name for d in engine.config.data.domains)
    if not groups and tuple(engine.domains) == names:
        return engine.problem  # built once per engine, with the natural prior
    prior = None if tokens is None else tokens / tokens.sum()
    return engine.search_problem(engine.weights, prior=prior, groups=groups)


def search_assembly(
    engine: Engine,
    methods: Sequence[str] | None = None,
    tokens: np.ndarray | None = None,
    groups: str = "",
    wrap: Callable[[SearchProblem], SearchProblem] | None = None,
) -> SearchAssembly:
    """The search problem of `engine`'s config (see module doc), for `methods` (default pipeline.methods).

    `tokens` ([K]) replaces the data.domains counts (caps and prior); `groups` searches per-layer or
    per-module weights (gradient); `wrap` rewraps the merged problem first (e.g. a score cache).
    """
    config = engine.config
    methods = list(methods or config.pipeline.methods)
    explicit = tokens is not None
    tokens = np.asarray(tokens, np.float64) if explicit else domain_tokens(config, engine.domains)
    problem = merged_base(engine, tokens, groups) if not explicit else engine.search_problem(engine.weights, prior=tokens / tokens.sum(), groups=groups)
    if wrap is not None:
        problem = wrap(problem)
    note: dict = {}
    problem = with_caps(problem, tokens, config, note)
    observed = probe_observations(engine)
    note["observed_mixtures"] = 0 if observed is None else len(observed[0])
    dilution = training.expert_dilution(config)  # DeMix components: searched in data proportions, merged with corrected weights
    if dilution is not None:
        from mergemix_jax.merge.dilution import describe, unreachable_rows

        note["dilution"] = describe(dilution, engine.domains)
        note["dilution"]["unreachable_probe_mixtures"] = 0 if observed is None else int(unreachable_rows(observed[0], dilution).sum())
    utility, objective = benchmark_utility(engine, None if observed is None else observed[1], note, methods, problem, groups)
    problem = dataclasses.replace(problem, observed=observed, utility=utility, objective=objective)
    return assemble(problem, config, note, methods, reachable=None if dilution is None else dilution.share * np.asarray(dilution.general), clusters=lambda: search_clusters(engine))


def assemble(
    problem: SearchProblem,
    config: Config,
    note: dict,
    methods: Sequence[str],
    reachable: np.ndarray | None = None,
    clusters: Callable[[], dict[str, list[str]]] | None = None,
) -> SearchAssembly:
    """The trust region of a finished problem and hierarchical's clusters (search.hierarchical.clusters,
    else `clusters()`, else the domain list cut in two halves): the last step of every assembly."""
    from mergemix_jax.search.trust import search_region

    region, to_weights = search_region(problem, config.search.trust_floor, reachable)
    chosen = None
    if "hierarchical" in methods:
        h = config.search.hierarchical
        if h.clusters:
            chosen = {k: list(v) for k, v in h.clusters.items()}
        elif clusters is not None:
            chosen = clusters()
        else:
            half = problem.k // 2
            chosen = {"c0": list(problem.domains[:half]), "c1": list(problem.domains[half:])}
    return SearchAssembly(problem, region, to_weights, chosen, note)


def benchmark_utility(engine: Engine, reference: dict | None, note: dict, methods: Sequence[str] | None = None, problem: SearchProblem | None = None, groups: str = ""):
    """(utility, objective) of the searches: the run's utility (the macro average of its metrics
    normalised on the probe table, search.normalise), and a gradient objective over smooth stand-ins
    of the non-differentiable ones (warning when a metric has none)."""
    from mergemix_jax.search.normalise import SMOOTH_PREFIXES, objective_weights
    from mergemix_jax.search.registry import follows_objective

    kind, weights = engine.config.search.normalise, engine.weights
    problem = problem if problem is not None else engine.problem
    if kind != "none" and reference is None:
        raise ValueError(f"search.normalise={kind} fits its maps on the probe table, which is missing; rerun the probe stage")
    utility = engine.utility  # the same fitted maps select, verify and validate use (pipeline/utility.py)
    smooth, warnings = objective_weights(weights, engine.metrics, reference, kind)
    for text in warnings:
        log.warning("%s", text)
    note.update(normalise=kind, gradient_objective=smooth, gradient_warnings=warnings)
    gradient_used = any(follows_objective(m, engine.config.search) for m in methods or engine.config.pipeline.methods)
    if not gradient_used or not smooth or smooth == {m: w for m, w in weights.items() if m.startswith(SMOOTH_PREFIXES)}:
        return utility, problem.objective
    return utility, engine.search_problem(smooth, prior=problem.prior, **({"groups": groups} if groups else {})).objective


def search_clusters(engine: Engine) -> dict[str, list[str]]:
    """Hierarchical search's clusters: search.hierarchical.clusters, else cut from the task-vector
    cosines (the run's diagnostics.json, or computed here) by average linkage."""
    from mergemix_jax.search.hierarchical import clusters_from_similarity

    h = engine.config.search.hierarchical
    if h.clusters:
        return {k: list(v) for k, v in h.clusters.items()}
    saved = None if engine.run_dir is None else engine.run_dir / "diagnostics.json"
    if saved is not None and saved.is_file():
        cosine = np.asarray(json.loads(saved.read_text())["cosine"])
    else:
        from mergemix_jax.diagnostics.interference import task_vector_cosines

        cosine = task_vector_cosines(engine.stack)
    return clusters_from_similarity(engine.domains, cosine, h.n_clusters)


def search_problem(engine: Engine) -> tuple[SearchProblem, dict]:
    """The whole-simplex problem every search of `mergemix run` solves and its note (see search_assembly)."""
    assembly = search_assembly(engine)
    return assembly.problem, assembly.note
