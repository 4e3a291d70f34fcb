"""Gaussian and Gaussian-mixture targets: exact log Z, exact samples, modes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import flowsamp as fs

COV = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
MEAN = np.array([1.0, -2.0, 0.5])


@pytest.fixture(scope="module")
def gauss():
    return fs.targets.gaussian(MEAN, COV)


def test_gaussian_log_prob_matches_scipy(gauss):
    x = np.random.default_rng(0).normal(size=(5, 3))
    want = stats.multivariate_normal(MEAN, COV).logpdf(x) + gauss.log_Z
    got = jax.vmap(jax.jit(gauss.log_prob))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    g = jax.grad(gauss.log_prob)(jnp.asarray(x[0], jnp.float32))
    np.testing.assert_allclose(g, -np.linalg.solve(COV, x[0] - MEAN), rtol=1e-5, atol=1e-5)


def test_gaussian_log_Z_closed_form(gauss):
    _, logdet = np.linalg.slogdet(COV)
    assert gauss.log_Z == pytest.approx(1.5 * np.log(2 * np.pi) + 0.5 * logdet, rel=1e-12)
    assert gauss.mode_weights.tolist() == [1.0]


def test_gaussian_float64(gauss):
    with jax.enable_x64(True):
        x = jnp.asarray([0.1, 0.2, 0.3], jnp.float64)
        lp = jax.jit(gauss.log_prob)(x)
        assert lp.dtype == jnp.float64
        want = stats.multivariate_normal(MEAN, COV).logpdf(np.asarray(x)) + gauss.log_Z
        assert float(lp) == pytest.approx(want, rel=1e-12)
        assert gauss.sample(jax.random.key(0), 4).dtype == jnp.float64


def test_gaussian_exact_samples_moments(gauss):
    n = 20_000
    x = np.asarray(gauss.sample(jax.random.key(1), n), np.float64)
    assert x.shape == (n, 3)
    se = np.sqrt(np.diag(COV) / n)
    assert np.all(np.abs(x.mean(0) - MEAN) < 4 * se)
    # second moments: var of (x_i - m_i)(x_j - m_j) estimated from the sample
    r = x - MEAN
    prods = r[:, :, None] * r[:, None, :]
    se2 = prods.std(0) / np.sqrt(n)
    assert np.all(np.abs(prods.mean(0) - COV) < 4 * se2)
    np.testing.assert_array_equal(gauss.mode_of(x[:4]), np.zeros(4))


@pytest.mark.parametrize(
    "mean, cov, match",
    [
        ([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]], "positive definite"),
        ([0.0, 0.0], [[1.0, 0.1], [0.0, 1.0]], "symmetric"),
        ([0.0, 0.0], np.eye(3), "shape"),
        ([0.0, 0.0], -1.0, "> 0"),
        ([[0.0]], 1.0, "vector"),
    ],
)
def test_gaussian_bad_input(mean, cov, match):
    with pytest.raises(ValueError, match=match):
        fs.targets.gaussian(mean, cov)


@pytest.fixture(scope="module")
def mixture():
    means = [[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]]
    covs = [np.eye(2), [[1.0, 0.5], [0.5, 2.0]], 0.3 * np.eye(2)]
    return fs.targets.gaussian_mixture(means, covs, [0.5, 0.3, 0.2])


def test_mixture_log_prob_matches_scipy(mixture):
    x = np.random.default_rng(1).normal(size=(6, 2)) * 2
    want = np.log(sum(w * stats.multivariate_normal(m, c).pdf(x) for w, m, c in zip(mixture.weights, mixture.means, mixture.covs)))
    got = jax.jit(jax.vmap(mixture.log_prob))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert mixture.log_Z == 0.0
    assert np.all(np.isfinite(jax.vmap(jax.grad(mixture.log_prob))(jnp.asarray(x, jnp.float32))))


def test_mixture_mode_of_known_points(mixture):
    np.testing.assert_array_equal(mixture.mode_of(jnp.asarray(mixture.means)), [0, 1, 2])
    assert int(mixture.mode_of(jnp.asarray([3.1, 1.0]))) == 1


def test_mixture_cov_forms_agree():
    means = np.array([[0.0, 1.0], [2.0, 0.0]])
    a = fs.targets.gaussian_mixture(means, 0.5)
    b = fs.targets.gaussian_mixture(means, [0.5, 0.5])
    c = fs.targets.gaussian_mixture(means, [[0.5, 0.5], [0.5, 0.5]])
    d = fs.targets.gaussian_mixture(means, np.stack([0.5 * np.eye(2)] * 2))
    x = jnp.asarray([0.3, -0.2])
    vals = [float(t.log_prob(x)) for t in (a, b, c, d)]
    np.testing.assert_allclose(vals, vals[0], rtol=1e-6)


def test_four_mode_mixture_exact_samples():
    t = fs.targets.four_mode_mixture(10)
    assert t.dim == 10 and t.num_modes == 4
    np.testing.assert_allclose(t.means[:, :2], [[-4, -4], [-4, 4], [4, -4], [4, 4]])
    n = 20_000
    x = t.sample(jax.random.key(2), n)
    counts = np.bincount(np.asarray(t.mode_of(x)), minlength=4) / n
    w = t.mode_weights
    np.testing.assert_allclose(w, [0.1, 0.2, 0.3, 0.4])
    assert np.all(np.abs(counts - w) < 4 * np.sqrt(w * (1 - w) / n))
    mean = np.asarray(x, np.float64).mean(0)
    want = w @ t.means
    se = np.asarray(x, np.float64).std(0) / np.sqrt(n)
    assert np.all(np.abs(mean - want) < 4 * se)
    t2 = fs.targets.four_mode_mixture(2)
    np.testing.assert_allclose(np.abs(t2.means), 5.0)


def test_tutorial_mixture_quadrant_mass():
    t = fs.targets.tutorial_mixture()
    s = 1.0 / np.sqrt(0.1)
    exact = 0.25 * stats.norm.cdf(-s) ** 2 + 0.75 * stats.norm.cdf(s) ** 2
    assert exact == pytest.approx(0.748827, abs=5e-7)  # REFERENCE.md: 2-D tutorial mixture
    # quadrature of the target's own density over the quadrant
    g = np.linspace(0.0, 4.0, 801)
    X, Y = np.meshgrid(g, g, indexing="ij")
    with jax.enable_x64(True):
        dens = np.exp(np.asarray(jax.jit(t.log_prob)(jnp.stack([X.ravel(), Y.ravel()], -1))))
    q = np.trapezoid(np.trapezoid(dens.reshape(X.shape), g, axis=1), g)
    assert q == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(means=[[0.0, 0.0]], covs=1.0, weights=[0.5]), "sum to 1"),
        (dict(means=[[0.0, 0.0], [1.0, 1.0]], covs=1.0, weights=[1.2, -0.2]), "non-negative"),
        (dict(means=[[0.0, 0.0], [1.0, 1.0]], covs=[1.0, 1.0, 1.0]), "shape"),
        (dict(means=[0.0, 0.0]), "shape"),
        (dict(means=[[0.0, 0.0]], covs=[[[1.0, 3.0], [3.0, 1.0]]]), "positive definite"),
    ],
)
def test_mixture_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fs.targets.gaussian_mixture(**kwargs)
