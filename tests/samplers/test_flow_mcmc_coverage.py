"""The lost-region check of the adaptive flow sampler's verdict, on exact synthetic draws.

A two-mode Gaussian mixture in 3-D, weights 0.02 / 0.98, modes 12 apart. "Production" is iid
draws, either of the whole mixture (right: nothing may be flagged) or of the heavy mode only
(the small mode lost: it must be flagged), and the "flow" is the mixture or the heavy mode's
Gaussian accordingly; the "exploration" is iid draws of the mixture. Every figure the test
compares is exact (normal densities) or a binomial probability computed here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from flowsamp.samplers._flow_mcmc_coverage import coverage_verdict, kernel_mixture, lost_mass, miss_pvalue

D, W_SMALL, SEP = 3, 0.02, 12.0
MEANS = np.array([[SEP, 0.0, 0.0], [0.0, 0.0, 0.0]])
WEIGHTS = np.array([W_SMALL, 1.0 - W_SMALL])


def _log_normal(x, mean):
    return -0.5 * np.sum((x - mean) ** 2, -1) - 0.5 * D * math.log(2 * math.pi)


def log_p(x):  # normalised: Z = 1
    return logsumexp(np.stack([_log_normal(x, m) for m in MEANS]) + np.log(WEIGHTS)[:, None], axis=0)


def mixture_draws(rng, n, weights=WEIGHTS):
    k = rng.choice(2, n, p=weights)
    return MEANS[k] + rng.standard_normal((n, D))


def imperfect_flow(x, sd=0.85, weights=(0.03, 0.97)):
    """A flow that learnt the mixture with 15 % too narrow modes and a wrong weight."""
    comps = [_log_normal(x / sd, m / sd) - D * math.log(sd) for m in MEANS]
    return logsumexp(np.stack(comps) + np.log(np.asarray(weights))[:, None], axis=0)


def make_score(log_q):
    def score(x):
        lp = log_p(x)
        return lp, lp - log_q(x)
    return score


def label(x):
    return (np.linalg.norm(x - MEANS[0], axis=-1) < np.linalg.norm(x - MEANS[1], axis=-1)).astype(np.int64) ^ 1


def run(rng, lost: bool, with_labels: bool):
    parts = mixture_draws(rng, 2048)
    if lost:
        prod = (MEANS[1] + rng.standard_normal((32, 128, D)))
        log_q = lambda x: _log_normal(x, MEANS[1])  # noqa: E731
    else:
        prod = mixture_draws(rng, 32 * 128).reshape(32, 128, D)
        log_q = imperfect_flow  # lighter tails than p: the particles out in the tails score high
    kw = {}
    if with_labels:
        kw = dict(labels=label, production_labels=label(prod), num_modes=2, start_labels=np.zeros(8, np.int64))
    starts = MEANS[0] + rng.standard_normal((8, D))  # the user's chains started in the small mode
    return coverage_verdict(parts, 0.0, prod, make_score(log_q), seed=int(rng.integers(1 << 30)),
                            min_ess_bulk=32 * 128, starts=starts, **kw)


def test_miss_pvalue_is_the_binomial_cdf():
    for n, mu, b in ((1000, 0.013, 0), (400, 0.05, 3), (50, 0.5, 20)):
        assert miss_pvalue(mu, n, b) == pytest.approx(stats.binom.cdf(b, n, mu), rel=1e-9)
    assert miss_pvalue(0.0, 1000) == 1.0
    assert miss_pvalue(0.013, 1000) == pytest.approx((1 - 0.013) ** 1000, rel=1e-9)


def test_kernel_mixture_density_is_the_defensive_mixture_of_normals():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((5, 2)) * np.array([2.0, 0.5])
    y, log_g = kernel_mixture(c, rng, 64)
    lam = 5 / (5 + 2)
    cov = lam * np.cov(c.T) + (1 - lam) * np.trace(np.cov(c.T)) / 2 * np.eye(2)
    h2 = 5 ** (-2.0 / 6.0)
    kde = logsumexp([stats.multivariate_normal(ci, h2 * cov).logpdf(y) for ci in c], axis=0) - math.log(5)
    exact = np.logaddexp(kde, stats.multivariate_normal(c.mean(0), cov).logpdf(y)) - math.log(2)
    np.testing.assert_allclose(log_g(y), exact, rtol=1e-10, atol=1e-10)


def test_lost_mass_weighs_a_mode_within_its_standard_error():
    """The mass of the small mode's cell by kernel-mixture IS from 200 of its draws: within 4 SE of 0.02."""
    rng = np.random.default_rng(1)
    centres = MEANS[0] + rng.standard_normal((200, D))
    y, log_g = kernel_mixture(centres, rng, 4096)
    mu, se = lost_mass(log_p(y), log_g(y), label(y) == 0, 0.0)
    assert abs(math.log(mu / W_SMALL)) < 4 * se + 1e-3  # the cell's mass is 0.02 to within ~1e-8 at 12 apart
    assert se < 0.1


@pytest.mark.parametrize("with_labels", [False, True])
def test_right_production_is_not_flagged(with_labels):
    rng = np.random.default_rng(2)
    for _ in range(5):
        diag, problems = run(rng, lost=False, with_labels=with_labels)
        assert problems == [], problems
        for r in diag["coverage"]:
            assert not r["flagged"]


@pytest.mark.parametrize("with_labels", [False, True])
def test_lost_mode_is_flagged(with_labels):
    """The small mode (0.02 of the mass, 41 of 2048 particles) lost by production and its flow:
    its mass comes out within 4 SE of 0.02 and a 4096-draw production misses it with probability
    (1 - 0.02)^4096 ~ 1e-36."""
    rng = np.random.default_rng(3)
    diag, problems = run(rng, lost=True, with_labels=with_labels)
    assert len(problems) >= 1
    flagged = [r for r in diag["coverage"] if r["flagged"]]
    assert flagged
    for r in flagged:
        assert r["mass_lower"] <= W_SMALL * 1.02 and r["mass"] > 0.5 * W_SMALL
    assert any(r["what"].startswith("starting points") for r in flagged)
    if with_labels:
        assert "mode 0 (where 8 of 8 starting points lie)" in " ".join(problems)
        np.testing.assert_array_equal(diag["coverage_start_counts"], [8, 0])
