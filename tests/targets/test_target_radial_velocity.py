"""Radial-velocity target: pushed-forward prior and likelihood vs an independent numpyro model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy

import flowsamp as fs
from flowsamp.targets.radial_velocity import kepler_solve

T = np.array([0.0, 49.452, 95.393, 127.587, 190.408])  # The Joker toy data (REFERENCE.md)
Y = np.array([38.77, 39.70, 37.45, 38.31, 38.31])
SIG = np.array([0.184, 0.261, 0.112, 0.155, 0.223])


@pytest.fixture(scope="module")
def rv():
    return fs.targets.radial_velocity()


@pytest.fixture(scope="module")
def draws(rv):
    return rv.sample_prior(jax.random.key(2), 20_000)  # float32, one compilation


def _model():
    """Same prior and likelihood written with numpyro distributions and scipy's Kepler root."""
    ln_p = numpyro.sample("ln_P", dist.Uniform(math.log(2.0), math.log(256.0)))
    e = numpyro.sample("e", dist.Beta(0.867, 3.03))
    om = numpyro.sample("om", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    m0 = numpyro.sample("m0", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    P = jnp.exp(ln_p)
    K = numpyro.sample("K", dist.Normal(0.0, 30.0 * (P / 365.25) ** (-1 / 3) / jnp.sqrt(1 - e**2)))
    v0 = numpyro.sample("v0", dist.Normal(0.0, 100.0))
    omega, M0 = jnp.arctan2(om[1], om[0]), jnp.arctan2(m0[1], m0[0])
    M = 2 * jnp.pi * T / P - M0
    E = M
    for _ in range(40):  # plain Newton from E = M, many steps (independent of the target's solver)
        E = E - (E - e * jnp.sin(E) - M) / (1 - e * jnp.cos(E))
    f = 2 * jnp.arctan(jnp.sqrt((1 + e) / (1 - e)) * jnp.tan(E / 2))
    numpyro.sample("y", dist.Normal(v0 + K * (jnp.cos(omega + f) + e * jnp.cos(omega)), SIG), obs=Y)


def test_log_prob_matches_numpyro_model(rv, draws):
    with jax.enable_x64(True):
        x = np.array(draws[:6], np.float64)
        x[:, 1] = np.clip(x[:, 1], -4, 2)  # moderate eccentricities: plain Newton from E = M converges
        x[:, 6] *= 0.01
        x[:, 7] = 38.0 + 0.01 * x[:, 7]  # near the data, so the likelihood matters
        pot = jax.jit(lambda u: potential_energy(_model, (), {}, u))
        for xi in x:
            u = {"ln_P": xi[0], "e": xi[1], "om": xi[2:4], "m0": xi[4:6], "K": xi[6], "v0": xi[7]}
            want = -float(pot(u))
            assert float(rv.log_prob(jnp.asarray(xi))) == pytest.approx(want, rel=1e-9, abs=1e-8)


def test_log_prob_jit_vmap_grad_float32(rv, draws):
    x = draws[:16]
    assert x.dtype == jnp.float32 and x.shape == (16, 8)
    lp = jax.jit(jax.vmap(rv.log_prob))(x)
    assert lp.dtype == jnp.float32 and np.all(np.isfinite(lp))
    g = jax.jit(jax.vmap(jax.grad(rv.log_prob)))(x)
    assert np.all(np.isfinite(g))


def test_kepler_solver_residual():
    with jax.enable_x64(True):
        M = jnp.linspace(-10, 10, 201)[:, None]
        e = jnp.asarray([0.0, 0.3, 0.7, 0.95, 0.99])
        E = kepler_solve(M, e)
        resid = E - e * jnp.sin(E) - jnp.mod(M, 2 * jnp.pi)
        assert float(jnp.max(jnp.abs(resid))) < 1e-12
        # implicit-function derivatives against central differences
        solve = kepler_solve
        m0, e0, h = 1.3, 0.6, 1e-6
        dE_dM, dE_de = jax.grad(solve, argnums=(0, 1))(m0, e0)
        assert float(dE_dM) == pytest.approx(float(solve(m0 + h, e0) - solve(m0 - h, e0)) / (2 * h), rel=1e-7)
        assert float(dE_de) == pytest.approx(float(solve(m0, e0 + h) - solve(m0, e0 - h)) / (2 * h), rel=1e-7)


def test_prior_draws_have_prior_moments(rv, draws):
    n = draws.shape[0]
    phys = rv.to_physical(draws)
    lnP = np.log(np.asarray(phys["P"], np.float64))
    lo, hi = np.log(2.0), np.log(256.0)
    assert abs(lnP.mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * n)
    assert lnP.min() >= lo - 1e-5 and lnP.max() <= hi + 1e-5
    e = np.asarray(phys["e"], np.float64)
    a, b = 0.867, 3.03
    assert abs(e.mean() - a / (a + b)) < 4 * e.std() / np.sqrt(n)
    c = np.cos(np.asarray(phys["omega"], np.float64))
    assert abs(c.mean()) < 4 * np.sqrt(0.5 / n)


def test_mode_of_periods(rv):
    lo, hi = np.log(2.0), np.log(256.0)
    def x_for(P):
        s = (np.log(P) - lo) / (hi - lo)
        return [np.log(s / (1 - s)), 0, 1, 0, 1, 0, 0, 38]
    x = jnp.asarray([x_for(P) for P in (10.0, 39.0, 61.0, 89.0, 130.0, 250.0)])
    np.testing.assert_allclose(rv.to_physical(x)["P"], [10, 39, 61, 89, 130, 250], rtol=1e-5)
    np.testing.assert_array_equal(rv.mode_of(x), [0, 0, 1, 1, 2, 2])
    assert rv.log_Z is None and rv.mode_weights is None and rv.num_modes == 3
    with pytest.raises(NotImplementedError):
        rv.sample(jax.random.key(0), 2)


def test_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        fs.targets.radial_velocity(t=[0.0, 1.0], y=[1.0], sigma=[1.0])
    with pytest.raises(ValueError, match="sigma"):
        fs.targets.radial_velocity(t=[0.0], y=[1.0], sigma=[0.0])
