"""The statistics of randomized smoothing: the Clopper-Pearson lower bound, the binomial test, the radius.

Noise           norm  certified radius from the lower bound pA of P(f(x+e) = cA)
gaussian sigma  L2    sigma * Phi^-1(pA)                    (Cohen et al. 2019)
laplace lambda  L1    -lambda * ln(2 (1 - pA))              (Teng et al. 2020)
uniform lambda  L1    2 * lambda * (pA - 1/2)  on [-lambda, lambda]^d (Yang et al. 2020)

scipy is imported inside the functions (the command line and the other engines do not need it).
"""
from __future__ import annotations

import math

from .noise import NOISES


def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    This is scipy.stats.beta.ppf(alpha, count, n - count + 1) (statsmodels' proportion_confint(count,
    n, alpha=2*alpha, method="beta")[0], as in the reference implementation), computed by the function
    behind it, scipy.special.betaincinv, which imports in a fifth of the time of scipy.stats.
    """
    from scipy.special import betaincinv

    if count <= 0:
        return 0.0
    return float(betaincinv(count, n - count + 1, alpha))


def certified_radius(noise: str, scale: float, pA_lower: float) -> float:
    """Radius (L2 for gaussian, L1 otherwise) within which g is constant, given pA_lower >= 1/2."""
    if pA_lower < 0.5:
        return 0.0
    if noise == "gaussian":
        from scipy.special import ndtri  # = scipy.stats.norm.ppf

        return float(scale * ndtri(pA_lower))
    if noise == "laplace":
        return float(-scale * math.log(2.0 * (1.0 - pA_lower)))
    if noise == "uniform":
        return float(2.0 * scale * (pA_lower - 0.5))
    raise ValueError(f"unknown noise {noise!r}; choose one of {', '.join(NOISES)}")


def binomial_pvalue(k: int, n: int) -> float:
    """Two-sided binomial test of k successes in n trials against p = 1/2 (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    return float(binomtest(int(k), int(n), 0.5).pvalue)
