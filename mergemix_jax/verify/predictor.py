"""One predictor of a mixture's real utility, fitted on every real run a job has.

A Gaussian process over the simplex whose prior mean is a linear function of proxy features (the
merged proxy's and the output-space ensemble's utility of each mixture), with the feature
coefficients, an intercept and one offset per extra data seed integrated out under Gaussian priors:
a GP with explicit basis functions (Rasmussen & Williams, "Gaussian Processes for Machine Learning",
section 2.7). So:

- where the proxies have predicted the real runs, the coefficients carry them: between runs the
  posterior mean follows the proxy, and one noisy short run does not override a faithful proxy;
- where they have not, the coefficients shrink towards zero and the residual GP (an RBF kernel over
  the mixture weights) interpolates the runs themselves, like a smoother of a random search;
- every data seed after the first is a block effect (some seeds are hard for every mixture, as in
  verify.decide), so replicates on other seeds inform the noise without biasing the means.

Hyperparameters (residual amplitude and length scale, noise, how far the coefficients may stray from
their prior) are chosen by the marginal likelihood over a small grid. Utilities are higher-is-better;
the scale every prior is expressed in is the spread of the real runs (or of the prior mean before there
are enough runs), never a value tuned to one corpus.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import linalg

AMPLITUDES = (0.1, 0.3, 1.0)  # residual GP sd, in units of the utility scale
LENGTH_SCALES = (0.1, 0.2, 0.4, 0.8)  # Euclidean distance between mixtures (vertices are sqrt(2) apart)
NOISES = (0.1, 0.3, 0.6, 1.0)  # per-run noise sd, in units of the utility scale
SLOPE_SDS = (0.3, 1.0)  # prior sd of each standardised feature's coefficient, in units of the utility scale
SLOPE_PRIOR_TOTAL = 0.5  # prior mean of the standardised features' coefficients, summed: a weak belief in the proxies
INTERCEPT_SD = 10.0  # the proxies' offset from real utilities is free (merges sit far from trained models)
SEED_SD = 3.0  # prior sd of a data seed's offset (on the demo some seeds cost every mixture ~3x the noise)
JITTER = 1e-9


@dataclass(frozen=True)
class FeatureScale:
    """Centre and scale [P] of each proxy feature (over the candidate pool), so coefficients are comparable."""

    center_P: np.ndarray
    scale_P: np.ndarray

    @classmethod
    def of(cls, features_MxP: np.ndarray) -> FeatureScale:
        """Standardisation of the features of a candidate pool (a constant column keeps scale 1)."""
        f = np.asarray(features_MxP, np.float64)
        sd = f.std(axis=0)
        return cls(f.mean(axis=0), np.where(sd > 1e-12, sd, 1.0))

    def apply(self, features_NxP: np.ndarray) -> np.ndarray:
        """Standardised features [N, P]."""
        return (np.asarray(features_NxP, np.float64) - self.center_P) / self.scale_P


@dataclass(frozen=True)
class Hyper:
    """Hyperparameters of the predictor, the first three in units of `scale`."""

    amplitude: float
    length_scale: float
    noise: float
    slope_sd: float
    scale: float

    def to_json(self) -> dict:
        return {"amplitude": self.amplitude * self.scale, "length_scale": self.length_scale, "noise": self.noise * self.scale, "slope_sd": self.slope_sd, "scale": self.scale}


def rbf(a_NxK: np.ndarray, b_MxK: np.ndarray, length_scale: float) -> np.ndarray:
    """exp(-|a - b|^2 / (2 l^2)) between every pair of mixtures [N, M]."""
    d2 = ((np.asarray(a_NxK)[:, None, :] - np.asarray(b_MxK)[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / length_scale**2)


def _basis(features_NxP: np.ndarray, seeds_N: np.ndarray, seed_levels: np.ndarray) -> np.ndarray:
    """[N, 1 + P + S-1]: intercept, standardised features, one indicator per data seed after the first."""
    n = len(features_NxP)
    seeds = np.asarray(seeds_N).reshape(-1, 1) == seed_levels[1:].reshape(1, -1)
    return np.concatenate([np.ones((n, 1)), features_NxP, seeds.astype(np.float64)], axis=1)


def _prior(p: int, s: int, hyper: Hyper) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean [D] and variance [D] of the basis coefficients (intercept, features, seed offsets)."""
    mean = np.concatenate([[0.0], np.full(p, SLOPE_PRIOR_TOTAL / max(p, 1)), np.zeros(s - 1)]) * hyper.scale
    var = np.concatenate([[INTERCEPT_SD**2], np.full(p, hyper.slope_sd**2), np.full(s - 1, SEED_SD**2)]) * hyper.scale**2
    return mean, var


