"""VAN: reverse-KL training, F_q >= F, IS-corrected F within 4 SE, autoregressive IMH exactness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp import autoregressive as ar
from flowsamp.kernels.autoregressive_imh import autoregressive_imh
from flowsamp.samplers.van import free_energies, van
from flowsamp.targets.ising import K_C, kaufman_log_Z


@pytest.fixture(scope="module")
def ising3_run():
    t = fs.targets.ising(L=3, beta=0.4)
    net = ar.symmetrize(ar.made(3, depth=1, width=2))
    return t, van(jax.random.key(0), t, net, num_steps=200, batch_size=128, num_samples=4000)


def test_van_free_energies_ising_3x3(ising3_run):
    t, r = ising3_run
    F = -t.log_Z / t.beta
    fe = r.free_energy
    assert fe.variational > F - 4 * fe.variational_se  # F_q >= F (KL >= 0)
    assert abs(fe.importance - F) < 4 * fe.importance_se
    assert fe.ess > 1000 and r.converged
    assert r.history["free_energy"].shape == (200,)
    # training closed most of the gap KL(q || p) = beta (F_q - F) of the uniform start (F_q = -N ln 2 / beta)
    kl_uniform = t.beta * (-9 * np.log(2.0) / t.beta - F)
    assert t.beta * (fe.variational - F) < 0.25 * kl_uniform


def test_van_potts_q3_exact_log_Z():
    t = fs.targets.potts(L=2, q=3, beta=1.0)
    net = ar.made(2, t.spin_values, depth=1, width=2)
    r = van(jax.random.key(1), t, net, num_steps=150, batch_size=128, num_samples=4000)
    F = -t.log_Z / t.beta
    assert abs(r.free_energy.importance - F) < 4 * r.free_energy.importance_se
    assert r.free_energy.variational > F - 4 * r.free_energy.variational_se


def test_imh_from_exact_samples_stays_exact(ising3_run):
    """Chains started from exact draws keep the exact energy distribution (chi^2 over levels)."""
    t, r = ising3_run
    k = autoregressive_imh(t, r.net, r.params)
    n = 4000
    s0 = t.sample(jax.random.key(2), n)
    states = jax.vmap(k.init)(s0)

    @jax.jit
    def run(states, key):
        def body(st, kk):
            st, info = jax.vmap(k.step)(jax.random.split(kk, n), st)
            return st, info.is_accepted.mean()
        return jax.lax.scan(body, states, jax.random.split(key, 5))

    states, acc = run(states, jax.random.key(3))
    assert 0.2 < float(acc.mean()) < 1.0
    levels, log_g = t.exact_log_dos()
    p = np.exp(log_g - t.beta * levels - t.log_Z)
    e = np.asarray(t.energy(states.position), np.float64)
    counts = np.array([(np.abs(e - lv) < 1e-6).sum() for lv in levels])
    keep = n * p >= 5
    chi2 = np.sum((counts[keep] - n * p[keep]) ** 2 / (n * p[keep]))
    assert chi2 < keep.sum() + 4 * np.sqrt(2 * keep.sum())
    np.testing.assert_allclose(states.log_prob, t.log_prob(states.position), rtol=1e-6)


def test_van_bad_input():
    with pytest.raises(ValueError, match="beta > 0"):
        van(jax.random.key(0), fs.targets.ising(L=3, beta=0.0), num_steps=1)
    with pytest.raises(ValueError, match="net is for"):
        van(jax.random.key(0), fs.targets.ising(L=3, beta=0.4), ar.made(4), num_steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        van(jax.random.key(0), fs.targets.ising(L=3, beta=0.4), batch_size=1)


@pytest.mark.slow
def test_van_ising_8x8_beta_c():
    """Acceptance: F_q/N within 1e-3 (relative) of Kaufman at beta_c, IS F within 4 SE."""
    t = fs.targets.ising(L=8, beta=K_C)
    r = van(jax.random.key(0), t, num_steps=2000, batch_size=256, num_samples=20000)
    F = -kaufman_log_Z(8, K_C) / K_C
    fe = r.free_energy
    assert (fe.variational - F) / abs(F) < 1e-3
    assert abs(fe.importance - F) < 4 * fe.importance_se


@pytest.mark.slow
def test_van_potts_q3_4x4_beta_c():
    """Acceptance: Potts q = 3, L = 4 at beta_c = ln(1 + sqrt 3) vs the transfer-matrix ln Z."""
    t = fs.targets.potts(L=4, q=3, beta=float(np.log1p(np.sqrt(3.0))))
    r = van(jax.random.key(0), t, num_steps=1500, batch_size=256, num_samples=20000)
    F = -t.log_Z / t.beta
    fe = r.free_energy
    assert (fe.variational - F) / abs(F) < 1e-3
    assert abs(fe.importance - F) < 4 * fe.importance_se
