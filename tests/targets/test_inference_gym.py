"""fs.targets.inference_gym: Inference Gym posteriors on the unconstrained space.

Exact checks: the ill-conditioned Gaussian's log-density against the closed form built from the
gym's own covariance (its documented seeded recipe, checked against the public eigenvalues and
ground-truth sds), and the change of variables against hand-written softplus Jacobians.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsamp.targets.inference_gym import inference_gym

gym = pytest.importorskip(
    "inference_gym.using_jax", reason="Inference Gym tests need `pip install inference-gym tfp-nightly`"
)

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def icg():
    return inference_gym("IllConditionedGaussian", ndims=10)


@pytest.fixture(scope="module")
def brownian():
    """Brownian motion with unknown (softplus-constrained) scales, 5 steps, the middle one missing."""
    locs = np.array([0.1, 0.5, np.nan, 0.2, -0.3], np.float32)
    return inference_gym(gym.targets.BrownianMotionUnknownScales(observed_locs=locs))


def _gym_cholesky(ndims, seed=10, shape=0.5):
    """The gym's covariance recipe (inference_gym/targets/ill_conditioned_gaussian.py), float32 Cholesky."""
    rng = np.random.RandomState(seed)
    eig = 1.0 / np.sort(rng.gamma(shape=shape, scale=1.0, size=ndims))
    q, r = np.linalg.qr(rng.randn(ndims, ndims))
    q *= np.sign(np.diag(r))
    cov = (q * eig) @ q.T
    return eig, cov, np.asarray(jnp.linalg.cholesky(jnp.asarray(cov, jnp.float32)), np.float64)


def test_ill_conditioned_gaussian_is_the_closed_form(icg):
    eig, cov, L = _gym_cholesky(icg.dim)
    np.testing.assert_allclose(eig, icg.model.model.covariance_eigenvalues)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), icg.ground_truth_sd, rtol=EPS32)  # stored in float32
    np.testing.assert_array_equal(icg.ground_truth_mean, np.zeros(icg.dim))
    x = (L @ np.random.RandomState(1).randn(icg.dim, 16)).T
    ref = -0.5 * np.sum(np.linalg.solve(L, x.T) ** 2, 0) - np.log(np.diag(L)).sum() - 0.5 * icg.dim * np.log(2 * np.pi)
    lp = np.asarray(jax.jit(jax.vmap(icg.log_prob))(jnp.asarray(x, jnp.float32)))
    # the gym evaluates in float32: a few ulps of |log p| (observed <= 3.1)
    np.testing.assert_allclose(lp, ref, rtol=16 * EPS32)
    assert icg.log_Z is None and icg.ground_truth_mean_se is None


def test_change_of_variables_is_softplus_jacobian(brownian):
    t = brownian
    assert t.dim == 7 and t.ground_truth_mean is None  # a user-built model has no ground truth
    z = jax.random.normal(jax.random.key(0), (6, t.dim)) * 2.0
    x = np.asarray(jax.jit(t.constrain)(z), np.float64)
    zd = np.asarray(z, np.float64)
    np.testing.assert_allclose(x[:, :2], np.log1p(np.exp(zd[:, :2])), rtol=1e-6)
    np.testing.assert_array_equal(x[:, 2:], zd[:, 2:])
    log_det = np.sum(-np.log1p(np.exp(-zd[:, :2])), axis=1)  # d softplus / dz = sigmoid(z)
    base = np.asarray(jax.jit(t.model.unnormalized_log_prob)(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(t.log_prob))(z)), base + log_det, rtol=1e-6, atol=1e-5)
    jac = jax.jit(jax.vmap(jax.jacfwd(t.constrain)))(z)
    np.testing.assert_allclose(np.linalg.slogdet(np.asarray(jac, np.float64))[1], log_det, atol=1e-5)
    round_trip = jax.jit(lambda z: t.unconstrain(t.constrain(z)))(z)
    np.testing.assert_allclose(np.asarray(round_trip), np.asarray(z), rtol=1e-5, atol=1e-5)


def test_ground_truth_follows_the_event_order():
    """The gym's truth dict flattens as (innovation, locs, observation); the event as (innovation, observation, x)."""
    t = inference_gym("BrownianMotionUnknownScalesMissingMiddleObservations")
    raw = t.model.model.sample_transformations["identity"]
    for field, gt in [("ground_truth_mean", t.ground_truth_mean), ("ground_truth_standard_deviation", t.ground_truth_sd),
                      ("ground_truth_mean_standard_error", t.ground_truth_mean_se)]:
        d = getattr(raw, field)
        want = np.concatenate([[d["innovation_noise_scale"], d["observation_noise_scale"]], d["locs"]])
        np.testing.assert_allclose(gt, want, rtol=EPS32)


@pytest.mark.parametrize("name", ["EightSchools", "banana", "neals_funnel"])
def test_log_prob_finite_vmappable_with_ground_truth(name):
    t = inference_gym(name)
    z = jax.random.normal(jax.random.key(1), (4, t.dim))
    lp = jax.jit(jax.vmap(t.log_prob))(z)
    grad = jax.jit(jax.vmap(jax.grad(t.log_prob)))(z)
    assert lp.shape == (4,) and lp.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(lp)))
    assert bool(jnp.all(jnp.isfinite(grad)))
    one = jax.jit(t.log_prob)
    np.testing.assert_allclose(np.asarray(lp), [float(one(zi)) for zi in z], rtol=1e-6)
    assert t.ground_truth_mean.shape == t.ground_truth_sd.shape == (t.dim,)


def test_float64_inputs_give_float64(icg, x64):
    z = jnp.ones((3, icg.dim), jnp.float64)
    lp = jax.jit(jax.vmap(icg.log_prob))(z)
    assert lp.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(lp)))
    assert jax.jit(icg.constrain)(z).dtype == jnp.float64


def test_bad_input_raises(icg):
    with pytest.raises(ValueError, match="unknown Inference Gym target 'NoSuchModel'"):
        inference_gym("NoSuchModel")
    with pytest.raises(TypeError, match="only accepted with a target name"):
        inference_gym(icg.model.model, ndims=3)
    with pytest.raises(TypeError, match="expected an Inference Gym target name or model"):
        inference_gym(3.0)
    with pytest.raises(ValueError, match="last axis of length 10"):
        icg.log_prob(jnp.zeros(3))


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "inference_gym", None)
    monkeypatch.setitem(sys.modules, "inference_gym.using_jax", None)
    with pytest.raises(ImportError, match="pip install inference-gym tfp-nightly"):
        inference_gym("EightSchools")