@dataclass
class Predictor:
    """A fitted predictor (see module doc); `predict` gives the posterior of the latent utility (the
    expected real utility on the first data seed, noise excluded)."""

    weights_NxK: np.ndarray
    basis_NxD: np.ndarray
    utility_N: np.ndarray
    seed_levels: np.ndarray
    features: FeatureScale
    hyper: Hyper
    log_evidence: float

    def _parts(self):
        h = self.hyper
        prior_mean, prior_var = _prior(self.features.center_P.size, len(self.seed_levels), h)
        cov = (h.amplitude * h.scale) ** 2 * rbf(self.weights_NxK, self.weights_NxK, h.length_scale)
        cov += (self.basis_NxD * prior_var) @ self.basis_NxD.T + ((h.noise * h.scale) ** 2 + JITTER) * np.eye(len(cov))
        chol = linalg.cho_factor(cov, lower=True)
        return prior_mean, prior_var, chol, linalg.cho_solve(chol, self.utility_N - self.basis_NxD @ prior_mean)

    def _cross(self, weights_MxK: np.ndarray, features_MxP: np.ndarray):
        """(basis [M, D] at the first data seed, prior mean and variance of the coefficients, the
        Cholesky factor and weights of the runs, cross-covariance [M, N] with the runs)."""
        h = self.hyper
        basis = _basis(self.features.apply(features_MxP), np.full(len(weights_MxK), self.seed_levels[0]), self.seed_levels)
        prior_mean, prior_var, chol, alpha = self._parts()
        cross = (h.amplitude * h.scale) ** 2 * rbf(weights_MxK, self.weights_NxK, h.length_scale) + (basis * prior_var) @ self.basis_NxD.T
        return basis, prior_mean, prior_var, chol, alpha, cross

    def predict(self, weights_MxK: np.ndarray, features_MxP: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean [M] and sd [M] of each mixture's expected real utility (first data seed)."""
        basis, prior_mean, prior_var, chol, alpha, cross = self._cross(weights_MxK, features_MxP)
        prior_diag = (self.hyper.amplitude * self.hyper.scale) ** 2 + (basis**2 * prior_var).sum(1)
        var = prior_diag - np.einsum("mn,nm->m", cross, linalg.cho_solve(chol, cross.T))
        return basis @ prior_mean + cross @ alpha, np.sqrt(np.maximum(var, 0.0))

    def coefficients(self) -> np.ndarray:
        """Posterior mean of the standardised features' coefficients [P], in utility units per feature sd:
        how much the fitted predictor leans on each proxy."""
        prior_mean, prior_var, _chol, alpha = self._parts()
        p = self.features.center_P.size
        return (prior_mean + prior_var * (self.basis_NxD.T @ alpha))[1 : 1 + p]


def prior_predict(weights_MxK: np.ndarray, features_MxP: np.ndarray, features: FeatureScale, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The predictor before any real run: the prior mean (the proxies' standardised average, scaled) and sd."""
    hyper = Hyper(AMPLITUDES[-1], LENGTH_SCALES[-1], NOISES[0], SLOPE_SDS[-1], scale)
    p = features.center_P.size
    basis = _basis(features.apply(features_MxP), np.zeros(len(weights_MxK)), np.zeros(1))
    mean, var = _prior(p, 1, hyper)
    var[0] = 0.0  # the intercept shifts every mixture alike: it does not order them
    offset = float(np.mean(features.center_P)) if p else 0.0  # on the proxies' own scale (they share the utility's unit)
    return offset + basis @ mean, np.sqrt((hyper.amplitude * scale) ** 2 + (basis**2 * var).sum(1))


def utility_scale(utility_N: np.ndarray, fallback: float) -> float:
    """The unit every prior is expressed in: the sd of the real runs once there are three, else `fallback`
    (e.g. the sd of the proxies' prior mean over the pool)."""
    u = np.asarray(utility_N, np.float64)
    sd = float(u.std(ddof=1)) if len(u) >= 3 else 0.0
    return sd if sd > 1e-12 else max(float(fallback), 1e-12)


def fit_predictor(
    weights_NxK: np.ndarray,
    features_NxP: np.ndarray,
    seeds_N: np.ndarray,
    utility_N: np.ndarray,
    features: FeatureScale,
    fallback_scale: float,
    hyper: Hyper | None = None,
) -> Predictor:
    """Fit the predictor on real runs (mixture, proxy features, data seed, real utility) by choosing the
    grid hyperparameters with the highest marginal likelihood (see module doc), or with `hyper` fixed
    (its scale replaced by the runs' utility scale). Needs at least one run."""
    weights = np.asarray(weights_NxK, np.float64)
    utility = np.asarray(utility_N, np.float64)
    if len(utility) == 0:
        raise ValueError("fit_predictor needs at least one real run")
    seed_levels = np.unique(np.asarray(seeds_N))
    basis = _basis(features.apply(features_NxP), seeds_N, seed_levels)
    scale = utility_scale(utility, fallback_scale)
    best: Predictor | None = None
    grid = itertools.product(AMPLITUDES, LENGTH_SCALES, NOISES, SLOPE_SDS) if hyper is None else [(hyper.amplitude, hyper.length_scale, hyper.noise, hyper.slope_sd)]
    for amp, length, noise, slope in grid:
        candidate = Predictor(weights, basis, utility, seed_levels, features, Hyper(amp, length, noise, slope, scale), -np.inf)
        prior_mean, _, chol, alpha = candidate._parts()
        resid = utility - basis @ prior_mean
        candidate.log_evidence = float(-0.5 * resid @ alpha - np.log(np.diag(chol[0])).sum() - 0.5 * len(utility) * np.log(2 * np.pi))
        if best is None or candidate.log_evidence > best.log_evidence:
            best = candidate
    assert best is not None
    return best


def expected_improvement(mean_M: np.ndarray, sd_M: np.ndarray, best: float) -> np.ndarray:
    """E[max(f - best, 0)] for f ~ N(mean, sd^2) (higher-is-better utilities); 0 where sd is 0 and mean <= best."""
    from scipy.stats import norm

    mean, sd = np.asarray(mean_M, np.float64), np.asarray(sd_M, np.float64)
    gap = mean - best
    z = np.divide(gap, sd, out=np.zeros_like(gap), where=sd > 0)
    return np.where(sd > 0, gap * norm.cdf(z) + sd * norm.pdf(z), np.maximum(gap, 0.0))
