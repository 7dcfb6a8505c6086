"""Acquisition: choose each next real run by expected improvement over the predictor (verify.predictor).

The loop is pure over a pool of candidate mixtures with proxy features and a `train(index, seed)`
callback that returns one real run's utility (the verification stage passes cached short trainings;
tests pass synthetic problems). Each step fits the predictor on every run so far and trains the pool
mixture with the highest expected improvement over the best posterior mean among trained mixtures:
a new mixture on the first data seed, or a trained one on its next seed (confirming a leader is an
improvement question like any other). Untrained mixtures closer than `min_distance` (total variation)
to a trained one are skipped, so the budget is not spent on near-duplicates. Before any run the pick is
the prior's favourite (the proxies' own pick), and the first run trains it unless opening runs are
given (e.g. the baselines). Features may change after each run (`refeature`: a proxy recalibrated on
the runs); each run keeps the features it was chosen with. The loop stops when the budget is spent or when no
candidate's expected improvement reaches `stop_ratio` x the fitted noise of one run.

After every run the recommendation is the trained mixture with the best posterior mean: the trajectory
of recommendations is what the budget benchmark reads (the pick at any smaller budget is a prefix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mergemix_jax.verify.predictor import FeatureScale, Predictor, expected_improvement, fit_predictor, prior_predict


@dataclass
class Run:
    """One real run: pool index, data seed, its real utility, and the predictor's posterior (mean, sd)
    and the proxy features [P] of that mixture just before it trained (out of sample)."""

    index: int
    seed: int
    utility: float
    predicted: float
    predicted_sd: float
    features: list[float] = field(default_factory=list)


@dataclass
class Step:
    """The recommendation after `runs` real runs: pool index, posterior mean and sd."""

    runs: int
    chosen: int
    mean: float
    sd: float


@dataclass
class Acquisition:
    """Everything the loop did: the runs in order, the trajectory of recommendations (entry 0 before any
    run), why it stopped, and the last fitted predictor (None without runs)."""

    runs: list[Run] = field(default_factory=list)
    trajectory: list[Step] = field(default_factory=list)
    stopped: str = ""
    predictor: Predictor | None = None
    features: np.ndarray | None = None  # the pool's features [N, P] the last predictor was fitted with

    @property
    def chosen(self) -> int:
        return self.trajectory[-1].chosen


def _fit(pool_NxK, features_NxP, runs: list[Run], fallback: float) -> Predictor:
    idx = np.asarray([r.index for r in runs])
    scale = FeatureScale.of(features_NxP)
    return fit_predictor(pool_NxK[idx], features_NxP[idx], np.asarray([r.seed for r in runs]), np.asarray([r.utility for r in runs]), scale, fallback)


def _too_close(pool_NxK: np.ndarray, trained: Sequence[int], min_distance: float) -> np.ndarray:
    """[N] True for untrained mixtures within `min_distance` (TV) of a trained one."""
    if not trained or min_distance <= 0:
        return np.zeros(len(pool_NxK), bool)
    tv = 0.5 * np.abs(pool_NxK[:, None, :] - pool_NxK[None, list(trained), :]).sum(-1).min(1)
    close = tv < min_distance
    close[list(trained)] = False
    return close


def acquire(
    pool_NxK: np.ndarray,
    features_NxP: np.ndarray,
    train: Callable[[int, int], float],
    budget: int,
    seeds: Sequence[int],
    min_distance: float = 0.1,
    stop_ratio: float = 0.0,
    refeature: Callable[[list[Run]], np.ndarray] | None = None,
    first: Sequence[int] = (),
) -> Acquisition:
    """Run the acquisition loop (module doc) for at most `budget` real runs. `seeds`: the data seeds a
    mixture trains on, in order (its j-th run uses seeds[j]; a mixture is never trained more often).
    `refeature(runs)`, when given, returns the pool's features [N, P] after the runs so far (e.g. a
    proxy calibrated on them); it replaces `features_NxP` after every run. `first`: pool indices trained
    before expected improvement takes over (e.g. the baselines), in order, within the budget."""
    pool = np.asarray(pool_NxK, np.float64)
    features = np.asarray(features_NxP, np.float64)
    scale = FeatureScale.of(features)
    fallback = float(np.mean(scale.scale_P)) if features.size else 1.0  # the proxies' spread, in utility units
    prior_mean, prior_sd = prior_predict(pool, features, scale, fallback)
    favourite = int(np.argmax(prior_mean))
    out = Acquisition(trajectory=[Step(0, favourite, float(prior_mean[favourite]), float(prior_sd[favourite]))])
    counts: dict[int, int] = {}
    mean, sd = prior_mean, prior_sd  # the current posterior over the pool (the prior before any run)
    opening = list(dict.fromkeys(first)) or [favourite]
    while len(out.runs) < budget:
        if len(out.runs) < len(opening):
            pick = opening[len(out.runs)]
        else:
            best = max(mean[i] for i in counts)
            ei = expected_improvement(mean, sd, best)
            ei[_too_close(pool, list(counts), min_distance)] = -np.inf
            ei[[i for i, c in counts.items() if c >= len(seeds)]] = -np.inf
            pick = int(np.argmax(ei))
            noise = out.predictor.hyper.noise * out.predictor.hyper.scale
            if not np.isfinite(ei[pick]) or np.max(ei) < stop_ratio * noise:
                out.stopped = "no candidate's expected improvement reaches pipeline.verify_stop_ratio x the noise of one run"
                break
        seed = seeds[counts.get(pick, 0)]
        out.runs.append(Run(pick, seed, float(train(pick, seed)), float(mean[pick]), float(sd[pick]), features[pick].tolist()))
        counts[pick] = counts.get(pick, 0) + 1
        if refeature is not None:
            features = np.asarray(refeature(out.runs), np.float64)
        out.predictor = _fit(pool, features, out.runs, fallback)
        mean, sd = out.predictor.predict(pool, features)
        chosen = max(counts, key=lambda i: mean[i])
        out.trajectory.append(Step(len(out.runs), chosen, float(mean[chosen]), float(sd[chosen])))
    out.stopped = out.stopped or "budget spent"
    out.features = features
    return out


def proxy_fidelity(predicted_N: np.ndarray, real_N: np.ndarray, confidence: float = 0.9, n_boot: int = 2000, seed: int = 0) -> dict:
    """How well one predictor of real utility did on the runs: Spearman (bootstrap interval over runs)
    and the root mean squared error of the centred values (offsets ignored: only orderings and spreads
    matter for picking a mixture). None entries where there are fewer than 3 runs."""
    from scipy.stats import spearmanr

    p, r = np.asarray(predicted_N, np.float64), np.asarray(real_N, np.float64)
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return {"n": len(p), "spearman": None, "spearman_lo": None, "spearman_hi": None, "rmse_centred": None}
    rho = float(spearmanr(p, r)[0])
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        i = rng.integers(0, len(p), len(p))
        if np.ptp(p[i]) > 0 and np.ptp(r[i]) > 0:
            boot.append(spearmanr(p[i], r[i])[0])
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2]) if boot else (np.nan, np.nan)
    rmse = float(np.sqrt(np.mean(((p - p.mean()) - (r - r.mean())) ** 2)))
    return {"n": len(p), "spearman": rho, "spearman_lo": float(lo), "spearman_hi": float(hi), "rmse_centred": rmse}


def proxy_reliance(fidelity: dict[str, dict], proxies: Sequence[str]) -> str:
    """One sentence for the user: which proxies ranked this job's real runs (the lower end of the Spearman
    interval above 0), or that none did and the answer rests on the real runs alone."""
    judged = {name: fidelity[name] for name in proxies if name in fidelity and fidelity[name].get("spearman") is not None}
    if not judged:
        return "Too few real runs to judge the proxies: the answer rests on the real runs and the proxies' prior."
    n = max(f["n"] for f in judged.values())

    def rho(name: str) -> str:
        f = judged[name]
        return f"{name} {f['spearman']:.2f} [{f['spearman_lo']:.2f}, {f['spearman_hi']:.2f}]"

    trusted = [name for name, f in judged.items() if f["spearman_lo"] > 0]
    if trusted:
        return f"The proxies that ranked this job's {n} real runs (Spearman, 90% interval): {', '.join(rho(t) for t in trusted)}; the predictor leans on them between runs."
    return (
        f"No proxy ranked this job's {n} real runs reliably (Spearman, 90% interval: {', '.join(rho(t) for t in judged)}): "
        "the answer rests on the real runs themselves, as a random search's would, pooled by the predictor."
    )
