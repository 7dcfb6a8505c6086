"""The registry of search methods (one dict) and the one entry point that runs any of them by name.

Each method's options ARE its typed config section (`search.<method>` in the YAML, a dataclass of
config/schema.py SearchConfig), shared by `mergemix run` and `mergemix search`; `search.seed` and
`search.progress` are passed alongside. A method's traits (does it follow the differentiable
objective, does it search inside the trust region) live on its registry entry. Adding a method is
one `METHODS` entry plus its module and its options section.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mergemix_jax.config.schema import (
    INNER_METHODS,
    CMAESSearchConfig,
    GradientSearchConfig,
    HierarchicalSearchConfig,
    SearchConfig,
    SubsetSearchConfig,
    SurrogateSearchConfig,
)
from mergemix_jax.parallel.multihost import is_writer
from mergemix_jax.search.cmaes import cmaes_search
from mergemix_jax.search.gradient import gradient_search
from mergemix_jax.search.hierarchical import hierarchical_search
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.subsets import subset_search
from mergemix_jax.search.surrogate import surrogate_search
from mergemix_jax.search.types import SearchResult


@dataclass(frozen=True)
class SearchMethod:
    """One registered method: `search(problem, options, *, seed, progress) -> SearchResult`, its
    options dataclass (the config section's own class) and its traits."""

    search: Callable[..., SearchResult]
    options: type  # config/schema.py's section class, e.g. GradientSearchConfig
    differentiable: bool = False  # follows the problem's differentiable objective (smooth stand-ins of the utility's metrics)
    trust_region: bool = True  # searched inside the trust region (search.trust_floor, diluted experts' reach); False: the whole simplex


def _hierarchical(
    problem: SearchProblem, options: HierarchicalSearchConfig, *, seed: int = 0, progress: bool = False, inner_options: Any = None
) -> SearchResult:
    """MergeMix top-down search, each stage solved by the inner method with `inner_options` (its section)."""
    if not options.clusters:
        raise ValueError("hierarchical search needs clusters, e.g. --clusters 'web=d0,d1;code=d2,d3'")
    inner = METHODS[options.inner]
    solve = functools.partial(inner.search, options=inner_options or inner.options(), seed=seed, progress=False)
    return hierarchical_search(problem, options.clusters, solve, sweeps=options.sweeps)


METHODS: dict[str, SearchMethod] = {
    "gradient": SearchMethod(gradient_search, GradientSearchConfig, differentiable=True),
    "surrogate": SearchMethod(surrogate_search, SurrogateSearchConfig),
    "subsets": SearchMethod(subset_search, SubsetSearchConfig, trust_region=False),  # Merge to Mix chooses whole subsets: faces by design
    "cmaes": SearchMethod(cmaes_search, CMAESSearchConfig),
    "hierarchical": SearchMethod(_hierarchical, HierarchicalSearchConfig),
}


def section_types() -> dict[str, type]:
    """{method: the dataclass of SearchConfig's `<method>` section} (what METHODS[m].options must be)."""
    hints = typing.get_type_hints(SearchConfig)
    return {name: kind for name, kind in hints.items() if isinstance(kind, type) and name in METHODS}


def follows_objective(method: str, config: SearchConfig) -> bool:
    """True when `method` (hierarchical: its inner method) searches the differentiable objective."""
    if method == "hierarchical":
        method = config.hierarchical.inner
    return METHODS[method].differentiable


def method_options(method: str, config: SearchConfig, clusters: Mapping[str, Sequence[str]] | None = None) -> Any:
    """The method's options: its `search.<method>` section (hierarchical: with `clusters` filled in
    when the section's own `clusters` is {}, e.g. from task-vector cosines)."""
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; choose one of {tuple(METHODS)}")
    options = getattr(config, method)
    if method == "hierarchical":
        if options.inner not in INNER_METHODS:
            raise ValueError(f"hierarchical stages need an inner method among {', '.join(INNER_METHODS)}; got {options.inner!r}")
        options = replace(options, clusters={k: list(v) for k, v in (options.clusters or clusters or {}).items()})
    return options


def run_search(
    problem: SearchProblem,
    method: str,
    config: SearchConfig | None = None,
    clusters: Mapping[str, Sequence[str]] | None = None,
) -> SearchResult:
    """Run `method` on `problem` with the options of `config` (defaults: SearchConfig()).

    hierarchical uses `search.hierarchical.clusters`, else `clusters` ({name: [domains]}).
    """
    config = config or SearchConfig()
    options = method_options(method, config, clusters)
    extra = {"inner_options": getattr(config, options.inner)} if method == "hierarchical" else {}
    return METHODS[method].search(problem, options, seed=config.seed, progress=config.progress and is_writer(), **extra)


def parse_clusters(spec: str) -> dict[str, list[str]]:
    """'web=d0,d1;code=d2' -> {'web': ['d0', 'd1'], 'code': ['d2']}."""
    clusters: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, members = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"cluster {part!r}: expected name=domain,domain,... (clusters separated by ';')")
        clusters[name.strip()] = [m.strip() for m in members.split(",") if m.strip()]
    if not clusters:
        raise ValueError(f"no clusters in {spec!r}; expected e.g. 'web=d0,d1;code=d2'")
    return clusters
