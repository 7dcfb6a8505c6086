"""Surrogate search (MergeMix / DeMix): score seed mixtures, fit a regressor per metric, maximise
the predicted utility over a dense simplex sample, refine in rounds, verify the predicted optimum.

Round 0 scores the seeds (simplex grid + prior + Dirichlet draws, n in all); round r >= 1 scores
n / 2^r new mixtures drawn around the current top predictions (DeMix's n, n/2, n/4 schedule).
The answer is the mean of the top-k predicted mixtures, scored once by the real scorer; if a
mixture scored along the way did better, that one is returned instead (both are reported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from mergemix_jax.search.batching import score_batches
from mergemix_jax.search.problem import SearchProblem, black_box
from mergemix_jax.search.regressors import fit_regressor
from mergemix_jax.search.simplex import dirichlet, grid_resolution_for, project_rows_np, simplex_grid
from mergemix_jax.search.types import SearchResult


@dataclass(frozen=True)
class SurrogateOptions:
    """Settings of one surrogate search."""

    n_seeds: int = 64  # mixtures scored in round 0
    grid_fraction: float = 0.25  # share of the seeds taken from a regular simplex grid
    rounds: int = 2  # refinement rounds of n/2, n/4, ... new mixtures
    local_concentration: float = 50.0  # Dirichlet concentration around a top prediction (higher = closer)
    n_candidates: int = 20_000  # dense Dirichlet sample on which the surrogate is maximised
    top_k: int = 8  # predicted-best mixtures averaged into the answer
    regressor: str = "auto"  # auto | lightgbm | ridge | gp
    min_lightgbm_samples: int = 64  # auto: below this many scored mixtures use ridge
    batch_size: int = 64  # mixtures per scorer call
    seed: int = 0
    progress: bool = False


def seed_mixtures(problem: SearchProblem, options: SurrogateOptions, rng: np.random.Generator) -> np.ndarray:
    """[n_seeds, K] seeds: a simplex grid, the prior, then uniform Dirichlet draws, inside the caps."""
    n_grid = int(options.n_seeds * options.grid_fraction)
    grid = simplex_grid(problem.k, grid_resolution_for(problem.k, n_grid)) if n_grid >= problem.k else np.zeros((0, problem.k))
    grid = grid[rng.permutation(len(grid))[:n_grid]]
    n_random = max(options.n_seeds - len(grid) - 1, 0)
    seeds = np.concatenate([grid, problem.prior[None], dirichlet(rng, np.ones(problem.k), n_random)])
    return _inside_caps(seeds, problem)


def _inside_caps(w: np.ndarray, problem: SearchProblem) -> np.ndarray:
    return w if problem.caps is None else project_rows_np(w, problem.caps)


def candidate_mixtures(problem: SearchProblem, n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, K] dense sample: half uniform on the simplex, half sparse (Dirichlet 0.2) to reach faces."""
    half = n // 2
    w = np.concatenate([dirichlet(rng, np.ones(problem.k), half), dirichlet(rng, np.full(problem.k, 0.2), n - half)])
    return _inside_caps(w, problem)


