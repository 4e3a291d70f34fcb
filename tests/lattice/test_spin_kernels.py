"""Spin kernels: invariance from exact samples, and the simultaneous-Gibbs trap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

NUM_CHAINS = 2000
NUM_STEPS = 6


def _exact_moments(t):
    """Exact mean and sd of E and |sum of state indices - mean| under p, by enumeration."""
    s, e = t.enumerate()
    w = np.exp(-t.beta * e - t.log_Z)
    m = np.abs((s == t.spin_values[0]).sum(axis=(1, 2)) - t.num_sites / t.num_states)
    out = {}
    for name, x in (("energy", e), ("order", m)):
        mean = np.sum(w * x)
        out[name] = (mean, math.sqrt(np.sum(w * x**2) - mean**2))
    return out


def _order(t, s):
    return jnp.abs(jnp.sum(s == t.spin_values[0], axis=(-2, -1)) - t.num_sites / t.num_states)


@pytest.fixture(scope="module")
def ising44():
    t = fs.targets.ising(4, 0.4)
    return t, t.sample(jax.random.key(0), NUM_CHAINS), _exact_moments(t)


@pytest.fixture(scope="module")
def potts33():
    t = fs.targets.potts(3, 3, 1.0)
    return t, t.sample(jax.random.key(1), NUM_CHAINS), _exact_moments(t)


def _run(kernel, x0, key, num_steps=NUM_STEPS):
    @jax.jit
    def run(keys, x0):
        def one(k, x):
            state = kernel.init(x)
            state, _ = jax.lax.scan(lambda st, kk: (kernel.step(kk, st)[0], None), state,
                                    jax.random.split(k, num_steps))
            return state.position
        return jax.vmap(one)(keys, x0)

    return run(jax.random.split(key, x0.shape[0]), x0)


def _assert_invariant(t, x, moments):
    n = x.shape[0]
    for name, stat in (("energy", t.energy(x)), ("order", _order(t, x))):
        mean, sd = moments[name]
        z = (float(jnp.mean(stat)) - mean) / (sd / math.sqrt(n))
        assert abs(z) < 4, f"{name}: z = {z:.2f}"


KERNELS = {
    "metropolis-random": lambda t: fs.kernels.spin_metropolis(t, scan="random"),
    "metropolis-checkerboard": lambda t: fs.kernels.spin_metropolis(t, scan="checkerboard"),
    "gibbs-checkerboard": lambda t: fs.kernels.gibbs(t, order="checkerboard"),
    "gibbs-sequential": lambda t: fs.kernels.gibbs(t, order="sequential"),
    "wolff": lambda t: fs.kernels.wolff(t),
}


@pytest.mark.parametrize(
    "name",
    ["metropolis-random", "gibbs-checkerboard", "wolff"]
    + [pytest.param(n, marks=pytest.mark.slow) for n in ("metropolis-checkerboard", "gibbs-sequential")],
)
def test_ising_invariance_from_exact_samples(ising44, name):
    t, x0, moments = ising44
    x = _run(KERNELS[name](t), x0, jax.random.key(2))
    assert x.dtype == x0.dtype and x.shape == x0.shape
    assert bool(jnp.any(x != x0))
    _assert_invariant(t, x, moments)


@pytest.mark.parametrize(
    "name", ["wolff"] + [pytest.param(n, marks=pytest.mark.slow) for n in ("metropolis-random", "gibbs-sequential")]
)
def test_potts_invariance_from_exact_samples(potts33, name):
    t, x0, moments = potts33
    x = _run(KERNELS[name](t), x0, jax.random.key(3))
    _assert_invariant(t, x, moments)


def test_simultaneous_gibbs_is_wrong(ising44):
    t, x0, moments = ising44
    with pytest.warns(fs.kernels.SimultaneousGibbsWarning):
        k = fs.kernels.gibbs(t, order="simultaneous")
    x = _run(k, x0, jax.random.key(4), num_steps=20)
    mean, sd = moments["energy"]
    z = (float(jnp.mean(t.energy(x))) - mean) / (sd / math.sqrt(x.shape[0]))
    # the sublattices decouple: <s_i s_j> -> <s_i><s_j> = 0, so <E> drifts up towards 0
    assert z > 10, f"simultaneous Gibbs energy z = {z:.2f} should be far above the exact mean"


def test_sequential_gibbs_from_far_start_converges(ising44):
    """A sequential sweep relaxes from the ground state to the right <E> (the test above's twin)."""
    t, x0, moments = ising44
    start = jnp.broadcast_to(t.ground_state(), x0.shape)
    x = _run(fs.kernels.gibbs(t, order="sequential"), start, jax.random.key(5), num_steps=20)
    _assert_invariant(t, x, moments)


def test_state_energy_is_cached_and_info_fields(ising44):
    t, x0, _ = ising44
    k = fs.kernels.wolff(t)
    st = k.init(x0[0])
    st2, info = jax.jit(k.step)(jax.random.key(0), st)
    assert float(st2.energy) == float(t.energy(st2.position))
    assert int(info.num_changed) >= 1 and bool(info.is_accepted)
    k = fs.kernels.spin_metropolis(t, scan="checkerboard")
    _, info = k.step(jax.random.key(0), k.init(x0[0]))
    assert 0.0 <= float(info.acceptance_rate) <= 1.0


def test_fs_sample_drives_spin_kernels(ising44):
    t, x0, _ = ising44
    trace = fs.sample(jax.random.key(6), fs.kernels.gibbs(t), x0[:4], 3)
    assert trace.positions.shape == (4, 3, 4, 4)


def test_bad_options_raise():
    t = fs.targets.ising(3, 0.3)
    with pytest.raises(ValueError, match="unknown order"):
        fs.kernels.gibbs(t, order="parallel")
    with pytest.raises(ValueError, match="even L"):
        fs.kernels.gibbs(t, order="checkerboard")
    with pytest.raises(ValueError, match="unknown scan"):
        fs.kernels.spin_metropolis(t, scan="typewriter")
    with pytest.raises(TypeError, match="lattice spin target"):
        fs.kernels.wolff(fs.targets.gaussian(np.zeros(2), np.eye(2)))
