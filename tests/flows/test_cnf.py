"""Continuous normalizing flow: exact log q (consistency, closed form), Flow contract, plug-in.

Compilation of a diffrax solve dominates the cost, so each test compiles few programs on tiny
fields (hidden=(8,)) in 2-D.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.flows.vector_fields import AffineField
from tests.flows.conftest import perturb


def _perturbed(flow, seed, scale):
    params = flow.init(jax.random.key(seed))
    return perturb(params, jax.random.key(seed + 1), scale)


@pytest.fixture(scope="module")
def f32_case():
    flow = fs.flows.cnf(2, hidden=(8,))
    params = _perturbed(flow, 0, 0.4)
    x, log_q = flow.sample_and_log_prob(params, jax.random.key(2), 32)
    return flow, params, x, log_q


def test_identity_at_init():
    flow = fs.flows.cnf(2, hidden=(4,), num_steps=2, solver="midpoint")
    params = flow.init(jax.random.key(0))
    assert isinstance(flow, fs.base.Flow) and flow.dim == 2
    z = jnp.array([[0.3, -1.2], [2.0, 0.5]])
    x, log_det = flow.forward(params, z)
    np.testing.assert_allclose(x, z, atol=1e-6)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-6)


def test_log_prob_of_sample_float32(f32_case):
    flow, params, x, log_q = f32_case
    assert x.dtype == jnp.float32 and x.shape == (32, 2) and log_q.shape == (32,)
    err = float(jnp.max(jnp.abs(flow.log_prob(params, x) - log_q)))
    assert err < 1e-4, err
    # the flow is far from the identity (the check is not trivial)
    assert float(jnp.std(log_q + 0.5 * jnp.sum(x**2, -1))) > 0.05


def test_log_prob_of_sample_float64():
    with jax.enable_x64(True):
        flow = fs.flows.cnf(2, hidden=(8,))
        params = _perturbed(flow, 0, 0.4)
        x, log_q = flow.sample_and_log_prob(params, jax.random.key(2), 16)
        assert x.dtype == jnp.float64
        err = float(jnp.max(jnp.abs(flow.log_prob(params, x) - log_q)))
    assert err < 1e-8, err


def test_affine_field_matches_closed_form():
    """v = A x + b: x = e^A z + (e^A - I) A^-1 b, q = N(m, e^A e^A^T)."""
    with jax.enable_x64(True):
        flow = fs.flows.cnf(2, field=AffineField(2))
        params = flow.init(jax.random.key(0))
        a = jnp.array([[0.3, -0.8], [0.5, -0.2]])
        b = jnp.array([1.0, -0.5])
        params["layers"][0]["params"] = {"A": a, "b": b}
        x = jnp.array([[0.1, 0.2], [2.0, -1.0], [-3.0, 0.5]])
        ea = jax.scipy.linalg.expm(a)
        mean = (ea - jnp.eye(2)) @ jnp.linalg.solve(a, b)
        cov = ea @ ea.T
        exact = jax.scipy.stats.multivariate_normal.logpdf(x, mean, cov)
        got = flow.log_prob(params, x)
        z, _ = flow.inverse(params, x)
    np.testing.assert_allclose(got, exact, atol=1e-8)
    np.testing.assert_allclose(z, jnp.linalg.solve(ea, (x - mean).T).T, atol=1e-8)


def test_exact_and_hutchinson_divergence():
    m = jnp.array([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 4.0, 0.25]])
    fn = lambda x: jnp.tanh(m @ x)
    x = jnp.array([0.1, -0.2, 0.3])
    exact = jnp.trace(jax.jacrev(fn)(x))
    np.testing.assert_allclose(fs.flows.divergence(fn, x), exact, rtol=1e-6)
    est = fs.flows.hutchinson_divergence(jax.random.key(0), fn, x, num_probes=4000)
    assert abs(float(est - exact)) < 0.15  # unbiased (Rademacher variance < 2 sum_ij J_ij^2 / M)


def test_importance_sampling_and_flow_imh(f32_case):
    """The CNF is a Flow: used as an IS proposal and as flow_imh's proposal on its own density."""
    flow, params, _, _ = f32_case
    target = lambda x: flow.log_prob(params, x[None])[0] + 1.5  # log Z = 1.5 exactly
    res = fs.importance_sampling(jax.random.key(3), flow, params, target, num_samples=64, warn=False)
    assert abs(float(res.log_Z) - 1.5) < 1e-4 and float(res.ess) > 63.9
    kernel = fs.kernels.flow_imh(target, fs.flows.proposal(flow, params))
    state = kernel.init(jnp.zeros(2))
    state, info = jax.jit(kernel.step)(jax.random.key(4), state)
    assert bool(info.is_accepted) and float(info.acceptance_rate) > 0.999


def test_bad_input():
    with pytest.raises(ValueError, match="solver"):
        fs.flows.cnf(2, solver="rk99")
    with pytest.raises(ValueError, match="num_steps"):
        fs.flows.cnf(2, num_steps=0)
    with pytest.raises(TypeError, match="field"):
        fs.flows.cnf(2, field=lambda t, x: x)
    flow = fs.flows.cnf(2, hidden=(4,), num_steps=1, solver="euler")
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        flow.log_prob(flow.init(jax.random.key(0)), jnp.zeros((3, 5)))


def test_check_log_q_passes_tight_and_fails_loudly_coarse(f32_case):
    """check_log_q: the adaptive default solve passes; a 2-step midpoint CNF (log q of the
    sample path != log q of the density path) raises InexactLogQError."""
    flow, params, _, _ = f32_case
    rep = fs.flows.check_log_q(flow, params, jax.random.key(7), 32)
    assert rep["ok"] and rep["max_abs_diff"] < 1e-4 and rep["max_batch_diff"] < 1e-4
    coarse = fs.flows.cnf(2, hidden=(8,), num_steps=2, solver="midpoint")
    with pytest.raises(fs.flows.InexactLogQError, match="not exact enough"):
        fs.flows.check_log_q(coarse, params, jax.random.key(7), 32, what="coarse cnf")
    rep = fs.flows.check_log_q(coarse, params, jax.random.key(7), 32, raise_error=False)
    assert not rep["ok"] and rep["max_abs_diff"] > 1e-3
