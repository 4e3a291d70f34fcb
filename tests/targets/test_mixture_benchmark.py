"""fs.targets.mixture_benchmark: seeded centres, exact mode weights, log Z, exact samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import flowsamp as fs
from flowsamp.targets.mixture_benchmark import _cell_masses_mc, _pairwise


def _min_dist(t):
    d = _pairwise(t.means)
    return d[np.triu_indices(t.num_modes, 1)].min()


@pytest.fixture(scope="module")
def overlap():
    # overlapping 4-mode 3-D mixture: mode_weights by Monte Carlo and != component weights
    return fs.targets.mixture_benchmark(3, 4, 2.0, "dirichlet", seed=5)


def test_shapes_and_fields(overlap):
    t = overlap
    assert t.dim == 3 and t.num_modes == 4 and t.means.shape == (4, 3) and t.log_Z == 0.0
    assert t.mode_weights.shape == (4,) and t.mode_weights_se.shape == (4,)
    assert t.mode_weights.sum() == pytest.approx(1.0, abs=1e-12) and t.weights.sum() == pytest.approx(1.0)
    assert t.mode_weights_method == "monte carlo" and np.all(t.mode_weights_se > 0)
    x = t.sample(jax.random.key(0), 7)
    assert x.shape == (7, 3) and x.dtype == jnp.float32
    assert jax.vmap(t.log_prob)(x).shape == (7,)
    lab = t.mode_of(x)
    assert lab.shape == (7,) and lab.dtype == jnp.int32 and t.mode_of(x[0]).shape == ()


def test_log_prob_matches_generic_mixture(overlap):
    t = overlap
    ref = fs.targets.gaussian_mixture(t.means, 1.0, t.weights)
    x = jnp.asarray(np.random.default_rng(0).normal(scale=2.0, size=(9, 3)), jnp.float32)
    np.testing.assert_allclose(jax.vmap(t.log_prob)(x), jax.vmap(ref.log_prob)(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(t.mode_of(x), ref.mode_of(x))
    g = jax.grad(t.log_prob)(x[0])
    np.testing.assert_allclose(g, jax.grad(ref.log_prob)(x[0]), rtol=1e-4, atol=1e-5)


def test_deterministic_in_seed():
    kw = dict(mc_samples=1 << 12)  # the Monte Carlo of mode_weights is tested below
    a = fs.targets.mixture_benchmark(8, 5, 6.0, "dirichlet", seed=11, **kw)
    b = fs.targets.mixture_benchmark(8, 5, 6.0, "dirichlet", seed=11, **kw)
    c = fs.targets.mixture_benchmark(8, 5, 6.0, "dirichlet", seed=12, **kw)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.mode_weights, b.mode_weights)
    assert not np.allclose(a.means, c.means) and not np.allclose(a.weights, c.weights)
    bal = fs.targets.mixture_benchmark(8, 5, 6.0, "balanced", seed=11, **kw)
    np.testing.assert_array_equal(bal.weights, np.full(5, 0.2))
    np.testing.assert_array_equal(bal.means, a.means)  # centres and weights: independent streams


@pytest.mark.parametrize("dim, k, sep", [(1, 3, 4.0), (2, 8, 20.0), (2, 4, 2.0), (16, 6, 8.0), (64, 8, 3.0)])
def test_min_pairwise_separation_is_attained(dim, k, sep):
    t = fs.targets.mixture_benchmark(dim, k, sep, "balanced", seed=dim + k, mc_samples=1 << 10)
    assert _min_dist(t) == pytest.approx(sep, rel=1e-9)
    np.testing.assert_allclose(t.means.mean(0), 0.0, atol=1e-9 * sep)


def test_separated_modes_have_component_weights():
    t = fs.targets.mixture_benchmark(4, 6, 20.0, "dirichlet", seed=2)
    assert t.mode_weights_method == "separated"
    np.testing.assert_array_equal(t.mode_weights, t.weights)


def test_two_mode_closed_form_matches_monte_carlo():
    t = fs.targets.mixture_benchmark(5, 2, 2.0, [2 / 3, 1 / 3], seed=0)
    assert t.mode_weights_method == "closed form"
    # overlap moves mass into the heavy mode's cell: 0.6929 vs 2/3 (d = 2, t = 1 + ln 2 / 2)
    tt = 1 + np.log(2.0) / 2
    assert t.mode_weights[0] == pytest.approx(2 / 3 * stats.norm.cdf(tt) + 1 / 3 * stats.norm.cdf(tt - 2), rel=1e-12)
    est, se = _cell_masses_mc(np.random.default_rng(0), t.means, t.weights, 1 << 18)
    assert np.all(np.abs(est - t.mode_weights) < 4 * se)


@pytest.mark.parametrize("case", ["mc", "closed"])
def test_exact_sample_mode_fractions(case, overlap):
    t = overlap if case == "mc" else fs.targets.mixture_benchmark(2, 2, 1.5, [0.7, 0.3], seed=3)
    n = 200_000
    lab = np.asarray(t.mode_of(t.sample(jax.random.key(1), n)))
    frac = np.bincount(lab, minlength=t.num_modes) / n
    se = np.sqrt(t.mode_weights * (1 - t.mode_weights) / n + t.mode_weights_se**2)
    assert np.all(np.abs(frac - t.mode_weights) < 4 * se), (frac, t.mode_weights, se)
    if case == "mc":  # the overlap matters: the component weights are off by many SE
        assert np.max(np.abs(frac - t.weights) / se) > 4


def test_log_Z_by_quadrature_2d():
    t = fs.targets.mixture_benchmark(2, 3, 3.0, "dirichlet", seed=4, mc_samples=1 << 10)
    lp = jax.jit(jax.vmap(t.log_prob))
    lo, hi = t.means.min(0) - 9, t.means.max(0) + 9
    # Gauss-Legendre product rule on a box 9 sigma beyond every centre
    xg, wg = np.polynomial.legendre.leggauss(400)
    gx = 0.5 * (hi[0] - lo[0]) * xg + 0.5 * (hi[0] + lo[0])
    gy = 0.5 * (hi[1] - lo[1]) * xg + 0.5 * (hi[1] + lo[1])
    X, Y = np.meshgrid(gx, gy, indexing="ij")
    with jax.enable_x64(True):
        vals = np.exp(np.asarray(lp(jnp.asarray(np.stack([X.ravel(), Y.ravel()], 1), jnp.float64))))
    Z = 0.25 * (hi[0] - lo[0]) * (hi[1] - lo[1]) * np.sum(np.outer(wg, wg).ravel() * vals)
    assert np.log(Z) == pytest.approx(t.log_Z, abs=1e-8)  # truncation beyond 9 sigma: < 1e-17


def test_log_Z_by_importance_sampling_8d():
    t = fs.targets.mixture_benchmark(8, 5, 3.0, "dirichlet", seed=6, mc_samples=1 << 10)
    # defensive proposal: equal-weight mixture of N(m_k, 1.5^2 I), so p/q is bounded
    prop = fs.targets.gaussian_mixture(t.means, 1.5**2, None)
    n = 20_000
    with jax.enable_x64(True):
        x = prop.sample(jax.random.key(2), n)
        log_w = np.asarray(jax.vmap(t.log_prob)(x) - jax.vmap(prop.log_prob)(x))
    w = np.exp(log_w)
    Z, se = w.mean(), w.std() / np.sqrt(n)
    assert abs(Z - np.exp(t.log_Z)) < 4 * se, (Z, se)


def test_float64():
    t = fs.targets.mixture_benchmark(4, 3, 2.5, "balanced", seed=1, mc_samples=1 << 10)
    with jax.enable_x64(True):
        x = jnp.asarray([0.3, -0.2, 0.1, 0.5], jnp.float64)
        lp = jax.jit(t.log_prob)(x)
        assert lp.dtype == jnp.float64
        want = np.log(sum(w * stats.multivariate_normal(m, np.eye(4)).pdf(np.asarray(x)) for w, m in zip(t.weights, t.means)))
        assert float(lp) == pytest.approx(want, rel=1e-12)
        assert t.sample(jax.random.key(0), 3).dtype == jnp.float64


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, 2, 3.0, "balanced"), "dim"),
        ((2, 0, 3.0, "balanced"), "num_modes"),
        ((2, 2, -1.0, "balanced"), "separation"),
        ((2, 2, 3.0, "uniform"), "'balanced' or 'dirichlet'"),
        ((2, 2, 3.0, [0.5, 0.3]), "sum to 1"),
        ((2, 2, 3.0, [1.0, 0.0]), "> 0"),
        ((2, 3, 3.0, [0.5, 0.5]), "shape"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        fs.targets.mixture_benchmark(*args)
