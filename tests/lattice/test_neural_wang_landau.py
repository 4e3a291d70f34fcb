"""Σ 1/q density of states and neural / hybrid Wang-Landau against exact g(E)."""

import jax
import numpy as np
import pytest

import flowsamp as fs
from flowsamp import autoregressive as ar
from flowsamp.estimators import dos_from_samples
from flowsamp.samplers.neural_wang_landau import neural_wang_landau


def test_dos_from_exact_draws_of_q_is_unbiased():
    """Draws of a fixed (perturbed) net: every level's ln g within 4 SE of the exact count."""
    t = fs.targets.ising(L=3, beta=0.0)
    net = ar.made(3, depth=0)
    p = net.init(jax.random.key(0))
    p = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape), p)
    s, lq = jax.jit(net.sample_and_log_prob, static_argnums=2)(p, jax.random.key(2), 20000)
    levels, log_g = t.exact_log_dos()
    d = dos_from_samples(t.energy(s), lq, levels)
    keep = d.ess >= 20
    assert keep.sum() >= levels.size - 1
    z = (d.log_g[keep] - log_g[keep]) / d.log_g_se[keep]
    assert np.max(np.abs(z)) < 4, z


def test_dos_bad_input():
    with pytest.raises(ValueError, match="same length"):
        dos_from_samples(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="not among"):
        dos_from_samples(np.array([0.0, 1.0]), np.zeros(2), levels=np.array([0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        dos_from_samples(np.zeros(2), np.array([0.0, -np.inf]))


@pytest.mark.parametrize("local_sweeps", [0, 1])
def test_neural_wang_landau_ising_4x4(local_sweeps):
    t = fs.targets.ising(L=4, beta=0.0)
    r = neural_wang_landau(jax.random.key(0), t, ar.made(4, depth=1, width=2), batch_size=64,
                           max_iterations=200, check_every=50, local_sweeps=local_sweeps)
    levels, log_g = t.exact_log_dos()
    assert r.log_g.shape == levels.shape and abs(r.log_g[0] - np.log(2)) < 1e-9
    assert r.errors.shape == r.times.shape and np.all(np.isfinite(r.errors))
    assert 0.0 < r.acceptance[-1] <= 1.0
    keep = r.dos.ess >= 20  # the delta-method SE is trustworthy where the level's Kish ESS is large
    z = (r.dos.log_g[keep] - log_g[keep]) / r.dos.log_g_se[keep]
    assert keep.sum() >= 5 and np.max(np.abs(z)) < 4, z


def test_neural_wang_landau_bad_input():
    t = fs.targets.ising(L=4, beta=0.0)
    with pytest.raises(ValueError, match="net is for"):
        neural_wang_landau(jax.random.key(0), t, ar.made(3))
    with pytest.raises(ValueError, match="local_sweeps"):
        neural_wang_landau(jax.random.key(0), t, local_sweeps=-1)
    with pytest.raises(ValueError, match="unknown loss"):
        neural_wang_landau(jax.random.key(0), t, loss="kl")
    with pytest.raises(ValueError, match="no walkers"):
        neural_wang_landau(jax.random.key(0), t, update="weights", loss="forward_kl")
    with pytest.raises(ValueError, match="neural_every=0 needs"):
        neural_wang_landau(jax.random.key(0), t, neural_every=0)
    with pytest.raises(ValueError, match="unknown stop_training"):
        neural_wang_landau(jax.random.key(0), t, stop_training="sometimes")


@pytest.mark.slow
def test_neural_wang_landau_potts_q3_sigma_one_over_q():
    """Σ 1/q on Potts q = 3, L = 4 (transfer-matrix g(E)): every level within 4 SE."""
    t = fs.targets.potts(L=4, q=3, beta=0.0)
    r = neural_wang_landau(jax.random.key(0), t, batch_size=128, max_iterations=600)
    levels, log_g = t.exact_log_dos()
    keep = r.dos.ess >= 20
    z = (r.dos.log_g[keep] - log_g[keep]) / r.dos.log_g_se[keep]
    assert np.max(np.abs(z)) < 4, z
