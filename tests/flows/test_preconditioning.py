"""Affine preconditioning: fit (mean, regularised Cholesky, diagonal rule), round trip, log-det vs jacfwd."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.flows.preconditioning import Affine, fit_affine, preconditioned
from tests.flows.conftest import jacobian_log_det, perturb

DIM = 4


def _samples(n=400, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(DIM, DIM)) + 2 * np.eye(DIM)
    return rng.normal(size=(n, DIM)) @ a.T + np.arange(DIM), a @ a.T


@pytest.fixture(scope="module", params=["full", "diagonal"])
def wrapped(request):
    x, _ = _samples()
    aff = fit_affine(x, full=request.param == "full")
    inner = fs.flows.realnvp(DIM, num_layers=2, hidden=(8,))
    params = perturb(inner.init(jax.random.key(0)), jax.random.key(1))
    return preconditioned(inner, aff), params, aff


def test_fit_is_sample_mean_and_regularised_cholesky():
    x, _ = _samples()
    aff = fit_affine(x)
    n = x.shape[0]
    s = np.cov(x, rowvar=False)
    expected = n / (n + 5) * s + 5 / (n + 5) * 1e-3 * np.diag(np.diag(s))
    assert aff.is_full
    np.testing.assert_allclose(aff.loc, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(aff.scale @ aff.scale.T, expected, rtol=1e-10)
    assert np.allclose(aff.scale, np.tril(aff.scale))


def test_diagonal_above_max_full_dim_and_with_few_samples():
    x, _ = _samples()
    assert fit_affine(x, max_full_dim=DIM - 1).scale.shape == (DIM,)
    assert fit_affine(x[: 2 * DIM - 1]).scale.shape == (DIM,)  # n < 2d: diagonal
    np.testing.assert_allclose(fit_affine(x, full=False).scale, x.std(0, ddof=1), rtol=1e-12)


def test_round_trip_and_log_det_vs_jacfwd(wrapped):
    flow, params, _ = wrapped
    z = jax.random.normal(jax.random.key(2), (16, DIM))
    x, ld = flow.forward(params, z)
    z2, ld_inv = flow.inverse(params, x)
    np.testing.assert_allclose(z2, z, atol=1e-4)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-4)
    np.testing.assert_allclose(ld, jacobian_log_det(lambda u: flow.forward(params, u)[0], z), atol=1e-3)


def test_log_prob_of_sample_is_log_q(wrapped):
    flow, params, _ = wrapped
    x, lq = flow.sample_and_log_prob(params, jax.random.key(3), 32)
    np.testing.assert_allclose(flow.log_prob(params, x), lq, rtol=1e-4, atol=1e-3)
    assert flow.log_prob(params, x[0]).shape == ()


def test_identity_inner_flow_is_the_fitted_gaussian():
    x, _ = _samples()
    aff = fit_affine(x)
    inner = fs.flows.realnvp(DIM, num_layers=2, hidden=(8,))
    flow = preconditioned(inner, aff)
    cov = aff.scale @ aff.scale.T
    pts = x[:10]
    r = pts - aff.loc
    exact = -0.5 * np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r) - 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1]
    np.testing.assert_allclose(flow.log_prob(inner.init(jax.random.key(0)), jnp.asarray(pts)), exact, rtol=1e-4)


def test_float64_under_x64():
    x, _ = _samples()
    with jax.enable_x64(True):
        inner = fs.flows.realnvp(DIM, num_layers=1, hidden=(4,))
        flow = preconditioned(inner, fit_affine(x))
        y, lq = flow.sample_and_log_prob(inner.init(jax.random.key(0)), jax.random.key(1), 5)
        assert y.dtype == jnp.float64 and lq.dtype == jnp.float64


def test_bad_input_raises():
    x, _ = _samples()
    inner = fs.flows.realnvp(DIM, num_layers=1, hidden=(4,))
    with pytest.raises(ValueError, match="non-finite"):
        fit_affine(np.where(np.arange(DIM) == 0, np.nan, x))
    with pytest.raises(ValueError, match="shape"):
        fit_affine(x[:1])
    with pytest.raises(ValueError, match="dim"):
        preconditioned(inner, fit_affine(x[:, :3]))
    with pytest.raises(ValueError, match="lower triangular"):
        preconditioned(inner, Affine(np.zeros(DIM), np.eye(DIM) + np.eye(DIM, k=1)))
    with pytest.raises(TypeError):
        preconditioned(inner, (np.zeros(DIM), np.ones(DIM)))
