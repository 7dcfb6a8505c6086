"""Choosing the recommendation from real runs: seed noise, the margin a candidate must clear, the verdict.

Every verified candidate has one real utility per data seed (higher is better), entry j from data
seed j: every mixture trains on the same data seeds, a randomized block design. Some seeds are hard
for every mixture (on the demo one seed costs all mixtures 0.05-0.09 utility points), so the runs
are analysed as utility[m, s] = mixture effect + seed effect + noise (least squares): the mixtures
are compared by their seed-adjusted means, and the noise is the residual standard deviation with
its degrees of freedom (`fit_seed_blocks`). A candidate other than the baselines (uniform, natural)
is recommended only when its adjusted mean beats the best baseline's by more than
margin = t * noise * sd(contrast), t the one-sided Student-t quantile of `confidence` (few runs
estimate the noise loosely: a normal quantile would overstate the confidence), sd(contrast) =
sqrt(1 / n_a + 1 / n_b) when both share their seeds; otherwise the best baseline is kept. So the
recommendation is never a mixture that the product's own runs show training worse than uniform or
natural, and a within-noise "win" is not sold as one.

Screening (`pipeline.verify_screen_seeds`): candidates may first train with fewer seeds than the
baselines; `next_to_confirm` names the one that must get its full seeds before it can win (the best
by adjusted mean, when it beats the best baseline's), and `decide(..., min_seeds=)` never recommends
a candidate with fewer seeds, so a lucky single seed is not sold as a win either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mergemix_jax.runkit.stats import one_sided_quantile

BASELINES = ("uniform", "natural")


@dataclass
class Decision:
    """The outcome of verification (see module doc); utilities higher-is-better."""

    chosen: str
    verdict: str  # proxy_pick_confirmed | baseline_kept | other_candidate
    proxy_pick: str | None
    noise: float | None
    margin: float
    noise_dof: int = 0  # degrees of freedom of the noise (0: no replicate)
    indistinguishable: list[str] = field(default_factory=list)
    message: str = ""
    means: dict[str, float] = field(default_factory=dict)  # seed-adjusted mean real utility per candidate
    blocks: SeedBlocks | None = None  # the fit behind `means` and the margins (candidates in the order given)


@dataclass
class SeedBlocks:
    """Real utilities fitted as mixture + seed effects (see module doc): seed-adjusted means [M], the
    residual noise (None without a degree of freedom) and the unscaled covariance [M, M] of the
    mixture effects, from which any two mixtures' contrast standard deviation follows."""

    means: np.ndarray
    noise: float | None
    dof: int
    cov: np.ndarray

    def contrast_sd(self, a: int, b: int) -> float:
        """Standard deviation of means[a] - means[b] in units of the noise."""
        return float(np.sqrt(max(self.cov[a, a] + self.cov[b, b] - 2 * self.cov[a, b], 0.0)))

    def margin(self, a: int, b: int, confidence: float) -> float:
        """The lead of mixture a over b that is more than noise at one-sided `confidence`:
        t(confidence, dof) * noise * contrast_sd(a, b); 0 without a noise estimate."""
        return 0.0 if self.noise is None else one_sided_quantile(confidence, self.dof) * self.noise * self.contrast_sd(a, b)


def fit_seed_blocks(real_utilities: Sequence[Sequence[float]]) -> SeedBlocks:
    """Least squares of utility[m, s] = mixture_m + seed_s over every run (entry j of a mixture's list =
    data seed j; every mixture has seed 0, so all are comparable). Lists with identical values are one
    mixture's runs listed twice (natural measured as uniform) and count once."""
    first: dict[tuple, int] = {}
    owner = [first.setdefault(tuple(np.round(u, 12)), i) for i, u in enumerate(real_utilities)]
    unique = sorted(set(owner))
    column = {m: j for j, m in enumerate(unique)}
    seeds = max(len(real_utilities[m]) for m in unique)
    rows = [(column[m], s, float(u)) for m in unique for s, u in enumerate(real_utilities[m])]
    X = np.zeros((len(rows), len(unique) + seeds - 1))
    for r, (j, s, _) in enumerate(rows):
        X[r, j] = 1.0
        if s:
            X[r, len(unique) + s - 1] = 1.0
    y = np.asarray([u for *_, u in rows])
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    dof = len(rows) - int(np.linalg.matrix_rank(X))
    residual = y - X @ beta
    noise = float(np.sqrt(residual @ residual / dof)) if dof > 0 else None
    offset = float(np.sum(beta[len(unique) :]) / seeds)  # mixture effects on the average seed's scale
    pick = [column[m] for m in owner]
    cov = np.linalg.pinv(X.T @ X)[: len(unique), : len(unique)]
    return SeedBlocks(beta[pick] + offset, noise, max(dof, 0), cov[np.ix_(pick, pick)])


