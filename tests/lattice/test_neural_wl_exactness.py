"""The hybrid / neural WL kernel at fixed g is an exact MCMC for p_g(s) ∝ 1/g(E(s)).

Started from exact samples of p_g (4x4 Ising enumerated: a level uniformly, then a uniform state
of it; with the exact g every level has probability 1/K), walkers moved by neural WL-IMH
proposals (and classic sweeps) must keep the flat level histogram within 4 SE; dropping the
q(s)/q(s') correction from the test breaks it (the test's power).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsamp as fs
from flowsamp import autoregressive as ar
from flowsamp.samplers.flat_histogram import compensated, energy_bins
from flowsamp.samplers.neural_wang_landau import build_iterations, initial_state

M = 4096
COUPLING = 0.8


@pytest.fixture(scope="module")
def setup():
    t = fs.targets.ising(L=4, beta=0.0)
    levels, log_g = t.exact_log_dos()
    codes = np.arange(2**16)
    s = (2 * ((codes[:, None] >> np.arange(16)) & 1) - 1).reshape(-1, 4, 4).astype(np.int32)
    lev = np.searchsorted(levels, np.asarray(t.energy(jnp.asarray(s))))
    rng = np.random.default_rng(0)
    pick_lev = rng.integers(0, levels.size, M)
    idx = np.array([rng.choice(np.nonzero(lev == k)[0]) for k in pick_lev])
    net = ar.symmetrize(ar.made(4, depth=0))
    p = net.init(jax.random.key(0))  # a correlated chain: q favours a site equal to its left/upper neighbour
    skip = np.zeros((16, 2, 16, 2))
    for i in range(16):
        for j in ([i - 1] if i % 4 else []) + ([i - 4] if i >= 4 else []):
            skip[j, [0, 1], i, [0, 1]] = COUPLING
    p = {**p, "skip": jnp.asarray(skip, p["skip"].dtype)}
    state = initial_state(t, M, levels.size)._replace(
        positions=jnp.asarray(s[idx]), level=jnp.asarray(pick_lev, jnp.int32),
        log_g=compensated(jnp.asarray(log_g[None], jnp.result_type(float))), active=jnp.zeros(1, bool))
    return t, net, p, state, levels.size


def _z_after(setup, steps, **kw):
    t, net, p, state, K = setup
    opt = optax.adam(1e-3)
    run = build_iterations(t, net, opt, M, steps, **kw)
    state, _, _, _, (_, _, acc) = run(jax.random.key(2), state, p, opt.init(p), jnp.int32(0), False)
    counts = np.bincount(np.asarray(state.level), minlength=K)
    se = np.sqrt(M * (1 / K) * (1 - 1 / K))
    return (counts - M / K) / se, float(np.mean(acc))


@pytest.mark.parametrize("local_sweeps", [0, 1])
def test_hybrid_kernel_keeps_flat_ensemble(setup, local_sweeps):
    z, acc = _z_after(setup, 5, local_sweeps=local_sweeps)
    assert 0.05 < acc < 0.95  # the neural moves are really exercised
    assert np.max(np.abs(z)) < 4, z


def test_without_q_correction_the_ensemble_drifts(setup):
    z, _ = _z_after(setup, 5, q_correction=False)
    assert np.max(np.abs(z)) > 4, z
