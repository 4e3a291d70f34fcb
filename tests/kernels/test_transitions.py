"""The pre-drawn-randomness entry points: each key-drawing kernel is its transition.

``mala.transition``, ``hmc.transition``, ``flow_imh.imh_test`` and ``isir.isir_select`` take
their random numbers as arguments; ``build_kernel``'s kernel draws them from its key and calls
them, so for the same draws the two agree bit for bit. Also: HMC divergences, i-SIR selection
frequencies against the exact resampling probabilities, and Robbins-Monro.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsamp.kernels import _flat
from flowsamp.kernels.adaptation import TARGET_ACCEPTANCE, robbins_monro
from flowsamp.kernels.flow_imh import FlowIMHState, imh_accept, imh_test
from flowsamp.kernels.hmc import build_kernel as hmc_kernel
from flowsamp.kernels.hmc import init as hmc_init
from flowsamp.kernels.hmc import sample_momentum
from flowsamp.kernels.hmc import transition as hmc_transition
from flowsamp.kernels.isir import ISIRState, isir_select
from flowsamp.kernels.mala import build_kernel as mala_kernel
from flowsamp.kernels.mala import init as mala_init
from flowsamp.kernels.mala import transition as mala_transition

DIM = 3
_B = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, -0.4], [0.0, -0.4, 0.5]], np.float32)
MASSES = {"identity": None, "diagonal": np.array([1.0, 0.5, 2.0], np.float32), "dense": _B}


def log_prob(x):
    return -jnp.sum(0.25 * x**4 + 0.5 * x**2) + 0.3 * x[0] * x[1]


def draws(key, like):
    key_a, key_b = jax.random.split(key)
    return _flat.normal(key_a, like.position), _flat.log_uniform(key_b, like.log_prob)


def assert_trees_equal(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("mass", list(MASSES))
def test_mala_kernel_is_its_transition(mass):
    inv_mass = MASSES[mass]
    state = mala_init(jnp.array([0.4, -0.3, 1.1]), log_prob)
    kernel = mala_kernel()
    for i in range(5):
        key = jax.random.key(i)
        noise, log_u = draws(key, state)
        expected = kernel(key, state, log_prob, 0.4, inv_mass)
        got = mala_transition(state, log_prob, 0.4, noise, log_u, inv_mass)
        assert_trees_equal(got, expected)
        state = got[0]


@pytest.mark.parametrize("mass", list(MASSES))
def test_hmc_kernel_is_its_transition(mass):
    inv_mass = MASSES[mass]
    state = hmc_init(jnp.array([0.4, -0.3, 1.1]), log_prob)
    kernel = hmc_kernel()
    for i in range(5):
        key = jax.random.key(i)
        noise, log_u = draws(key, state)
        momentum = sample_momentum(noise, inv_mass)
        expected = kernel(key, state, log_prob, 0.3, 4, inv_mass)
        got = hmc_transition(state, log_prob, 0.3, 4, momentum, log_u, inv_mass)
        assert_trees_equal(got, expected)
        state = got[0]


def test_sample_momentum_has_covariance_mass():
    """p = L^{-T} xi has covariance M = (M^{-1})^{-1}: checked against the exact inverse
    within 4 SE of the sample covariance entries (n = 40000 draws)."""
    n = 40_000
    noise = jax.random.normal(jax.random.key(3), (n, DIM))
    p = np.asarray(jax.vmap(lambda z: sample_momentum(z, _B))(noise), np.float64)
    mass = np.linalg.inv(_B.astype(np.float64))
    cov = p.T @ p / n
    se = np.sqrt((np.diag(mass)[:, None] * np.diag(mass)[None, :] + mass**2) / n)
    assert np.all(np.abs(cov - mass) < 4 * se), (cov, mass)


def test_hmc_divergence_is_stans():
    """Delta H > 1000 or non-finite is divergent; an ordinary step is not."""
    state = hmc_init(jnp.array([0.4, -0.3, 1.1]), log_prob)
    p = jnp.ones(DIM)
    log_u = jnp.log(jnp.float32(0.5))
    _, fine = hmc_transition(state, log_prob, 0.05, 4, p, log_u)
    assert not bool(fine.is_divergent) and bool(fine.is_finite)
    _, huge = hmc_transition(state, log_prob, 3.0, 20, p, log_u)  # x^4 blows up
    assert bool(huge.is_divergent) and not bool(huge.is_accepted)
    gauss = lambda x: -0.5 * jnp.sum(x**2) * 1e4  # noqa: E731  Delta H ~ 1e3-1e5, finite
    st = hmc_init(jnp.array([0.1, 0.0, 0.0]), gauss)
    _, big = hmc_transition(st, gauss, 0.05, 1, p * 0, log_u)
    assert bool(big.is_finite)
    assert bool(big.is_divergent) == bool(big.energy_change > 1000.0)


def test_imh_test_is_imh_accept_and_batches():
    state = FlowIMHState(jnp.array([0.1, 0.2]), jnp.float32(-1.0), jnp.float32(-2.0))
    proposed = FlowIMHState(jnp.array([1.0, -1.0]), jnp.float32(-2.5), jnp.float32(-2.2))
    for i in range(5):
        key = jax.random.key(i)
        log_u = _flat.log_uniform(key, state.log_prob)
        assert_trees_equal(imh_test(log_u, state, proposed), imh_accept(key, state, proposed))
    # a batch of 4 chains with bulk-drawn uniforms: elementwise the same
    batch = jax.tree.map(lambda a: jnp.stack([a] * 4), state)
    prop = jax.tree.map(lambda a: jnp.stack([a] * 4), proposed)
    log_u = jnp.log(jnp.array([0.01, 0.3, 0.6, 0.99]))
    new, info = imh_test(log_u, batch, prop)
    rate = float(np.exp((-2.5 + 2.2) - (-1.0 + 2.0)))
    np.testing.assert_array_equal(info.is_accepted, np.exp(log_u) < rate)
    np.testing.assert_array_equal(new.position[np.asarray(info.is_accepted)], [[1.0, -1.0]] * 1)


def test_isir_select_frequencies_match_weights():
    """Over a grid of uniforms, index j is chosen with frequency w_j / sum w (exact up to the
    grid spacing); a NaN candidate is never chosen."""
    state = ISIRState(jnp.zeros(2), jnp.float32(-1.0), jnp.float32(-1.5))
    log_p = jnp.array([-0.5, jnp.nan, -3.0, 0.2])
    log_q = jnp.array([-1.0, -1.0, -1.0, -1.0])
    cands = ISIRState(jnp.arange(8.0).reshape(4, 2) + 1.0, log_p, log_q)
    n = 10_000
    us = (jnp.arange(n) + 0.5) / n
    new, info = jax.vmap(lambda u: isir_select(u, state, cands))(us)
    x = np.asarray(new.position[:, 0])
    idx = np.where(x == 0.0, 0, (x + 1) // 2)  # 0 = stay, j = candidate j (first coordinate 2j - 1)
    log_w = np.array([0.5, 0.5, -np.inf, -2.0, 1.2])
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    freq = np.bincount(idx.astype(int), minlength=5) / n
    np.testing.assert_allclose(freq, w, atol=2.0 / n)
    assert not bool(info.is_finite[0])
    np.testing.assert_allclose(info.acceptance_rate[0], 1 - w[0], rtol=1e-5)


def test_robbins_monro():
    rm = robbins_monro(TARGET_ACCEPTANCE["mala"], 0.5)
    s = rm.init(jnp.float32(0.1))
    s = rm.update(s, jnp.float32(0.9))
    np.testing.assert_allclose(s.log_step_size, np.log(0.1) + 0.5 * (0.9 - 0.574), rtol=1e-6)
    s2 = rm.update(s, jnp.float32(jnp.nan))  # NaN rate counts as 0
    np.testing.assert_allclose(s2.log_step_size, s.log_step_size - 0.5 * 0.574, rtol=1e-6)
    with pytest.raises(ValueError, match="rate"):
        robbins_monro(0.5, -1.0)
    with pytest.raises(ValueError, match="target_acceptance"):
        robbins_monro(1.5, 0.1)
    assert TARGET_ACCEPTANCE == {"mala": 0.574, "hmc": 0.65, "nuts": 0.8, "rwmh": 0.234}
