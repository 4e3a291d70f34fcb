"""Stan's windowed warm-up on an ill-conditioned Gaussian (sds spanning 30x).

The adapted diagonal inverse mass is the pooled sample variance of the last slow window, so
its relative error is about sqrt(2 / n_eff) with n_eff = (window length x chains x ESS of x^2
per draw); the ESS per draw is measured on the production run that follows with the same kernel.
Tolerance: 4 of those standard errors. Then HMC with the adapted parameters matches the
exact means and variances within 4 SE (SE from the ESS).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.estimators import mcmc_ess
from flowsamp.kernels.windowed import window_schedule

DIM = 6
SDS = np.logspace(0.0, np.log10(30.0), DIM).astype(np.float32)
# 4 leapfrog steps of the adapted size (~1 in whitened units): a trajectory of ~4 rad, away from
# the multiples of pi at which fixed-length HMC on a Gaussian is periodic (L = 5 gives 5.5 rad
# and an ESS of x^2 ~10x smaller, measured)
NUM_CHAINS, NUM_WARMUP, NUM_DRAWS, STEPS = 16, 1000, 500, 4


def log_prob(x):
    return -0.5 * jnp.sum((x / SDS) ** 2)


def test_schedule_is_stans():
    in_slow, ends = window_schedule(1000)
    assert not in_slow[:75].any() and in_slow[75:950].all() and not in_slow[950:].any()
    np.testing.assert_array_equal(np.flatnonzero(ends) + 1, [100, 150, 250, 450, 950])
    in_slow, ends = window_schedule(100)  # short: 15% / 75% / 10%
    assert np.flatnonzero(in_slow)[[0, -1]].tolist() == [15, 89] and ends[89]
    with pytest.raises(ValueError, match="num_steps"):
        window_schedule(10)


@pytest.fixture(scope="module")
def adapted():
    x0 = jax.random.normal(jax.random.key(0), (NUM_CHAINS, DIM)) * 3.0
    warm = fs.kernels.window_adaptation(fs.kernels.hmc, log_prob, num_integration_steps=STEPS)
    states, params = warm.run(jax.random.key(1), x0, NUM_WARMUP)
    kernel = fs.kernels.hmc(log_prob, **params, num_integration_steps=STEPS)
    trace = fs.sample(jax.random.key(2), kernel, states.position, NUM_DRAWS)
    return params, np.asarray(trace.positions, np.float64), trace


def test_adapted_diagonal_mass_is_the_variance(adapted):
    params, x, _ = adapted
    inv_mass = np.asarray(params["inverse_mass"])
    assert inv_mass.shape == (DIM,) and float(params["step_size"]) > 0
    last_window = NUM_WARMUP - 50 - int(np.flatnonzero(window_schedule(NUM_WARMUP)[1])[-2] + 1)
    ess_per_draw = np.minimum(1.0, mcmc_ess(x**2) / (NUM_CHAINS * NUM_DRAWS))
    n_eff = last_window * NUM_CHAINS * ess_per_draw
    tol = 4.0 * np.sqrt(2.0 / n_eff)
    rel = inv_mass / SDS**2 - 1.0
    assert np.all(np.abs(rel) < tol), (rel, tol)
    assert np.all(tol < 0.2), tol  # the check has teeth: 20% or better


def test_hmc_after_warmup_matches_moments(adapted):
    _, x, trace = adapted
    ess = mcmc_ess(x)
    z_mean = x.mean((0, 1)) / (SDS / np.sqrt(ess))
    x2 = x**2
    ess2 = mcmc_ess(x2)
    z_var = (x2.mean((0, 1)) - SDS**2) / (x2.reshape(-1, DIM).std(0) / np.sqrt(ess2))
    assert np.all(np.abs(z_mean) < 4) and np.all(np.abs(z_var) < 4), (z_mean, z_var)
    assert int(trace.num_nonfinite.sum()) == 0


def test_dense_mass_and_bad_constructor():
    x0 = jax.random.normal(jax.random.key(3), (4, 2))
    warm = fs.kernels.window_adaptation(fs.kernels.mala, lambda x: -0.5 * jnp.sum(x**2), dense_mass=True)
    states, params = warm.run(jax.random.key(4), x0, 60)
    assert params["inverse_mass"].shape == (2, 2) and states.position.shape == (4, 2)
    np.testing.assert_allclose(params["inverse_mass"], params["inverse_mass"].T, rtol=1e-6)
    with pytest.raises(TypeError, match="constructor taking"):
        fs.kernels.window_adaptation(fs.kernels.rwmh, lambda x: -jnp.sum(x**2))


_SHARDED = """
import functools
import jax, jax.numpy as jnp, numpy as np
import flowsamp as fs
from flowsamp import parallel
from flowsamp.kernels.windowed import _accumulate, _Moments
assert jax.local_device_count() == 4
mesh = parallel.chain_mesh(jax.devices())
# the pooled window moments: chains split over 4 devices + collectives == one device
x = jax.random.normal(jax.random.key(5), (3, 8, 3)) * jnp.array([1.0, 3.0, 10.0]) + 2.0
for dense in (False, True):
    m0 = _Moments(jnp.zeros(()), jnp.zeros(3), jnp.zeros((3, 3)) if dense else jnp.zeros(3))
    plain = m0
    for b in x:
        plain = _accumulate(plain, b, dense)
    def pooled(xs):
        m = m0
        for b in xs:
            m = _accumulate(m, b, dense, parallel.CHAIN_AXIS)
        return m
    rep = parallel.REPLICATED
    spec = jax.sharding.PartitionSpec(None, parallel.CHAIN_AXIS)
    got = jax.shard_map(pooled, mesh=mesh, in_specs=(spec,), out_specs=rep, check_vma=False)(x)
    for a, b in zip(got, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
# end to end: the sharded warm-up runs and adapts like the one-device one (the chains are
# chaotic at the step sizes dual averaging tries early on, so only up to Monte Carlo error)
sds = jnp.array([1.0, 3.0, 10.0])
lp = lambda x: -0.5 * jnp.sum((x / sds) ** 2)
x0 = jax.random.normal(jax.random.key(0), (8, 3))
warm = fs.kernels.window_adaptation(fs.kernels.hmc, lp, num_integration_steps=4)
s4, p4 = warm.run(jax.random.key(1), x0, 400, devices=jax.devices())
rel = np.asarray(p4["inverse_mass"]) / np.asarray(sds) ** 2 - 1
assert s4.position.shape == (8, 3) and np.all(np.abs(rel) < 0.5), rel
print("ok", rel, float(p4["step_size"]))
"""


def test_sharded_over_devices_matches_one_device():
    """devices=: chains split over 4 CPU devices, window moments and acceptance pooled by
    collectives: the pooled moments equal the one-device ones (float rounding) and the warm-up
    runs end to end (subprocess: the device count is fixed when jax starts)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SHARDED], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok"), proc.stdout
