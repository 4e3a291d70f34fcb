"""fs.rare.committor: API and boundary conditions (fast); accuracy against an analytic committor (slow).

Analytic case: pi(x, y) = exp(-(x^2 - 1)^2 / eps) N(y; 0, 1), A = {x < -0.8}, B = {x > 0.8}.
The committor depends on x alone, q(x) = int_{-0.8}^x e^{U/eps} / int_{-0.8}^{0.8} e^{U/eps},
U = (x^2 - 1)^2, and nu = E_pi |q'|^2 = 1 / (Z_x int_{-0.8}^{0.8} e^{U/eps}) with
Z_x = int e^{-U/eps} (quadrature).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import flowsamp as fs

EPS = 0.25


def log_prob(x):
    return -((x[0] ** 2 - 1.0) ** 2) / EPS - 0.5 * x[1] ** 2


def in_A(x):
    return x[..., 0] < -0.8


def in_B(x):
    return x[..., 0] > 0.8


X0 = jnp.array([[-1.0, 0.0], [1.0, 0.0]])


def exact():
    inv = lambda s: np.exp((s**2 - 1) ** 2 / EPS)  # noqa: E731
    den = integrate.quad(inv, -0.8, 0.8)[0]
    zx = integrate.quad(lambda s: np.exp(-((s**2 - 1) ** 2) / EPS), -np.inf, np.inf)[0]
    q = lambda s: np.clip(integrate.quad(inv, -0.8, min(max(s, -0.8), 0.8))[0] / den, 0, 1)  # noqa: E731
    return q, 1.0 / (zx * den)


@pytest.fixture(scope="module")
def small():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.NotConvergedWarning)  # 2 rounds: a smoke run
        return fs.rare.committor(jax.random.key(0), log_prob, in_A, in_B, X0, num_windows=4, chains_per_window=2,
                                 num_rounds=2, num_steps=10, num_opt_steps=2, num_production_steps=10,
                                 hidden=(8,))


def test_result_api_and_boundary(small):
    x = jnp.array([[-1.0, 0.3], [0.0, 0.0], [1.0, -0.2]])
    q = np.asarray(small.q(x))
    assert q.shape == (3,) and q[0] == 0.0 and q[2] == 1.0 and 0.0 <= q[1] <= 1.0
    assert float(small.q(x[1])) == pytest.approx(float(q[1]))
    assert np.isfinite(small.nu) and small.nu > 0 and np.isfinite(small.nu_se)
    assert small.positions.shape == (4, 2, 2, 2) and small.log_weights.shape == (16,)
    assert small.rate == pytest.approx(small.nu)
    assert isinstance(small.converged, bool) and isinstance(small.problems, list)


def test_mbar_recovers_known_normalisers():
    """Windows = Gaussians N(m_l, 1) of pi = N(0, 1) times bias; log Z_l is known in closed form."""
    rng = np.random.default_rng(0)
    k, u = 4.0, np.array([-1.0, 0.0, 1.0])
    prec = 1 + k
    xs = np.concatenate([rng.normal(k * ul / prec, 1 / np.sqrt(prec), 4000) for ul in u])
    bias = 0.5 * k * (xs[None, :] - u[:, None]) ** 2
    log_Z, log_w, res = fs.rare.mbar(jnp.asarray(bias), jnp.full((3,), 4000.0))
    exact_lz = -0.5 * k * u**2 / prec  # log int N(x) e^{-k(x-u)^2/2} up to a constant
    np.testing.assert_allclose(np.asarray(log_Z), exact_lz - exact_lz[0], atol=0.05)
    w = np.exp(np.asarray(log_w))
    assert abs(np.sum(w * xs)) < 0.05 and abs(np.sum(w * xs**2) - 1) < 0.05 and float(res) < 1e-4


def test_bad_input():
    with pytest.raises(ValueError, match="in A and a point in B"):
        fs.rare.committor(jax.random.key(0), log_prob, in_A, in_B, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="num_windows"):
        fs.rare.committor(jax.random.key(0), log_prob, in_A, in_B, X0, num_windows=1)
    with pytest.raises(ValueError, match="kernel"):
        fs.rare.committor(jax.random.key(0), log_prob, in_A, in_B, X0, kernel=fs.kernels.gibbs)


@pytest.mark.slow
@pytest.mark.parametrize("importance_sampling", [True, False])
def test_double_well_committor(importance_sampling):
    q_exact, nu_exact = exact()
    res = fs.rare.committor(jax.random.key(1), log_prob, in_A, in_B, X0, importance_sampling=importance_sampling)
    xs = np.linspace(-0.8, 0.8, 33)
    pts = np.stack([xs, np.zeros_like(xs)], 1)
    err = np.max(np.abs(np.asarray(res.q(jnp.asarray(pts, jnp.float32))) - np.array([q_exact(s) for s in xs])))
    print(f"IS={importance_sampling}: max|q - q_exact| {err:.3f}, nu {res.nu:.4g} +- {res.nu_se:.2g} vs {nu_exact:.4g}")
    if importance_sampling:
        assert err < 0.1
        assert abs(res.nu - nu_exact) < 4 * res.nu_se + 0.2 * nu_exact


def _fixed_q_windows(exchange, key=3, C=8, num_steps=1000):
    """Windows on z = logit q of a FIXED q(x) = sigmoid(x / 0.15) of the double well; MBAR weights;
    E_pi |grad q|^2 with its jackknife SE over chains (the estimator of committor's nu)."""
    s_ = 0.15
    centres = jnp.linspace(-8.0, 8.0, 12)
    k = (11 / (0.7 * 16.0)) ** 2
    start = jnp.repeat(jnp.stack([s_ * centres, jnp.zeros(12)], 1)[:, None], C, axis=1)
    cv = lambda x: x[0] / s_  # noqa: E731
    s = fs.rare.run_windows(jax.random.key(key), fs.kernels.rwmh, log_prob, cv, centres, jnp.asarray(k), start,
                            jnp.full((12,), 0.1), num_steps, thin=5, exchange=exchange)
    T = s.positions.shape[2]
    g2 = lambda x: (jax.nn.sigmoid(x[..., 0] / s_) * (1 - jax.nn.sigmoid(x[..., 0] / s_)) / s_) ** 2  # noqa: E731

    def estimate(pos, n):
        xs = pos.reshape(-1, 2)
        bias = 0.5 * k * (xs[None, :, 0] / s_ - centres[:, None]) ** 2
        _, log_w, _ = fs.rare.mbar(bias, jnp.full((12,), float(n * T)))
        return float(jnp.sum(jnp.exp(log_w) * g2(xs)))

    nu = estimate(s.positions, C)
    jack = np.array([estimate(s.positions[:, [c for c in range(C) if c != g]], C - 1) for g in range(C)])
    return nu, np.sqrt((C - 1) / C * np.sum((jack - jack.mean()) ** 2)), s


def test_fixed_q_window_reweighting_matches_quadrature():
    """The exact check of the umbrella reweighting: with q fixed, MBAR-weighted window draws give
    E_pi |grad q|^2 of 1-D quadrature within 4 SE (a sign or scale error in the bias, or
    unnormalised weights, moves it by orders of magnitude)."""
    s_ = 0.15
    zx = integrate.quad(lambda t: np.exp(-((t**2 - 1) ** 2) / EPS), -np.inf, np.inf)[0]
    sig = lambda t: 1 / (1 + np.exp(-t / s_))  # noqa: E731
    exact_nu = integrate.quad(lambda t: np.exp(-((t**2 - 1) ** 2) / EPS) * (sig(t) * (1 - sig(t)) / s_) ** 2,
                              -3, 3, points=[0.0], limit=200)[0] / zx
    nu, se, s = _fixed_q_windows(True)
    assert abs(nu - exact_nu) < 4 * se, (nu, se, exact_nu)
    assert se < 0.2 * exact_nu
    assert s.swap_acceptance.shape == (11,) and float(s.swap_acceptance.min()) > 0.05
