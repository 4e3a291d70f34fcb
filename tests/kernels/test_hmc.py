"""HMC: leapfrog reversibility and second-order energy error, and the inverse mass."""

import jax
import jax.numpy as jnp
import numpy as np

import flowsamp as fs
from flowsamp.kernels.integrators import IntegratorState, kinetic_energy, leapfrog

DIM = 4


def anharmonic(x):
    """A non-Gaussian log-density, so the leapfrog error is not that of a linear map."""
    return -jnp.sum(0.25 * x**4 + 0.5 * x**2)


def start(key, dtype):
    kx, kp = jax.random.split(key)
    x = jax.random.normal(kx, (DIM,), dtype)
    p = jax.random.normal(kp, (DIM,), dtype)
    lp, g = jax.value_and_grad(anharmonic)(x)
    return IntegratorState(x, p, lp, g)


def test_leapfrog_is_reversible(x64):
    """Integrate, flip the momentum, integrate again: back to the start (float64 rounding)."""
    s0 = start(jax.random.key(0), jnp.float64)
    inv_mass = jnp.array([1.0, 0.5, 2.0, 1.5])
    fwd = leapfrog(anharmonic, s0, 0.1, 25, inv_mass)
    back = leapfrog(anharmonic, fwd._replace(momentum=-fwd.momentum), 0.1, 25, inv_mass)
    np.testing.assert_allclose(back.position, s0.position, rtol=0, atol=1e-12)
    np.testing.assert_allclose(-back.momentum, s0.momentum, rtol=0, atol=1e-12)
    assert np.max(np.abs(fwd.position - s0.position)) > 0.1  # it did move


def test_energy_error_is_second_order(x64):
    """Over a fixed time T = 1 the energy error of leapfrog scales as eps^2: the fitted
    log-log slope over eps = 0.1 ... 0.0125 is 2 up to O(eps^2) corrections (< 0.1 here)."""
    inv_mass = jnp.ones(DIM)
    keys = jax.random.split(jax.random.key(1), 64)
    s0 = jax.vmap(lambda k: start(k, jnp.float64))(keys)

    def energy(s):
        return -s.log_prob + kinetic_energy(s.momentum, inv_mass)

    @jax.jit
    def mean_abs_error(eps, n):  # one compilation: step size and step count are traced
        end = jax.vmap(lambda s: leapfrog(anharmonic, s, eps, n, inv_mass))(s0)
        return jnp.mean(jnp.abs(jax.vmap(energy)(end) - jax.vmap(energy)(s0)))

    eps_list = [0.1, 0.05, 0.025, 0.0125]
    errors = [float(mean_abs_error(eps, int(round(1.0 / eps)))) for eps in eps_list]
    slope = np.polyfit(np.log(eps_list), np.log(errors), 1)[0]
    assert abs(slope - 2.0) < 0.1, (slope, errors)


def test_hmc_energy_change_matches_info(x64):
    """acceptance_rate == min(1, exp(-energy_change)) and is_accepted moves the state."""
    alg = fs.kernels.hmc(anharmonic, 0.3, 7, inverse_mass=jnp.array([1.0, 0.5, 2.0, 1.5]))
    state = alg.init(jnp.linspace(-1.0, 1.0, DIM))
    keys = jax.random.split(jax.random.key(2), 64)
    new, info = jax.jit(jax.vmap(alg.step, in_axes=(0, None)))(keys, state)
    np.testing.assert_allclose(info.acceptance_rate, np.minimum(1.0, np.exp(-info.energy_change)), rtol=1e-12)
    moved = np.any(np.asarray(new.position) != np.asarray(state.position), axis=1)
    np.testing.assert_array_equal(moved, info.is_accepted)
    np.testing.assert_allclose(new.log_prob, jax.vmap(anharmonic)(new.position), rtol=1e-12)
