"""Bases (standard, diagonal, informed Gaussian) and the one-point flow proposal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import flowsamp as fs
from flowsamp.base import Proposal


def _precision():
    # 1-D phi^4 "coupled" base (Gabrie, Rotskoff & Vanden-Eijnden): beta [(2aN + 1/(aN)) I - aN A]
    n, a, beta = 6, 0.1, 20.0
    adj = np.eye(n, k=1) + np.eye(n, k=-1)
    return beta * ((2 * a * n + 1 / (a * n)) * np.eye(n) - a * n * adj)


def test_phi4_precision_matches_formula():
    np.testing.assert_allclose(fs.flows.phi4_1d_precision(6, a=0.1, beta=20.0), _precision(), rtol=1e-14)


@pytest.mark.parametrize("name", ["standard", "diagonal", "informed"])
def test_base_log_prob_matches_scipy(name):
    prec = _precision()
    dim = prec.shape[0]
    if name == "standard":
        base, cov, mean = fs.flows.standard_normal(dim), np.eye(dim), np.zeros(dim)
        params = base.init(jax.random.key(0))
    elif name == "diagonal":
        base = fs.flows.diagonal_gaussian(dim)
        params = {"loc": jnp.arange(dim) * 0.5, "log_scale": jnp.linspace(-1.0, 1.0, dim)}
        mean, cov = np.arange(dim) * 0.5, np.diag(np.exp(2 * np.linspace(-1.0, 1.0, dim)))
    else:
        mean = np.linspace(-1, 1, dim)
        base, cov = fs.flows.informed_gaussian(prec, mean), np.linalg.inv(prec)
        params = base.init(jax.random.key(0))
    z, log_p = base.sample_and_log_prob(params, jax.random.key(1), 20_000)
    ref = scipy.stats.multivariate_normal(mean, cov).logpdf(np.asarray(z, np.float64))
    np.testing.assert_allclose(log_p, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(base.log_prob(params, z), ref, rtol=1e-5, atol=1e-4)
    # sample covariance within 4 standard errors: se(C_ij) = sqrt((C_ii C_jj + C_ij^2) / n)
    emp = np.cov(np.asarray(z, np.float64).T)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / z.shape[0])
    assert np.all(np.abs(emp - cov) < 4 * se)


def test_informed_base_rejects_bad_precision():
    with pytest.raises(ValueError, match="positive definite"):
        fs.flows.informed_gaussian(-np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        fs.flows.informed_gaussian(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        fs.flows.informed_gaussian(np.ones((2, 3)))


def test_flow_on_informed_base_is_base_at_init():
    prec = _precision()
    base = fs.flows.informed_gaussian(prec)
    flow = fs.flows.rq_spline(prec.shape[0], num_layers=2, hidden=(8,), base=base)
    params = flow.init(jax.random.key(0))
    x, log_q = flow.sample_and_log_prob(params, jax.random.key(1), 64)
    ref = scipy.stats.multivariate_normal(np.zeros(6), np.linalg.inv(prec)).logpdf(np.asarray(x, np.float64))
    np.testing.assert_allclose(log_q, ref, rtol=1e-5, atol=1e-4)


def test_flow_with_learnable_diagonal_base():
    flow = fs.flows.realnvp(3, num_layers=2, hidden=(8,), base=fs.flows.diagonal_gaussian(3))
    params = flow.init(jax.random.key(0))
    params["base"]["log_scale"] = jnp.log(jnp.array([0.5, 1.0, 2.0]))
    x, log_q = flow.sample_and_log_prob(params, jax.random.key(1), 4000)
    np.testing.assert_allclose(flow.log_prob(params, x), log_q, rtol=1e-5, atol=1e-5)
    # std within 4 standard errors, se(s) ~ s / sqrt(2n)
    s = np.std(np.asarray(x), axis=0)
    assert np.all(np.abs(s - [0.5, 1.0, 2.0]) < 4 * np.array([0.5, 1.0, 2.0]) / np.sqrt(2 * 4000))
    with pytest.raises(ValueError, match="dim"):
        fs.flows.realnvp(3, base=fs.flows.standard_normal(2))


def test_proposal_one_point_contract():
    flow = fs.flows.rq_spline(2, num_layers=2, hidden=(8,))
    params = jax.tree.map(lambda a: a + 0.05, flow.init(jax.random.key(0)))
    prop = fs.flows.proposal(flow, params)
    assert isinstance(prop, Proposal)
    x, log_q = prop.sample_and_log_prob(jax.random.key(1))
    assert x.shape == (2,) and log_q.shape == ()
    np.testing.assert_allclose(prop.log_prob(x), log_q, rtol=1e-5, atol=1e-5)
    keys = jax.random.split(jax.random.key(2), 5)
    xs, lqs = jax.jit(jax.vmap(prop.sample_and_log_prob))(keys)
    assert xs.shape == (5, 2) and lqs.shape == (5,)
    np.testing.assert_allclose(jax.vmap(prop.log_prob)(xs), lqs, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        fs.flows.proposal(object(), params)
