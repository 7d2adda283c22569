"""The exact distribution of a count of independent, unequal Bernoulli events (Poisson-binomial).

How many of the scored accounts churn is such a count: account i churns with its own calibrated
probability p_i. Its pmf is the product of the accounts' generating polynomials ``(1 - p_i) +
p_i x``, built by dynamic programming up to ``DIRECT_PMF_MAX`` accounts (O(n^2)) and above that
by pairwise FFT products (O(n log^2 n)). ``models.forecast`` reads the churned-logo interval
from it; ``tests/models/test_poisson_binomial.py`` checks it against ``scipy.stats.poisson_binom``.
"""

from __future__ import annotations

import numpy as np

DIRECT_PMF_MAX = 256  # accounts up to which the pmf is built by the O(n^2) recursion


def poisson_binomial_pmf(probabilities: np.ndarray) -> np.ndarray:
    """Exact distribution of the number of successes among independent Bernoulli(p_i):
    element k is P(count = k). By dynamic programming for a few hundred accounts, else
    multiplied pairwise with FFTs, level by level (rounding ~1e-16 per coefficient, far below
    any quantile level)."""
    p = np.asarray(probabilities, dtype=float)
    if len(p) <= DIRECT_PMF_MAX:
        return pmf_direct(p)
    return pmf_fft(p[None, :])[0]


def pmf_fft(p: np.ndarray) -> np.ndarray:
    """Row-wise Poisson-binomial pmfs of a (rows x accounts) array, by pairwise FFT products.

    Counts above mean + 15 sd + 20 have probability below 1e-40 (Bernstein's inequality) and
    coefficient k of a product depends only on its factors' coefficients up to k, so every
    partial product is cut there: the pmf beyond the cut is returned as 0."""
    rows, n = p.shape
    cut = int(np.ceil(np.max(p.sum(axis=1) + 15 * np.sqrt((p * (1 - p)).sum(axis=1)) + 20)))
    size = 1 << (n - 1).bit_length()  # pad with p = 0 accounts, which never churn
    polys = np.zeros((rows, size, 2))
    polys[:, :, 0] = 1.0
    polys[:, :n, 0], polys[:, :n, 1] = 1 - p, p
    while polys.shape[1] > 1:
        width = 2 * polys.shape[2] - 1
        spectra = np.fft.rfft(polys, n=width, axis=2)
        polys = np.fft.irfft(spectra[:, 0::2] * spectra[:, 1::2], n=width, axis=2)
        polys = polys[:, :, : cut + 1]
    pmf = np.zeros((rows, n + 1))
    kept = min(n + 1, polys.shape[2])
    pmf[:, :kept] = np.clip(polys[:, 0, :kept], 0.0, None)
    return pmf / pmf.sum(axis=1, keepdims=True)


def pmf_direct(p: np.ndarray) -> np.ndarray:
    """The pmf by the O(n^2) recursion: account i moves mass from k to k + 1 with p_i."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, pi in enumerate(p):
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - pi) + pmf[: i + 1] * pi
        pmf[0] *= 1 - pi
    return pmf


def central_interval(pmf: np.ndarray, interval: float) -> tuple[int, int]:
    """Central ``interval`` of a count with this pmf: the (1 - interval)/2 and (1 + interval)/2
    quantiles (smallest k whose cumulative probability reaches each level)."""
    cdf = np.cumsum(pmf)
    levels = np.array([(1 - interval) / 2, (1 + interval) / 2]) - 1e-12
    lo, hi = np.searchsorted(cdf, levels, side="left")
    return int(min(lo, len(pmf) - 1)), int(min(hi, len(pmf) - 1))


def poisson_binomial_interval(probabilities: np.ndarray, interval: float) -> tuple[int, int]:
    """Central ``interval`` of the success count (:func:`central_interval` of its pmf)."""
    return central_interval(poisson_binomial_pmf(probabilities), interval)
