"""fs.samplers.smc(precondition_flow=...): moves in the latent space of a flow fitted to the
particles (pocoMC's) keep the population exact, give ln Z within 4 SE of the closed form, and
reject bad options by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers._smc_base import diagonal_gaussian_base

SDS = np.array([0.1, 1.0, 4.0, 30.0])  # scales over 2.5 decades: one step size in x cannot fit them all
D = SDS.size
TARGET = fs.targets.gaussian(jnp.zeros(D), jnp.diag(jnp.asarray(SDS**2)))
FLOW = fs.flows.rq_spline(D, num_layers=2, hidden=(16, 16), num_bins=8)
N = 1024


def _run(key, base_sd, x0):
    """Both runs share one compiled program: the bases are diagonal Gaussians passed as data."""
    base = diagonal_gaussian_base(jnp.zeros(D), jnp.asarray(base_sd, jnp.float32))
    return fs.samplers.smc(key, TARGET.log_prob, base, N, initial_particles=x0, precondition_flow=FLOW,
                           flow_fit_steps=100, warn=False)


@pytest.fixture(scope="module")
def from_exact():
    """One tempering step from the target to itself: the latent moves alone, on exact draws."""
    x0 = TARGET.sample(jax.random.key(5), N)
    return x0, _run(jax.random.key(1), SDS, x0)


def test_latent_moves_keep_exact_draws_exact(from_exact):
    x0, out = from_exact
    x = np.asarray(out.particles, np.float64)
    n = x.shape[0]
    assert np.all(np.isfinite(x))
    # the particles moved (a sweep that rejected everything would pass the moment checks trivially)
    assert np.mean(np.any(x != np.asarray(x0), axis=1)) > 0.5
    assert np.nanmean(out.acceptance) > 0.2
    # each moved particle is a draw of the target given the other half's map: iid-level SEs
    se_mean = SDS / np.sqrt(n)
    se_sd = SDS / np.sqrt(2 * n)
    assert np.all(np.abs(x.mean(0)) < 4 * se_mean), (x.mean(0), se_mean)
    assert np.all(np.abs(x.std(0) - SDS) < 4 * se_sd), (x.std(0), SDS)


@pytest.fixture(scope="module")
def tempered():
    x0 = 10.0 * jax.random.normal(jax.random.key(6), (N, D))
    return _run(jax.random.key(2), np.full(D, 10.0), x0)


@pytest.mark.slow  # ~7 tempering steps, each fitting 16 flows: ~90 s on 2 cores
def test_log_Z_and_moments_from_a_wide_base(tempered):
    out = tempered
    assert np.isfinite(out.log_Z_se) and out.log_Z_se > 0
    assert abs(out.log_Z - TARGET.log_Z) < 4 * out.log_Z_se, (out.log_Z, TARGET.log_Z, out.log_Z_se)
    w = np.exp(np.asarray(out.log_weights, np.float64))
    w /= w.sum()
    x = np.asarray(out.particles, np.float64)
    ess = 1.0 / np.sum(w**2)
    sd = np.sqrt(np.sum(w[:, None] * x**2, axis=0))
    # islands resample, so the particles are not iid: 4 SE at the Kish ESS, doubled for resampling
    assert np.all(np.abs(sd - SDS) < 8 * SDS / np.sqrt(2 * ess)), (sd, SDS, ess)


def test_bad_flow_options():
    log_prob = TARGET.log_prob
    with pytest.raises(TypeError, match="precondition_flow"):
        fs.samplers.smc(jax.random.key(0), log_prob, TARGET, 64, precondition_flow="spline")
    with pytest.raises(ValueError, match="dim 3"):
        fs.samplers.smc(jax.random.key(0), log_prob, TARGET, 64, precondition_flow=fs.flows.rq_spline(3))
    with pytest.raises(ValueError, match="flow_fit_steps"):
        fs.samplers.smc(jax.random.key(0), log_prob, TARGET, 64, precondition_flow=FLOW, flow_fit_steps=0)
    with pytest.raises(ValueError, match="flow_learning_rate"):
        fs.samplers.smc(jax.random.key(0), log_prob, TARGET, 64, precondition_flow=FLOW, flow_learning_rate=-1.0)
