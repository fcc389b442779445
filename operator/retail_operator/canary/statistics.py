"""The judge's tests: false-alarm rates that hold however often it looks. Pure arithmetic.

The judge looks at growing counts every few seconds and stops at the first rollback, so a test
read that way must bound the chance that *any* look rejects a candidate that is in truth no
different, not the chance at one look. Both tests here are mixture likelihood ratios (mixture
sequential probability ratio tests). Under "no difference" a likelihood ratio is a martingale
with mean 1, so is any weighted mixture of them, and by Ville's inequality it ever reaches
``1 / alpha`` with probability at most ``alpha``: rejecting at the first look where it does is
an ``alpha``-level test at any number of looks, taken at any times. ``min(1, 1 / ratio)`` at a
look is therefore an anytime-valid p-value, and that is what the functions return.

* ``shift_p_value``: do the candidate's rows fall into the classes in the proportions the
  stable group's do? Pearson's chi-squared statistic of the two groups' class counts, read
  through a Gaussian mixture over the shift: the multivariate form of the mixture SPRT in
  Johari, Pekelis, Koomen and Walsh, "Always valid inference" (2017; Operations Research,
  2022). Valid as far as the class shares are Gaussian, which a few dozen rows per class make
  them.
* ``excess_p_value``: does the candidate fail requests more often than the stable group?
  Given the failures so far, each is the candidate's with probability its share of the
  requests if both fail equally often, and with more if it fails more often; the test bets on
  a grid of rate ratios over the failures alone. Exact for rare failures (a stable rate of 0
  is fine), and conservative when failures are common.
* ``quantile_ranks``: the ranks between which a sample quantile's true rank lies, for reading
  a histogram quantile at its least and at its most.

Neither test knows the business floors (``maxPredictionShift``, ``maxErrorRate``): the judge
applies those to the estimates, and rolls back only when a test and its floor agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# The scale of the shift the chi-squared mixture averages over, on the chi-squared scale
# (the square root of the sum over classes of the share difference squared over the pooled
# share). A five-point move of a 43 % class, taken from the others in proportion, is about 0.1
# on this scale; a scale near it finds such a shift soonest, and it sets the fewest requests
# with which any shift can be found (spec.MIN_REQUESTS_FLOOR).
SHIFT_SCALE = 0.07

# The rate ratios (candidate over stable) the failure test bets on, equally: from "half as
# often again" to "fails where the stable pods never do", the case a stable rate of 0 needs.
RATE_RATIOS = (1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 1000.0)


def _p_value(log_ratio: float) -> float:
    return math.exp(-max(log_ratio, 0.0))


def shift_p_value(stable: Mapping[str, float], candidate: Mapping[str, float]) -> float:
    """Anytime-valid p-value of "the two groups predict the classes in the same proportions".

    ``stable`` and ``candidate`` are rows per predicted class. With ``s = 1/n_candidate +
    1/n_stable``, Pearson's ``chi2`` on ``d`` degrees of freedom (classes seen, less one) and a
    prior shift ``N(0, tau^2 Sigma)`` (``Sigma`` the classes' multinomial covariance, ``tau``
    ``SHIFT_SCALE``), the mixture of the Gaussian likelihood ratios is

        log L = tau^2 / (s + tau^2) * chi2 / 2  -  d / 2 * log(1 + tau^2 / s).
    """
    n_stable, n_candidate = sum(stable.values()), sum(candidate.values())
    if n_stable <= 0 or n_candidate <= 0:
        return 1.0
    seen = sorted(c for c in set(stable) | set(candidate) if stable.get(c, 0) + candidate.get(c, 0))
    s = 1 / n_candidate + 1 / n_stable
    chi2 = 0.0
    for name in seen:
        pooled = (stable.get(name, 0.0) + candidate.get(name, 0.0)) / (n_stable + n_candidate)
        difference = candidate.get(name, 0.0) / n_candidate - stable.get(name, 0.0) / n_stable
        chi2 += difference * difference / pooled / s
    tau2 = SHIFT_SCALE * SHIFT_SCALE
    return _p_value(tau2 / (s + tau2) * chi2 / 2 - (len(seen) - 1) / 2 * math.log1p(tau2 / s))


def excess_p_value(
    stable_failed: float, stable_total: float, candidate_failed: float, candidate_total: float
) -> float:
    """Anytime-valid p-value of "the candidate fails no more often than the stable group".

    Of the failures so far, each is the candidate's with probability ``pi = r rho / (r rho +
    1 - rho)``, ``rho`` the candidate's share of the requests and ``r`` its failure rate over
    the stable group's. The null is ``r <= 1``; every ratio on the grid is above 1, so each
    likelihood ratio has mean at most 1 under the whole null, not only at ``r = 1``.
    """
    if stable_total <= 0 or candidate_total <= 0 or candidate_failed <= 0:
        return 1.0
    rho = candidate_total / (candidate_total + stable_total)
    terms = []
    for ratio in RATE_RATIOS:
        pi = ratio * rho / (ratio * rho + 1 - rho)
        terms.append(
            candidate_failed * math.log(pi / rho) + stable_failed * math.log((1 - pi) / (1 - rho))
        )
    top = max(terms)
    return _p_value(top + math.log(sum(math.exp(t - top) for t in terms) / len(terms)))


def quantile_ranks(q: float, n: float, z: float) -> tuple[float, float]:
    """The ranks, as shares of ``n`` observations, ``z`` standard errors either side of ``q``
    (clipped to 0 and 1): where the sample's ``q``-quantile may really sit."""
    if n <= 0:
        return 0.0, 1.0
    spread = z * math.sqrt(q * (1 - q) / n)
    return max(q - spread, 0.0), min(q + spread, 1.0)
