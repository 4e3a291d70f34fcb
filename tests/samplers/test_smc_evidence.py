"""The SE of SMC's ln Z over repeats: calibrated (spread over repeats = mean reported SE) where the
islands agree, never overconfident where they do not; on exact log-normal islands and end to end
on a Gaussian with its closed-form ln Z."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import flowsamp as fs
from flowsamp.estimators.evidence import log_evidence
from flowsamp.samplers._smc_evidence import c4, genealogy_log_variance, island_log_evidence

M = 8


def _lognormal_islands(sigma, repeats, seed=0):
    """``repeats`` runs of ``M`` islands with exact log-normal :math:`\\hat Z_m`, :math:`E\\hat Z_m = 1`
    (the law of the log-normal CLT of Bérard, Del Moral & Doucet 2014)."""
    return np.random.default_rng(seed).normal(-0.5 * sigma**2, sigma, (repeats, M))


def _ratio_and_se(log_Z, se):
    """sd of ``log_Z`` over repeats / mean ``se``, and the SE of that ratio (delta method: the sample
    sd's relative variance (kurtosis - 1) / (4 R) plus the mean SE's relative variance)."""
    r = log_Z.shape[0]
    sd = np.std(log_Z, ddof=1)
    kurt = np.mean((log_Z - log_Z.mean()) ** 4) / np.var(log_Z) ** 2
    rel = math.sqrt((kurt - 1) / (4 * r) + np.var(se) / (r * np.mean(se) ** 2))
    ratio = sd / np.mean(se)
    return ratio, ratio * rel


def test_c4_is_the_mean_sample_sd():
    s = np.std(np.random.default_rng(1).normal(size=(200_000, M)), axis=1, ddof=1)
    assert abs(s.mean() - c4(M)) < 4 * s.std() / np.sqrt(s.size)


def test_calibrated_on_agreeing_lognormal_islands():
    """sigma = 0.3 (islands within a third of a nat): sd over 4000 repeats / mean SE within 4 SE of 1."""
    log_Z, se = island_log_evidence(_lognormal_islands(0.3, 4000))
    ratio, ratio_se = _ratio_and_se(log_Z, se)
    assert abs(ratio - 1.0) < 4 * ratio_se, (ratio, ratio_se)
    assert abs(np.mean(log_Z)) < 4 * np.std(log_Z) / np.sqrt(4000) + 0.5 * np.mean(se) ** 2  # ln of an unbiased Z


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_never_overconfident_on_disagreeing_lognormal_islands(sigma):
    """The delta method on the raw Z_m gives sd/SE 1.24 / 1.53 / 1.80 here (the sample sd of 8
    log-normals misses their heavy tail); the log-normal SE must not be too small."""
    isl = _lognormal_islands(sigma, 4000, seed=int(10 * sigma))
    log_Z, se = island_log_evidence(isl)
    ratio, ratio_se = _ratio_and_se(log_Z, se)
    assert ratio < 1.0 + 4 * ratio_se, (ratio, ratio_se)
    # the old estimator on the same draws is overconfident beyond its own 4 SE
    delta = np.asarray(jax.vmap(log_evidence)(jnp.asarray(isl))[1], np.float64)
    d_ratio, d_se = _ratio_and_se(log_Z, delta)
    assert d_ratio > 1.0 + 4 * d_se, (d_ratio, d_se)


def test_shapes_and_degenerate_islands():
    lz, se = island_log_evidence(np.zeros((3, 5)))
    assert lz.shape == se.shape == (3,) and np.all(se == 0)
    one = island_log_evidence(np.array([1.5]))
    assert one[0] == 1.5 and math.isnan(one[1])
    assert island_log_evidence(np.array([0.0, -np.inf]))[1] == np.inf
    assert np.isfinite(island_log_evidence(np.array([0.0, 2000.0]))[1])  # no overflow of e^{s^2}
    with pytest.raises(ValueError, match="last axis"):
        island_log_evidence(np.array([]))


D = 3
MEAN, SD = np.array([2.0, -1.0, 0.5]), 0.5
EXACT = D * np.log(SD * np.sqrt(2 * np.pi))
BASE = fs.targets.gaussian(jnp.zeros(D), 9.0 * jnp.eye(D))


def log_target(x):
    return -0.5 * jnp.sum(((x - MEAN) / SD) ** 2)


def _repeats(num_particles, repeats, seed0):
    out = [fs.samplers.smc(jax.random.key(seed0 + r), log_target, BASE, num_particles, warn=False)
           for r in range(repeats)]
    return np.array([o.log_Z for o in out]), np.array([o.log_Z_se for o in out]), out


def _check_calibration(log_Z, se, out):
    r"""Over ``R`` repeats: no bias (mean error within 4 sd/sqrt R); sd / mean SE within the 4-sigma
    band of its sampling law (the sd's :math:`\chi^2_{R-1}` and the mean SE's noise, on the log scale);
    at most the number of runs outside 4 SE that Student's :math:`t_{M-1}` allows (P(|t_7| > 4) =
    0.005: 1 of 20, 2 of 100)."""
    r = log_Z.shape[0]
    err = log_Z - EXACT
    sd = np.std(log_Z, ddof=1)
    assert abs(err.mean()) < 4 * sd / np.sqrt(r), (err.mean(), sd)
    log_ratio_sd = math.sqrt(1 / (2 * (r - 1)) + np.var(se) / (r * np.mean(se) ** 2))
    ratio = sd / np.mean(se)
    assert abs(math.log(ratio)) < 4 * log_ratio_sd, (ratio, log_ratio_sd)
    dof = out[0].diagnostics["log_Z_dof"]
    assert dof == M - 1
    p = 2 * stats.t.sf(4.0, dof)
    allowed = int(stats.binom.isf(1e-3, r, p))
    assert np.sum(np.abs(err) > 4 * se) <= allowed, (np.abs(err) / se, allowed)
    return ratio


def test_smc_log_Z_se_calibrated_over_repeats():
    """20 runs of 256 particles (8 islands of 32) on a 3-D Gaussian from a 6x wider base."""
    log_Z, se, out = _repeats(256, 20, 100)
    _check_calibration(log_Z, se, out)


@pytest.mark.slow
@pytest.mark.parametrize("num_particles", [128, 1024])
def test_smc_log_Z_se_calibrated_over_many_repeats(num_particles):
    """100 runs: 16 particles per island (islands' ln Z sd ~ 1) and 128 (~ 0.2)."""
    log_Z, se, out = _repeats(num_particles, 100, 1000)
    _check_calibration(log_Z, se, out)


def test_genealogy_variance_limits():
    """Equal weights on distinct Eves, no resampling: relative variance 0; every particle from one
    Eve: the cross term vanishes and the estimate is ln 2 (relative variance 1)."""
    n = 64
    lw = np.zeros((2, n))
    eve = np.stack([np.arange(n), np.zeros(n, int)])
    v = genealogy_log_variance(lw, eve, np.array([1, 3]))
    np.testing.assert_allclose(v, [0.0, math.log(2.0)], atol=1e-12)


def test_genealogy_variance_is_the_unbiased_importance_variance_without_resampling():
    """No resampling (k = 1), n draws of q = N(0, 1) for p = N(mu, 1) (Z = 1): the estimate
    :math:`\hat V = \hat Z^2 \hat V_{\rm rel}` is unbiased for Var(Z_hat) = (e^{mu^2} - 1)/n (Lee &
    Whiteley's theorem is for :math:`\hat V`, not the ratio); over 4000 repeats within 4 SE."""
    rng = np.random.default_rng(3)
    n, reps, mu = 200, 4000, 0.8
    x = rng.normal(size=(reps, n))
    lw = mu * x - 0.5 * mu**2
    rel = np.expm1(genealogy_log_variance(lw, np.tile(np.arange(n), (reps, 1)), np.ones(reps, int)))
    v = np.mean(np.exp(lw), axis=1) ** 2 * rel
    exact = math.expm1(mu**2) / n
    assert abs(v.mean() - exact) < 4 * v.std(ddof=1) / math.sqrt(reps), (v.mean(), exact)


def test_genealogy_floor_acts_only_when_the_islands_agree_too_well():
    isl = np.array([0.0, 0.01, -0.01, 0.02, -0.02, 0.0, 0.01, -0.01])
    _, se_plain = island_log_evidence(isl)
    _, se_floor = island_log_evidence(isl, np.full(M, 0.25))
    _, se_low = island_log_evidence(isl, np.full(M, 1e-6))
    assert se_low == se_plain and se_floor > 10 * se_plain
    np.testing.assert_allclose(se_floor, math.sqrt(math.log((1 - 1 / M) + math.exp(0.25) / M)) / c4(M))
