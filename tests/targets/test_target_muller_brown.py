"""Müller-Brown: ln Z and basin weights by quadrature vs REFERENCE.md, minima, mode labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

from flowsamp.targets.muller_brown import _grad_np, _quadrature, muller_brown_potential


@pytest.fixture(scope="module")
def mb():
    return fs.targets.muller_brown(beta=0.1)


def test_log_Z_matches_reference_and_independent_quadrature(mb):
    assert mb.log_Z == pytest.approx(11.729591, abs=2e-6)  # REFERENCE.md, Müller-Brown beta = 0.1 (quad)
    # independent plain trapezoid on a fixed box holding all mass (edges ~e^-30 of the peak)
    h = 0.01
    g = np.arange(-3.5, 2.0 + h / 2, h), np.arange(-2.0, 4.0 + h / 2, h)
    X, Y = np.meshgrid(*g, indexing="ij")
    with np.errstate(over="ignore"):
        lw = -0.1 * muller_brown_potential(np.stack([X, Y], -1))
    m = lw.max()
    assert np.exp(np.r_[lw[0], lw[-1], lw[:, 0], lw[:, -1]] - m).max() < 1e-12
    assert mb.log_Z == pytest.approx(m + np.log(np.exp(lw - m).sum() * h * h), abs=1e-6)


def test_basin_weights_match_reference(mb):
    # REFERENCE.md, Müller-Brown beta = 0.1, basins by steepest descent: A, B, C.
    # Our quadrature is converged to ~1e-7 (halving the spacing moves it by < 2e-7);
    # the tolerance 1e-4 covers the O(h) basin-boundary error of the published grid.
    np.testing.assert_allclose(mb.mode_weights, [0.974378, 0.022389, 0.003233], atol=1e-4)
    assert mb.mode_weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_minima_and_potential(mb):
    want = np.array([[-0.558224, 1.441726], [0.623499, 0.028038], [-0.050011, 0.466694]])  # REFERENCE.md
    np.testing.assert_allclose(mb.minima, want, atol=1e-6)
    v = muller_brown_potential(mb.minima)
    np.testing.assert_allclose(v, [-146.699517, -108.166724, -80.767818], atol=1e-6)


def test_log_prob_jit_vmap_grad_and_x64(mb):
    x = jnp.asarray([[0.0, 0.0], [-0.5, 1.5], [0.6, 0.0]], jnp.float32)
    lp = jax.jit(jax.vmap(mb.log_prob))(x)
    assert lp.dtype == jnp.float32
    np.testing.assert_allclose(lp, -0.1 * muller_brown_potential(np.asarray(x, np.float64)), rtol=1e-5)
    g = jax.vmap(jax.grad(mb.log_prob))(x)
    np.testing.assert_allclose(g[0], -0.1 * _grad_np(np.zeros(2)), rtol=1e-5)
    with jax.enable_x64(True):
        lp64 = mb.log_prob(jnp.asarray([0.1, 0.2], jnp.float64))
        assert lp64.dtype == jnp.float64
        assert float(lp64) == pytest.approx(-0.1 * muller_brown_potential(np.array([0.1, 0.2])), rel=1e-14)


def test_mode_of_known_points(mb):
    pts = np.concatenate([mb.minima, mb.minima + [[0.05, -0.05]], [[-1.0, 1.6], [1.0, -0.2], [0.0, 0.6]]])
    labels = jax.jit(mb.mode_of)(jnp.asarray(pts, jnp.float32))
    np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert labels.dtype == jnp.int32
    assert int(mb.mode_of(jnp.asarray(mb.minima[1]))) == 1
    assert mb.mode_of(jnp.zeros((2, 3, 2))).shape == (2, 3)


def test_bad_input_and_no_sampler(mb):
    for beta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            fs.targets.muller_brown(beta)
    with pytest.raises(NotImplementedError):
        mb.sample(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="last axis"):
        mb.log_prob(jnp.zeros(3))


@pytest.mark.slow
def test_quadrature_converged():
    base = _quadrature(0.1)
    fine = _quadrature(0.1, 0.01, 8)  # 2x finer coarse grid, 4x finer fine grid
    assert fine[0] == pytest.approx(base[0], abs=1e-7)
    np.testing.assert_allclose(fine[1], base[1], atol=1e-6)
