"""One entry point for every search method by name, so the CLI and the demo stay thin."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from mergemix_jax.search.cmaes import CMAESOptions, cmaes_search
from mergemix_jax.search.gradient import GradientOptions, gradient_search
from mergemix_jax.search.hierarchical import hierarchical_search
from mergemix_jax.search.problem import SearchProblem
from mergemix_jax.search.subsets import SubsetOptions, subset_search
from mergemix_jax.search.surrogate import SurrogateOptions, surrogate_search
from mergemix_jax.search.types import SearchResult

METHODS = ("gradient", "surrogate", "subsets", "cmaes", "hierarchical")
_FLAT = {
    "gradient": (gradient_search, GradientOptions),
    "surrogate": (surrogate_search, SurrogateOptions),
    "subsets": (subset_search, SubsetOptions),
    "cmaes": (cmaes_search, CMAESOptions),
}


def make_options(method: str, settings: Mapping[str, Any]) -> Any:
    """The method's options dataclass from `settings`, ignoring keys that belong to other methods."""
    options_cls = _FLAT[method][1]
    names = {f.name for f in fields(options_cls)}
    return options_cls(**{k: v for k, v in settings.items() if k in names})


def run_search(
    problem: SearchProblem,
    method: str,
    settings: Mapping[str, Any] | None = None,
    clusters: Mapping[str, Sequence[str]] | None = None,
    inner: str = "gradient",
    sweeps: int = 1,
) -> SearchResult:
    """Run `method` on `problem`; `settings` holds option fields of any method (unknown ones ignored).

    hierarchical needs `clusters` ({name: [domains]}) and solves each stage with the `inner` method.
    """
    settings = dict(settings or {})
    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; choose one of {METHODS}")
    if method == "hierarchical":
        if not clusters:
            raise ValueError("hierarchical search needs clusters, e.g. --clusters 'web=d0,d1;code=d2,d3'")
        if inner not in _FLAT or inner == "subsets":
            raise ValueError(f"hierarchical stages need an inner method among gradient, surrogate, cmaes; got {inner!r}")
        options = replace(make_options(inner, settings), progress=False)
        solve = functools.partial(_FLAT[inner][0], options=options)
        return hierarchical_search(problem, clusters, solve, sweeps=sweeps)
    search, _ = _FLAT[method]
    return search(problem, make_options(method, settings))


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
