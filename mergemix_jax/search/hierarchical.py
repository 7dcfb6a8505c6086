"""Hierarchical search (MergeMix top-down): weights of coarse clusters first, then each cluster's split.

Stage 1 searches cluster weights v_C with each cluster split by its within-cluster prior
(a cluster's weight is the sum of its members'). Stage 2 visits the clusters in turn and expands
one: its members get their own weights while every other cluster stays one unit with its current
split, so the expanded cluster can still gain or lose weight (a cluster at zero after stage 1 is
not lost).
Any search method solves the stages (`solve` maps a SearchProblem to a SearchResult), since each
stage is just a smaller problem over an affine image of a simplex (`affine_subproblem`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from mergemix_jax.search.problem import SearchProblem, affine_subproblem, black_box
from mergemix_jax.search.types import SearchResult

Solver = Callable[[SearchProblem], SearchResult]


def clusters_from_similarity(domains: Sequence[str], cosine_KxK: np.ndarray, n_clusters: int = 0) -> dict[str, list[str]]:
    """Clusters of domains whose task vectors point the same way (average-linkage on 1 - cosine).

    The tree is cut into `n_clusters` (0 = round(sqrt(K)), at least 2) groups, each named after its
    members; hierarchical search then weighs the groups first and splits each one (top-down).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    k = len(domains)
    cosine = np.asarray(cosine_KxK, np.float64)
    if cosine.shape != (k, k) or not np.all(np.isfinite(cosine)):
        raise ValueError(f"need a finite {k}x{k} cosine matrix for domains {list(domains)}, got shape {cosine.shape}")
    n = n_clusters or max(2, round(np.sqrt(k)))
    if not 2 <= n <= k:
        raise ValueError(f"n_clusters must be in [2, {k}] for {k} domains, got {n}")
    distance = np.clip(1.0 - (cosine + cosine.T) / 2, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    labels = fcluster(linkage(squareform(distance, checks=False), method="average"), t=n, criterion="maxclust")
    groups: dict[int, list[str]] = {}
    for name, label in zip(domains, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    ordered = sorted(groups.values(), key=lambda g: list(domains).index(g[0]))
    return {"+".join(members): members for members in ordered}


def cluster_index(problem: SearchProblem, clusters: Mapping[str, Sequence[str]]) -> list[np.ndarray]:
    """Member indices per cluster; every domain must be in exactly one cluster (errors name them)."""
    position = {name: i for i, name in enumerate(problem.domains)}
    seen: dict[str, str] = {}
    members = []
    for cluster, names in clusters.items():
        if not names:
            raise ValueError(f"cluster {cluster!r} has no domains")
        for name in names:
            if name not in position:
                raise ValueError(f"cluster {cluster!r} names unknown domain {name!r}; known: {list(problem.domains)}")
            if name in seen:
                raise ValueError(f"domain {name!r} is in clusters {seen[name]!r} and {cluster!r}; put it in one")
            seen[name] = cluster
        members.append(np.asarray([position[n] for n in names]))
    missing = [n for n in problem.domains if n not in seen]
    if missing:
        raise ValueError(f"domains {missing} are in no cluster; every domain needs a cluster")
    if len(members) < 2:
        raise ValueError("hierarchical search needs at least 2 clusters")
    return members


def _as_weights(result: SearchResult) -> np.ndarray:
    return result.group_weights if result.group_weights is not None else result.weights


def hierarchical_search(
    problem: SearchProblem, clusters: Mapping[str, Sequence[str]], solve: Solver, sweeps: int = 1
) -> SearchResult:
    """Solve cluster weights, then expand each multi-domain cluster; the full mixture [K] out.

    sweeps = 1 is a single top-down pass. More sweeps repeat both stages with the splits found so
    far (block-coordinate descent).
    """
    if sweeps < 1:
        raise ValueError(f"sweeps must be >= 1, got {sweeps}")
    start = time.perf_counter()
    members = cluster_index(problem, clusters)
    names = list(clusters)
    k, n_clusters = problem.k, len(members)
    split = np.zeros((n_clusters, k))  # lift of stage 1: cluster c -> its split over members
    for c, idx in enumerate(members):
        split[c, idx] = problem.prior[idx] / problem.prior[idx].sum()
    cluster_prior = np.asarray([problem.prior[idx].sum() for idx in members])
    cluster_caps = None if problem.caps is None else np.asarray([problem.caps[idx].sum() for idx in members])
    stages, evaluations, coarse_result, w = [], 0, None, None
    for sweep in range(sweeps):
        coarse_result = solve(affine_subproblem(problem, names, split, np.zeros(k), cluster_prior, cluster_caps))
        v = np.asarray(_as_weights(coarse_result), np.float64)  # [C] or [G, C]
        w = v @ split  # [K] or [G, K]
        evaluations += coarse_result.n_evaluations
        stages.append({"sweep": sweep, "stage": "clusters", "weights": dict(zip(names, np.atleast_2d(v).mean(0).tolist(), strict=True)), "objective": coarse_result.objective})
        for c, idx in enumerate(members):
            if len(idx) == 1:
                continue
            others = [o for o in range(n_clusters) if o != c]
            lift = np.concatenate([np.eye(k)[idx], split[others]])  # members of c, then the other clusters
            sub_names = [problem.domains[i] for i in idx] + [names[o] for o in others]
            sub_prior = np.concatenate([problem.prior[idx], cluster_prior[others]])
            sub_caps = None if problem.caps is None else np.concatenate([problem.caps[idx], cluster_caps[others]])
            sub_result = solve(affine_subproblem(problem, sub_names, lift, np.zeros(k), sub_prior, sub_caps))
            w = np.asarray(_as_weights(sub_result), np.float64) @ lift
            mass = np.atleast_2d(w)[:, idx].mean(0)
            if mass.sum() > 1e-9:  # a cluster that lost all weight keeps its last split
                split[c] = 0.0
                split[c, idx] = mass / mass.sum()
            evaluations += sub_result.n_evaluations
            stages.append({"sweep": sweep, "stage": names[c], "weights": sub_result.weights_by_domain(), "objective": sub_result.objective})

    final = np.atleast_2d(w).mean(0) if np.ndim(w) == 2 else w
    objective, metrics = _evaluate(problem, w, coarse_result)
    return SearchResult(
        method=f"hierarchical/{coarse_result.method}",
        domains=problem.domains,
        weights=final,
        objective=objective,
        wall_time_s=time.perf_counter() - start,
        n_evaluations=evaluations + 1,
        trace=np.asarray([s["objective"] for s in stages]),
        metrics=metrics,
        group_weights=w if np.ndim(w) == 2 else None,
        extras={
            "clusters": {n: [problem.domains[i] for i in idx] for n, idx in zip(names, members, strict=True)},
            "sweeps": sweeps,
            "stages": stages,
        },
    )


def _evaluate(problem: SearchProblem, w: np.ndarray, like: SearchResult) -> tuple[float, dict[str, float]]:
    """The final mixture's objective, on the same scale the stage solver reported (objective or -utility)."""
    if like.method.startswith("gradient"):
        shaped = np.broadcast_to(w, problem.weight_shape) if problem.n_groups else w
        return float(problem.objective(jnp.asarray(shaped, jnp.float32))), {}
    score, utility = black_box(problem)
    metrics = score(np.atleast_2d(np.atleast_2d(w).mean(0)))
    return -float(np.asarray(utility(metrics))[0]), {n: float(np.asarray(m).reshape(-1)[0]) for n, m in metrics.items()}
