"""Many-well target: ln Z, per-well weights, exact rejection sampler, labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs


@pytest.fixture(scope="module")
def mw32():
    return fs.targets.many_well(32)


def _x1_grid():
    # fine uniform grid: the integrand is smooth and decays like exp(-x^4),
    # so the trapezoid rule converges spectrally on a box holding all mass
    g = np.linspace(-6.0, 6.0, 24_001)
    return g, np.exp(-(g**4) + 6 * g**2 + 0.5 * g)


def test_log_Z_32d(mw32):
    g, f = _x1_grid()
    z1 = np.trapezoid(f, g)
    assert mw32.log_Z == pytest.approx(16 * (np.log(z1) + 0.5 * np.log(2 * np.pi)), abs=1e-9)
    assert mw32.log_Z == pytest.approx(164.695675, abs=1e-6)  # REFERENCE.md (FAB many-well, quad)


def test_per_well_weight_and_mode_weights(mw32):
    g, f = _x1_grid()
    pos = np.trapezoid(np.where(g >= 0, f, 0.0), g) / np.trapezoid(f, g)
    assert mw32.p_positive == pytest.approx(pos, abs=1e-6)  # O(h) from the step at 0
    assert mw32.p_positive == pytest.approx(0.844307, abs=1e-6)  # REFERENCE.md
    w = mw32.mode_weights
    assert w.shape == (2**16,) and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert w[-1] == pytest.approx(mw32.p_positive**16, rel=1e-12)  # all wells positive
    assert mw32.num_modes == 2**16


def test_log_prob_vmap_jit_grad_and_x64(mw32):
    x = jnp.linspace(-2, 2, 32, dtype=jnp.float32)
    lp = jax.jit(jax.vmap(mw32.log_prob))(jnp.stack([x, -x]))
    assert lp.shape == (2,) and lp.dtype == jnp.float32
    x1, x2 = np.asarray(x[0::2], np.float64), np.asarray(x[1::2], np.float64)
    want = np.sum(-(x1**4) + 6 * x1**2 + 0.5 * x1 - 0.5 * x2**2)
    assert float(lp[0]) == pytest.approx(want, rel=1e-5)
    gr = jax.grad(mw32.log_prob)(x)
    np.testing.assert_allclose(gr[0::2], -4 * x1**3 + 12 * x1 + 0.5, rtol=1e-5, atol=1e-4)
    with jax.enable_x64(True):
        lp64 = mw32.log_prob(jnp.asarray(np.asarray(x), jnp.float64))
        assert lp64.dtype == jnp.float64 and float(lp64) == pytest.approx(want, rel=1e-13)


def test_exact_sampler_moments():
    t = fs.targets.many_well(4)
    n = 20_000
    x = np.asarray(t.sample(jax.random.key(3), n), np.float64)
    assert x.shape == (n, 4) and np.all(np.isfinite(x))
    g, f = _x1_grid()
    p = f / np.trapezoid(f, g)
    for k in (1, 2):  # first two moments of x1 from quadrature
        want = np.trapezoid(g**k * p, g)
        v = x[:, 0::2] ** k
        se = v.std() / np.sqrt(v.size)
        assert abs(v.mean() - want) < 4 * se
    pos = (x[:, 0::2] > 0).mean()
    assert abs(pos - t.p_positive) < 4 * np.sqrt(t.p_positive * (1 - t.p_positive) / (2 * n))
    x2 = x[:, 1::2]
    assert abs(x2.mean()) < 4 / np.sqrt(x2.size)
    assert abs((x2**2).mean() - 1) < 4 * np.sqrt(2 / x2.size)
    # label histogram vs exact mode weights (4 modes)
    counts = np.bincount(np.asarray(t.mode_of(jnp.asarray(x))), minlength=4) / n
    w = t.mode_weights
    assert np.all(np.abs(counts - w) < 4 * np.sqrt(w * (1 - w) / n))


def test_mode_of_known_points():
    t = fs.targets.many_well(6)
    pts = jnp.asarray([[1.0, 0, -1.0, 0, 1.0, 0], [-1.0, 5, -1.0, 5, -1.0, 5], [1.0, 0, 1.0, 0, 1.0, 0]])
    np.testing.assert_array_equal(t.mode_of(pts), [0b101, 0, 0b111])
    assert int(t.mode_of(pts[0])) == 5
    np.testing.assert_array_equal(t.well_signs(pts[0]), [1, 0, 1])


def test_bad_input_and_large_dims():
    for bad in (3, 0, -2, 2.0, True):
        with pytest.raises(ValueError, match="even"):
            fs.targets.many_well(bad)
    big = fs.targets.many_well(64)
    assert big.mode_weights is None
    with pytest.raises(ValueError, match="well_signs"):
        big.mode_of(jnp.zeros(64))
    assert big.log_Z == pytest.approx(2 * 164.695675, abs=2e-6)
