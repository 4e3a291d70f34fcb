"""phi^4 targets: transfer-matrix ln Z (1-D), free-field ln Z and exact samples (2-D), modes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import flowsamp as fs


@pytest.fixture(scope="module")
def chain():
    return fs.targets.phi4_1d()  # N = 100, a = 0.1, b = 0, beta = 20


def _u_1d(phi, N, a, b):
    full = np.concatenate([[0.0], phi, [0.0]])
    aN = a * N
    return aN / 2 * np.sum(np.diff(full) ** 2) + np.sum((1 - phi**2) ** 2 / 4 + b * phi) / aN


def test_phi4_1d_log_Z_reference(chain):
    assert chain.log_Z == pytest.approx(-196.912221, abs=2e-6)  # REFERENCE.md (transfer matrix, b = 0)
    np.testing.assert_allclose(chain.mode_weights, [0.5, 0.5], atol=1e-12)


def test_phi4_1d_transfer_matches_dblquad():
    N, a, b, beta = 2, 0.5, 0.3, 1.0
    t = fs.targets.phi4_1d(N, a, b, beta)
    f = lambda y, x: np.exp(-beta * _u_1d(np.array([x, y]), N, a, b))  # noqa: E731
    z = integrate.dblquad(f, -5, 5, -5, 5, epsabs=0, epsrel=1e-10)[0]
    z_pos = integrate.dblquad(f, -5, 5, 0, 5, epsabs=0, epsrel=1e-10)[0]  # middle site x[1] > 0
    assert t.log_Z == pytest.approx(np.log(z), abs=1e-8)
    # the sign indicator is a step at 0: the trapezoid rule's half-weight there is O(h^2) ~ 1e-6
    assert t.mode_weights[1] == pytest.approx(z_pos / z, abs=1e-5)


def test_phi4_1d_log_prob_and_modes(chain):
    x = np.random.default_rng(0).normal(size=(3, 100))
    lp = jax.jit(jax.vmap(chain.log_prob))(jnp.asarray(x, jnp.float32))
    want = [-20.0 * _u_1d(xi, 100, 0.1, 0.0) for xi in x]
    np.testing.assert_allclose(lp, want, rtol=1e-5)
    g = jax.grad(chain.log_prob)(jnp.zeros(100))
    assert np.all(np.isfinite(g))
    with jax.enable_x64(True):
        lp64 = chain.log_prob(jnp.asarray(x[0]))
        assert lp64.dtype == jnp.float64 and float(lp64) == pytest.approx(want[0], rel=1e-13)
    pts = np.zeros((2, 100))
    pts[0, 50], pts[1, 50] = 0.3, -0.3
    np.testing.assert_array_equal(chain.mode_of(jnp.asarray(pts)), [1, 0])


def test_phi4_1d_informed_precision(chain):
    P = chain.informed_precision()
    aN = 10.0
    assert P.shape == (100, 100)
    assert P[0, 0] == pytest.approx(20 * (2 * aN + 1 / aN)) and P[0, 1] == pytest.approx(-20 * aN)
    assert P[0, 2] == 0.0 and np.all(np.linalg.eigvalsh(P) > 0)


@pytest.fixture(scope="module")
def free():
    return fs.targets.phi4_2d(L=8, m2=1.0, lam=0.0)


def test_phi4_2d_free_field_log_Z(free):
    assert free.log_Z == pytest.approx(-11.622885, abs=1e-6)  # REFERENCE.md, L = 8, m2 = 1
    Q = free.precision()
    _, logdet = np.linalg.slogdet(Q)
    assert free.log_Z == pytest.approx(0.5 * 64 * np.log(2 * np.pi) - 0.5 * logdet, abs=1e-10)
    x = np.random.default_rng(1).normal(size=64)
    assert float(free.log_prob(jnp.asarray(x, jnp.float32))) == pytest.approx(-0.5 * x @ Q @ x, rel=1e-5)


def test_phi4_2d_action_by_hand():
    t = fs.targets.phi4_2d(L=3, m2=-4.0, lam=8.0)
    phi = np.random.default_rng(2).normal(size=(3, 3))
    s = 0.0
    for i in range(3):
        for j in range(3):
            nb = phi[(i + 1) % 3, j] + phi[(i - 1) % 3, j] + phi[i, (j + 1) % 3] + phi[i, (j - 1) % 3]
            s += phi[i, j] * (4 * phi[i, j] - nb) - 4.0 * phi[i, j] ** 2 + 8.0 * phi[i, j] ** 4
    with jax.enable_x64(True):
        lp = t.log_prob(jnp.asarray(phi.ravel()))  # row-major layout
        assert lp.dtype == jnp.float64 and float(lp) == pytest.approx(-s, rel=1e-13)
    assert t.log_Z is None
    np.testing.assert_array_equal(t.mode_of(jnp.asarray([phi.ravel(), -phi.ravel()])), [int(phi.sum() > 0), int(phi.sum() < 0)])


def test_phi4_2d_free_field_exact_samples(free):
    n = 4000
    x = free.sample(jax.random.key(4), n)
    assert x.shape == (n, 64) and x.dtype == jnp.float32
    C = np.linalg.inv(free.precision())
    xs = np.asarray(x, np.float64)
    # site variance and nearest-neighbour covariance, 4 SE from the sample
    for j in (0, 1):
        v = xs[:, 0] * xs[:, j]
        assert abs(v.mean() - C[0, j]) < 4 * v.std() / np.sqrt(n)
    # chi_2 = sum_y G_c(y) = 1 / (2 m2) exactly; per-sample M^2 / V has mean chi_2
    chi = float(fs.targets.susceptibility(x))
    m2v = np.asarray(fs.targets.magnetization(x), np.float64) ** 2 / 64
    assert abs(chi - 0.5) < 4 * m2v.std() / np.sqrt(n)
    G = np.asarray(fs.targets.two_point_function(x))
    assert G.shape == (8, 8) and G[0, 1] == pytest.approx(G[1, 0], abs=4 * 0.01)


@pytest.mark.parametrize(
    "fn, kwargs, match",
    [
        (fs.targets.phi4_2d, dict(L=1), "L"),
        (fs.targets.phi4_2d, dict(lam=-1.0), "lam"),
        (fs.targets.phi4_2d, dict(m2=-1.0, lam=0.0), "m2"),
        (fs.targets.phi4_1d, dict(N=0), "N"),
        (fs.targets.phi4_1d, dict(a=0.0), "a"),
        (fs.targets.phi4_1d, dict(beta=-1.0), "beta"),
    ],
)
def test_phi4_bad_input(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)


def test_phi4_interacting_has_no_sampler():
    with pytest.raises(NotImplementedError):
        fs.targets.phi4_2d().sample(jax.random.key(0), 2)
    with pytest.raises(NotImplementedError):
        fs.targets.phi4_1d(N=4).sample(jax.random.key(0), 2)
