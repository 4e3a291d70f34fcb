"""Funnel, Rosenbrock (pocoMC) and dual moon (flowMC): exact log Z, exact samples, modes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import flowsamp as fs


def test_funnel_log_prob_normalized_and_samples():
    t = fs.targets.funnel()
    assert t.dim == 10 and t.log_Z == 0.0
    x = np.random.default_rng(0).normal(size=(4, 10))
    want = stats.norm(0, 3).logpdf(x[:, 0]) + stats.norm(0, np.exp(x[:, :1] / 2)).logpdf(x[:, 1:]).sum(1)
    np.testing.assert_allclose(jax.jit(jax.vmap(t.log_prob))(jnp.asarray(x, jnp.float32)), want, rtol=1e-5)
    with jax.enable_x64(True):
        assert float(t.log_prob(jnp.asarray(x[0]))) == pytest.approx(want[0], rel=1e-13)
    n = 20_000
    s = np.asarray(t.sample(jax.random.key(5), n), np.float64)
    assert abs(s[:, 0].mean()) < 4 * 3 / np.sqrt(n)
    assert abs(s[:, 0].var() - 9) < 4 * 9 * np.sqrt(2 / n)
    # x_i / exp(v / 2) is standard normal
    u = s[:, 1:] * np.exp(-s[:, :1] / 2)
    assert abs(u.mean()) < 4 / np.sqrt(u.size) and abs(u.var() - 1) < 4 * np.sqrt(2 / u.size)


def test_rosenbrock_log_Z_by_2d_quadrature():
    t = fs.targets.rosenbrock(2)
    f = lambda b, a: np.exp(-10 * (a * a - b) ** 2 - (a - 1) ** 2) / 400.0  # noqa: E731
    # integrate b first around its ridge b = a^2 (width 0.2), clipped to the box
    z = integrate.quad(
        lambda a: integrate.quad(f, max(-10, a * a - 3), min(10, a * a + 3), args=(a,), epsabs=0, epsrel=1e-12)[0],
        -10, 10, points=[1.0], epsabs=0, epsrel=1e-12, limit=200,
    )[0]
    assert t.log_Z == pytest.approx(np.log(z), abs=1e-9)
    assert fs.targets.rosenbrock().log_Z == pytest.approx(5 * np.log(z), abs=1e-8)


def test_rosenbrock_log_prob_box_and_grad():
    t = fs.targets.rosenbrock()
    x = jnp.ones(10)
    assert float(t.log_prob(x)) == pytest.approx(-10 * np.log(20), rel=1e-6)
    assert float(t.log_prob(x.at[3].set(10.5))) == -np.inf
    g = jax.grad(t.log_prob)(jnp.zeros(10))
    np.testing.assert_allclose(g[0::2], 2.0) and np.testing.assert_allclose(g[1::2], 0.0)


def test_rosenbrock_exact_samples():
    t = fs.targets.rosenbrock(2)
    n = 20_000
    x = np.asarray(t.sample(jax.random.key(6), n), np.float64)
    assert np.all(np.abs(x) <= 10)
    # exact moments of the pair by quadrature against the same density
    dens = lambda b, a: np.exp(-10 * (a * a - b) ** 2 - (a - 1) ** 2)  # noqa: E731
    def moment(g):
        inner = lambda a: integrate.quad(lambda b: g(a, b) * dens(b, a), a * a - 3, a * a + 3)[0]  # noqa: E731
        return integrate.quad(inner, -6, 8, points=[1.0], limit=200)[0]
    z = moment(lambda a, b: 1.0)
    for g, v in ((lambda a, b: a, x[:, 0]), (lambda a, b: b, x[:, 1]), (lambda a, b: a * a, x[:, 0] ** 2)):
        assert abs(v.mean() - moment(g) / z) < 4 * v.std() / np.sqrt(n)


def test_dual_moon_log_Z_polar_quadrature_and_modes():
    t = fs.targets.dual_moon()
    # independent polar quadrature: periodic trapezoid in theta, trapezoid in r on [1, 3]
    # (the ring factor is e^-50 at both ends), both spectrally accurate for this smooth integrand
    r = np.linspace(1.0, 3.0, 801)
    th = np.linspace(0.0, 2 * np.pi, 1024, endpoint=False)
    R, TH = np.meshgrid(r, th, indexing="ij")
    with jax.enable_x64(True):
        pts = jnp.asarray(np.stack([R * np.cos(TH), R * np.sin(TH)], -1))
        lp = np.asarray(jax.jit(t.log_prob)(pts))
    z = np.trapezoid(R[:, 0] * np.exp(lp).sum(1) * (2 * np.pi / len(th)), r)
    assert t.log_Z == pytest.approx(np.log(z), abs=1e-7)
    pts = jnp.asarray([[-1.4, -1.4], [-1.4, 1.4], [1.4, -1.4], [1.4, 1.4]])
    np.testing.assert_array_equal(t.mode_of(pts), [0, 1, 2, 3])
    np.testing.assert_allclose(t.mode_weights, 0.25)
    # symmetry that makes the weights exact
    lps = jax.vmap(t.log_prob)(pts)
    np.testing.assert_allclose(lps, lps[0], rtol=1e-6)
    t5 = fs.targets.dual_moon(5)
    assert t5.log_Z is None and t5.log_prob(jnp.zeros(5)).shape == ()
    with pytest.raises(NotImplementedError):
        t.sample(jax.random.key(0), 2)


@pytest.mark.parametrize(
    "fn, kwargs",
    [
        (fs.targets.funnel, dict(dim=1)),
        (fs.targets.funnel, dict(scale=0.0)),
        (fs.targets.rosenbrock, dict(dim=3)),
        (fs.targets.rosenbrock, dict(bound=-1.0)),
        (fs.targets.dual_moon, dict(dim=1)),
    ],
)
def test_misc_bad_input(fn, kwargs):
    with pytest.raises(ValueError):
        fn(**kwargs)
