"""NUTS (blackjax's tree building under flowsamp's contract): invariance from exact samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

SDS = np.array([0.5, 1.0, 2.0, 1.5], np.float32)
RHO = 0.6


def cov():
    c = np.diag(SDS.astype(np.float64) ** 2)
    c[0, 1] = c[1, 0] = RHO * SDS[0] * SDS[1]
    return c


@pytest.fixture(scope="module")
def target():
    return fs.targets.gaussian(np.zeros(4), cov())


@pytest.mark.parametrize("mass", ["identity", "dense"])
def test_nuts_invariance_from_exact_samples(target, mass):
    """1000 exact draws, 8 NUTS steps each: every x_i and x_i^2 average within 4 SE of the
    exact moments (chains are independent replicates, SE = std / sqrt(n))."""
    n = 1000
    x0 = target.sample(jax.random.key(1), n)
    inv_mass = None if mass == "identity" else cov().astype(np.float32)
    kernel = fs.kernels.nuts(target.log_prob, step_size=0.7 if mass == "dense" else 0.35, inverse_mass=inv_mass)
    trace = fs.sample(jax.random.key(2), kernel, x0, 8, thin=8)
    x = np.asarray(trace.positions[:, -1], np.float64)
    f = np.concatenate([x, x**2], axis=1)
    exact = np.concatenate([np.zeros(4), np.diag(cov())])
    z = (f.mean(0) - exact) / (f.std(0, ddof=1) / np.sqrt(n))
    assert np.all(np.abs(z) < 4.0), z
    assert float(trace.acceptance_rate.mean()) > 0.5
    assert np.all(np.abs(x - np.asarray(x0)) > 0)  # chains moved


def test_nuts_state_info_contract(target):
    k = fs.kernels.nuts(target.log_prob, 0.3)
    state = k.init(jnp.array([1, 0, 0, 0]))  # integer start is cast
    assert isinstance(state, fs.kernels.nuts.NUTSState) and state.position.dtype == jnp.float32
    new, info = jax.jit(k.step)(jax.random.key(0, impl="rbg"), state)
    assert isinstance(info, fs.kernels.nuts.NUTSInfo)
    assert not bool(info.is_divergent) and bool(info.is_finite) and int(info.num_integration_steps) >= 1
    np.testing.assert_allclose(new.grad, jax.grad(target.log_prob)(new.position), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="step_size"):
        fs.kernels.nuts(target.log_prob, -1.0)
    with pytest.raises(ValueError, match="max_num_doublings"):
        fs.kernels.nuts(target.log_prob, 0.1, max_num_doublings=0)


def test_nuts_divergence_is_reported():
    """A step size far above the stability limit of a narrow Gaussian diverges every time."""
    lp = lambda x: -0.5 * jnp.sum((x / 0.01) ** 2)  # noqa: E731
    k = fs.kernels.nuts(lp, 5.0)
    state = k.init(jnp.array([0.01, -0.01]))
    new, info = jax.jit(k.step)(jax.random.key(0), state)
    assert bool(info.is_divergent) and not bool(info.is_finite)
    assert bool(jnp.all(jnp.isfinite(new.position)))