def local_mixtures(centres: np.ndarray, n: int, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """[n, K] Dirichlet draws centred on rows of `centres` (round-robin), for the refinement rounds."""
    picks = centres[np.arange(n) % len(centres)]
    return np.stack([rng.dirichlet(concentration * c + 1e-2) for c in picks])


def fit_utility(utility, x: np.ndarray, metrics: dict[str, np.ndarray], options: SurrogateOptions):
    """Fit one regressor per metric on (x [N, K], metrics) -> (predicted utility: [M, K] -> [M], kinds used).

    Mixtures with a non-finite metric (flagged by the utility) are left out of the fit.
    """
    finite = np.all([np.isfinite(np.asarray(y, np.float64)) for y in metrics.values()], axis=0)
    if not finite.any():
        raise ValueError("every scored mixture has a NaN/inf metric; check the experts before searching")
    x, metrics = x[finite], {name: np.asarray(y)[finite] for name, y in metrics.items()}
    predictors, kinds = {}, {}
    for name, y in metrics.items():
        kinds[name], predictors[name] = fit_regressor(options.regressor, x, y, options.seed, options.min_lightgbm_samples)

    def predict_u(candidates: np.ndarray) -> np.ndarray:
        return np.asarray(utility({name: f(candidates) for name, f in predictors.items()}), np.float64)

    return predict_u, kinds


def maximise_predicted(problem: SearchProblem, predict_u, x: np.ndarray, options: SurrogateOptions, rng: np.random.Generator, kinds: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The top-k mixtures [k, K] of the predicted utility and their predicted utilities [k].

    A dense global sample (plus the scored mixtures), then zooms: local samples around the current
    top-k at rising concentration. The zooms only query the surrogate, so they cost no scoring; they
    are skipped for LightGBM, whose piecewise-constant surface they would only over-fit.
    """
    candidates = np.concatenate([candidate_mixtures(problem, options.n_candidates, rng), x])
    pred_u = predict_u(candidates)
    order = np.argsort(-pred_u)[: options.top_k]
    top, top_u = candidates[order], pred_u[order]
    for concentration in () if "lightgbm" in kinds.values() else (100.0, 1_000.0, 10_000.0):
        local = _inside_caps(local_mixtures(top, options.n_candidates // 4, concentration, rng), problem)
        candidates = np.concatenate([top, local])
        pred_u = predict_u(candidates)
        order = np.argsort(-pred_u)[: options.top_k]
        top, top_u = candidates[order], pred_u[order]
    return top, top_u


def surrogate_search(problem: SearchProblem, options: SurrogateOptions = SurrogateOptions()) -> SearchResult:
    """MergeMix/DeMix surrogate search; the answer is verified by one more scorer call."""
    start = time.perf_counter()
    score, utility = black_box(problem)
    rng = np.random.default_rng(options.seed)
    x = seed_mixtures(problem, options, rng)
    metrics = score_batches(score, x, options.batch_size, options.progress, "surrogate seeds")
    trace = [float(-np.max(utility(metrics)))]
    rounds_log = []
    with tqdm(total=options.rounds + 1, desc="surrogate", disable=not options.progress) as bar:
        for round_index in range(options.rounds + 1):
            predict_u, kinds = fit_utility(utility, x, metrics, options)
            top, pred_u = maximise_predicted(problem, predict_u, x, options, rng, kinds)
            rounds_log.append({"round": round_index, "scored": len(x), "regressors": kinds, "best_predicted": float(pred_u.max())})
            bar.update(1)
            if round_index == options.rounds:
                break
            n_new = max(options.n_seeds // 2 ** (round_index + 1), 1)
            new = _inside_caps(local_mixtures(top, n_new, options.local_concentration, rng), problem)
            new_metrics = score_batches(score, new, options.batch_size, options.progress, f"surrogate round {round_index + 1}")
            x = np.concatenate([x, new])
            metrics = {name: np.concatenate([metrics[name], new_metrics[name]]) for name in metrics}
            trace.append(min(trace[-1], float(-np.max(utility(new_metrics)))))

    answer = _inside_caps(top.mean(0, keepdims=True), problem)
    verified = score(answer)
    verified_u = float(np.asarray(utility(verified), np.float64)[0])
    observed_u = np.asarray(utility(metrics))
    best_seen = int(np.argmax(observed_u))
    # the verified prediction is the answer unless a mixture already scored did better
    use_observed = observed_u[best_seen] > verified_u
    chosen = x[best_seen] if use_observed else answer[0]
    chosen_metrics = {n: float(v[best_seen]) for n, v in metrics.items()} if use_observed else {
        n: float(np.asarray(v).reshape(-1)[0]) for n, v in verified.items()
    }
    chosen_u = float(observed_u[best_seen]) if use_observed else verified_u
    trace.append(min(trace[-1], -verified_u))
    return SearchResult(
        method="surrogate",
        domains=problem.domains,
        weights=chosen,
        objective=-chosen_u,
        wall_time_s=time.perf_counter() - start,
        n_evaluations=len(x) + 1,
        trace=np.asarray(trace),
        metrics=chosen_metrics,
        extras={
            "chosen": "best_observed" if use_observed else "predicted",
            "predicted_weights": answer[0].tolist(),
            "predicted_utility": float(predict_u(answer)[0]),
            "verified_utility": verified_u,
            "best_observed_weights": x[best_seen].tolist(),
            "best_observed_utility": float(observed_u[best_seen]),
            "rounds": rounds_log,
            "options": options.__dict__,
        },
    )