def decision_margin(noise: float | None, seeds: int, confidence: float, other_seeds: int = 0, dof: int | None = None) -> float:
    """q * noise * sqrt(1/seeds + 1/other_seeds) (other_seeds 0 = the same), q = one_sided_quantile(confidence,
    dof): the gap between two means over that many seeds each that is more than noise."""
    if noise is None or seeds < 1:
        return 0.0
    return float(one_sided_quantile(confidence, dof) * noise * np.sqrt(1.0 / seeds + 1.0 / (other_seeds or seeds)))


def decide(
    names: Sequence[str],
    real_utilities: Sequence[Sequence[float]],
    proxy_utilities: Sequence[float],
    confidence: float = 0.9,
    unit: str = "nats",
    min_seeds: int = 1,
) -> Decision:
    """Pick the recommendation among verified candidates (baselines named as in BASELINES). `unit`
    names the utility's scale in the message ("nats" for a held-out loss utility); a candidate with
    fewer than `min_seeds` real runs (screened, not confirmed) is reported but never chosen."""
    if len(names) != len(real_utilities) or len(names) != len(proxy_utilities):
        raise ValueError("names, real_utilities and proxy_utilities must have one entry per candidate")
    blocks = fit_seed_blocks(real_utilities)
    index = {n: i for i, n in enumerate(names)}
    means = {n: float(blocks.means[i]) for n, i in index.items()}
    baselines = [n for n in names if n in BASELINES]
    if not baselines:
        raise ValueError(f"verification needs at least one baseline among {BASELINES}")
    seeds = {n: len(u) for n, u in zip(names, real_utilities, strict=True)}
    noise, dof = blocks.noise, blocks.dof
    others = [n for n in names if n not in BASELINES]
    proxied = {n: p for n, p in zip(names, proxy_utilities, strict=True) if n in others}
    proxy_pick = max(proxied, key=proxied.get) if proxied else None
    best_baseline = max(baselines, key=means.get)
    eligible = [n for n in others if seeds[n] >= min_seeds]
    best_other = max(eligible, key=means.get) if eligible else None

    def margin_to(a: str, b: str) -> float:
        return blocks.margin(index[a], index[b], confidence)

    runner_up = best_other or next((b for b in baselines if b != best_baseline), best_baseline)
    margin = margin_to(runner_up, best_baseline)
    if best_other is not None and means[best_other] - means[best_baseline] > margin:
        chosen = best_other
        verdict = "proxy_pick_confirmed" if chosen == proxy_pick else "other_candidate"
    else:
        chosen, verdict = best_baseline, "baseline_kept"
    close = sorted((n for n in names if n != chosen and means[chosen] - means[n] <= margin_to(chosen, n)), key=lambda n: -means[n])
    message = _message(chosen, verdict, proxy_pick, means, best_baseline, margin, noise, unit)
    return Decision(chosen, verdict, proxy_pick, noise, margin, dof, close, message, means, blocks)


def _message(chosen: str, verdict: str, proxy_pick: str | None, means: dict, best_baseline: str, margin: float, noise: float | None, unit: str = "nats") -> str:
    gap = means[chosen] - means[best_baseline]
    noise_text = "noise unknown (one seed)" if noise is None else f"seed noise {noise:.4f} {unit}, margin {margin:.4f}"
    if verdict == "baseline_kept":
        gap_pick = None if proxy_pick is None else means[best_baseline] - means[proxy_pick]
        lost = "" if gap_pick is None else f"; the proxy's pick {proxy_pick} trained {abs(gap_pick):.4f} {unit} {'worse' if gap_pick > 0 else 'better'} than {best_baseline}"
        return f"No candidate trained better than {best_baseline} by more than seed noise ({noise_text}): recommending {best_baseline}{lost}."
    who = "the proxy's own pick" if verdict == "proxy_pick_confirmed" else "a candidate other than the proxy's pick"
    return f"Verified by real training: {chosen} ({who}) beats {best_baseline} by {gap:.4f} {unit if unit != 'nats' else 'nats of loss'} ({noise_text})."


def next_to_confirm(names: Sequence[str], real_utilities: Sequence[Sequence[float]], full_seeds: int) -> str | None:
    """The screened candidate to train up to `full_seeds` seeds next: the non-baseline with the best
    mean real utility, when it has fewer seeds and its mean beats the best baseline's mean; None when
    no screened candidate could still be recommended (see module doc)."""
    means = dict(zip(names, fit_seed_blocks(real_utilities).means.tolist(), strict=True))
    counts = {n: len(u) for n, u in zip(names, real_utilities, strict=True)}
    baselines = [means[n] for n in names if n in BASELINES]
    others = [n for n in names if n not in BASELINES]
    if not others or not baselines:
        return None
    leader = max(others, key=means.get)
    return leader if counts[leader] < full_seeds and means[leader] > max(baselines) else None
