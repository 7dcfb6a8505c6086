"""The registry of search methods (one dict) and the one entry point that runs any of them by name.

Each method's options come from its typed config section (`search.<method>` in the YAML, see
config/schema.py SearchConfig), shared by `mergemix run` and `mergemix search`; adding a method is
one `METHODS` entry plus its module and its options section.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from mergemix_jax.config.schema import SearchConfig
from mergemix_jax.parallel.multihost import is_writer
from mergemix_jax.search.cmaes import CMAESOptions, cmaes_search
from mergemix_jax.search.gradient import GradientOptions, gradient_search
from mergemix_jax.search.hierarchical import HierarchicalOptions, hierarchical_search
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.subsets import SubsetOptions, subset_search
from mergemix_jax.search.surrogate import SurrogateOptions, surrogate_search
from mergemix_jax.search.types import SearchResult


@dataclass(frozen=True)
class SearchMethod:
    """One registered method: `search(problem, options) -> SearchResult` and its options dataclass."""

    search: Callable[[SearchProblem, Any], SearchResult]
    options: type


def _hierarchical(problem: SearchProblem, options: HierarchicalOptions) -> SearchResult:
    """MergeMix top-down search, each stage solved by the inner method with its own options."""
    if not options.clusters:
        raise ValueError("hierarchical search needs clusters, e.g. --clusters 'web=d0,d1;code=d2,d3'")
    solve = functools.partial(METHODS[options.inner].search, options=options.inner_options)
    return hierarchical_search(problem, options.clusters, solve, sweeps=options.sweeps)


METHODS: dict[str, SearchMethod] = {
    "gradient": SearchMethod(gradient_search, GradientOptions),
    "surrogate": SearchMethod(surrogate_search, SurrogateOptions),
    "subsets": SearchMethod(subset_search, SubsetOptions),
    "cmaes": SearchMethod(cmaes_search, CMAESOptions),
    "hierarchical": SearchMethod(_hierarchical, HierarchicalOptions),
}


def make_options(method: str, config: SearchConfig, clusters: Mapping[str, Sequence[str]] | None = None) -> Any:
    """The method's options dataclass from its `search.<method>` section (plus search.seed/progress).

    Every field of the section must be an option of the method (a mismatch is a bug, not dropped).
    hierarchical: `clusters` fills in when the section's `clusters` is {} (e.g. from task-vector cosines).
    """
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; choose one of {tuple(METHODS)}")
    options_cls = METHODS[method].options
    names = {f.name for f in fields(options_cls)}
    values = dataclasses.asdict(getattr(config, method))
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"search.{method} has field(s) {unknown} that {options_cls.__name__} does not take")
    values |= {k: v for k, v in (("seed", config.seed), ("progress", config.progress and is_writer())) if k in names}
    if method == "hierarchical":
        if values["inner"] not in METHODS or values["inner"] in ("subsets", "hierarchical"):
            raise ValueError(f"hierarchical stages need an inner method among gradient, surrogate, cmaes; got {values['inner']!r}")
        values["clusters"] = {k: list(v) for k, v in (values["clusters"] or clusters or {}).items()}
        values["inner_options"] = dataclasses.replace(make_options(values["inner"], config), progress=False)
    return options_cls(**values)


def run_search(
    problem: SearchProblem,
    method: str,
    config: SearchConfig | None = None,
    clusters: Mapping[str, Sequence[str]] | None = None,
) -> SearchResult:
    """Run `method` on `problem` with the options of `config` (defaults: SearchConfig()).

    hierarchical uses `search.hierarchical.clusters`, else `clusters` ({name: [domains]}).
    """
    options = make_options(method, config or SearchConfig(), clusters)
    return METHODS[method].search(problem, options)


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
