"""The exact Poisson-binomial kernel of the churned-logo interval, against scipy's
``poisson_binom`` (scipy >= 1.15), the binomial special case and a brute-force enumeration."""

from __future__ import annotations

from itertools import product
from math import comb

import numpy as np
import pytest
from scipy.stats import binom, poisson_binom

from models.poisson_binomial import (
    DIRECT_PMF_MAX,
    central_interval,
    pmf_direct,
    poisson_binomial_interval,
    poisson_binomial_pmf,
)


@pytest.mark.parametrize("n", [1, 7, 60, DIRECT_PMF_MAX, DIRECT_PMF_MAX + 1, 1000, 3001])
def test_pmf_matches_scipy_poisson_binom(n):
    # both branches: the recursion (n <= DIRECT_PMF_MAX) and the FFT product above it
    p = np.random.default_rng(n).beta(0.5, 10, n)
    k = np.arange(n + 1)
    np.testing.assert_allclose(poisson_binomial_pmf(p), poisson_binom.pmf(k, p), atol=1e-13)


@pytest.mark.parametrize("seed", range(5))
def test_interval_matches_scipy_quantiles(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.4, int(rng.integers(20, 600)))
    lo, hi = poisson_binomial_interval(p, 0.9)
    cdf = poisson_binom.cdf(np.arange(len(p) + 1), p)
    # the smallest count whose cumulative probability reaches 5% and 95%
    assert (lo, hi) == (int(np.argmax(cdf >= 0.05 - 1e-12)), int(np.argmax(cdf >= 0.95 - 1e-12)))


def test_pmf_matches_brute_force_enumeration():
    p = np.array([0.1, 0.5, 0.25, 0.9, 0.0, 1.0, 0.33])
    expected = np.zeros(len(p) + 1)
    for outcome in product((0, 1), repeat=len(p)):
        draws = np.array(outcome)
        expected[draws.sum()] += np.prod(np.where(draws == 1, p, 1 - p))
    np.testing.assert_allclose(poisson_binomial_pmf(p), expected, atol=1e-15)


def test_central_interval_of_a_point_mass_is_that_point():
    assert central_interval(np.array([0.0, 0.0, 1.0]), 0.9) == (2, 2)


def test_poisson_binomial_matches_the_binomial_and_a_hand_case():
    pmf = poisson_binomial_pmf(np.full(10, 0.3))
    binom = [comb(10, k) * 0.3**k * 0.7 ** (10 - k) for k in range(11)]
    np.testing.assert_allclose(pmf, binom, atol=1e-12)
    # p = 0.5, 0.5: P(0) = 0.25, P(1) = 0.5, P(2) = 0.25
    np.testing.assert_allclose(poisson_binomial_pmf(np.array([0.5, 0.5])), [0.25, 0.5, 0.25])
    # 5% and 95% quantiles of that: 0 and 2
    assert poisson_binomial_interval(np.array([0.5, 0.5]), 0.9) == (0, 2)
    assert poisson_binomial_interval(np.array([0.0, 1.0, 1.0]), 0.9) == (2, 2)


@pytest.mark.parametrize("n", [257, 1000, 3001])
def test_large_books_take_the_fft_product_and_match_the_recursion(n):
    assert n > DIRECT_PMF_MAX  # these sizes exercise the pairwise FFT product
    p = np.random.default_rng(n).beta(0.5, 10, n)
    pmf = poisson_binomial_pmf(p)
    assert len(pmf) == n + 1
    np.testing.assert_allclose(pmf, pmf_direct(p), atol=1e-13)
    np.testing.assert_allclose(
        poisson_binomial_pmf(np.full(n, 0.04)), binom.pmf(np.arange(n + 1), n, 0.04), atol=1e-13
    )
