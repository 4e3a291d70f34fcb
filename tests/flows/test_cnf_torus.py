"""Equivariant torus CNF (fs.flows.torus_cnf), torus flow matching, the soft-sphere mixture."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.flows.torus import wrap
from tests.flows.conftest import perturb

L = 2.5


@pytest.fixture(scope="module")
def case():
    with jax.enable_x64(True):
        flow = fs.flows.torus_cnf(3, 2, L, species=[0, 0, 1], hidden=(8,), num_fourier=2)
        params = perturb(flow.init(jax.random.key(0)), jax.random.key(1), 0.1)
        x, log_q = flow.sample_and_log_prob(params, jax.random.key(2), 8)
        lp = lambda y: flow.log_prob(params, y)
        res = {"x": x, "log_q": log_q, "lp": lp(x), "shift": lp(x + jnp.tile(jnp.array([0.7, -1.9]), 3)),
               "lift": lp(x + L * jnp.array([1.0, 0, -2, 0, 0, 3])),
               "perm": lp(x.reshape(8, 3, 2)[:, [1, 0, 2]].reshape(8, 6))}
    return flow, params, res


def test_structural_divergence_is_exact(case):
    flow, params, _ = case
    with jax.enable_x64(True):
        x = jax.random.uniform(jax.random.key(5), (6,), jnp.float64, maxval=L)
        generic = fs.flows.divergence(lambda y: flow.velocity(params, 0.3, y), x)
        np.testing.assert_allclose(flow.divergence_fn(params, 0.3, x), generic, rtol=1e-10)
        # the pair-additive field (no environment, Fourier features only) too
        pair = fs.flows.torus_cnf(3, 2, L, species=[0, 1, 1], hidden=(8,), num_fourier=2, num_radial=0, env_width=0)
        pp = perturb(pair.init(jax.random.key(6)), jax.random.key(7), 0.1)
        generic = fs.flows.divergence(lambda y: pair.velocity(pp, 0.7, y), x)
        assert abs(float(generic)) > 1e-3  # not trivially zero
        np.testing.assert_allclose(pair.divergence_fn(pp, 0.7, x), generic, rtol=1e-10)


def test_torus_cnf_bad_input():
    with pytest.raises(ValueError, match="pair features"):
        fs.flows.torus_cnf(3, 2, L, num_fourier=0, num_radial=0)
    with pytest.raises(ValueError, match="env_width"):
        fs.flows.torus_cnf(3, 2, L, env_width=-1)
    with pytest.raises(ValueError, match="species"):
        fs.flows.torus_cnf(3, 2, L, species=[0, 1])


def test_log_q_exact_and_invariant(case):
    _, _, r = case
    assert r["x"].dtype == jnp.float64 and float(r["x"].min()) >= 0 and float(r["x"].max()) < L
    assert float(jnp.std(r["log_q"])) > 0.05  # not the uniform base
    np.testing.assert_allclose(r["lp"], r["log_q"], atol=1e-8)  # sample path = density path
    for name in ("shift", "lift", "perm"):  # translations, periodic images, same-species swaps
        np.testing.assert_allclose(r[name], r["lp"], atol=1e-8, err_msg=name)


def test_torus_flow_matching_uses_the_geodesic(case):
    flow, params, _ = case
    with jax.enable_x64(True):
        data = jax.random.uniform(jax.random.key(3), (64, 6), jnp.float64, maxval=L)
        loss = fs.train.flow_matching(flow, data, batch_size=16)
        zero = jax.tree.map(jnp.zeros_like, params)  # v = 0: loss = mean |wrap(x1 - x0)|^2
        value, _ = loss(zero, jax.random.key(4))
        k_data, k_base, _ = jax.random.split(jax.random.key(4), 3)
        assert np.isfinite(float(value)) and float(value) <= (L / 2) ** 2
    with pytest.raises(ValueError, match="sigma_min"):
        fs.train.flow_matching(flow, data, sigma_min=0.1)


def test_soft_sphere_energy_and_g_of_r():
    t = fs.targets.soft_sphere_mixture(4, density=0.25, temperature=2.0, cutoff=1.4)  # L = 4
    assert t.box_length == pytest.approx(4.0) and t.species == (0, 0, 1, 1)
    x = jnp.array([0.1, 0.1, 3.6, 0.1, 2.0, 2.0, 2.0, 3.45])  # pair 0-1 at 0.5 (min image), 2-3 at 1.45
    u01 = (1 / 0.5) ** 12 - (1 / 1.4) ** 12
    u23 = (1.4 / 1.45) ** 12 - (1 / 1.4) ** 12
    np.testing.assert_allclose(t.energy(x), (u01 + u23) / 4, rtol=1e-5)
    np.testing.assert_allclose(t.log_prob(x), -0.5 * (u01 + u23), rtol=1e-5)
    # uniform points: g(r) = 1 in expectation for r <= L/2
    t16 = fs.targets.soft_sphere_mixture(16, density=0.5)
    edges = np.linspace(0.5, t16.box_length / 2, 6)
    pts = jax.random.uniform(jax.random.key(0), (4000, 32), maxval=t16.box_length)
    h = np.asarray(jax.vmap(lambda y: t16.pair_histogram(y, edges))(pts))
    g = fs.targets.pair_correlation(t16, h.mean(0), edges)
    se = fs.targets.pair_correlation(t16, h.std(0) / np.sqrt(4000), edges)
    assert np.all(np.abs(g - 1) < 4 * se), (g, se)
    with pytest.raises(ValueError, match="half the box"):
        fs.targets.soft_sphere_mixture(4, density=1.0)
    with pytest.raises(ValueError, match="even"):
        fs.targets.soft_sphere_mixture(5)
