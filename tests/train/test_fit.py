"""fit: convergence on a Gaussian, determinism, chunking, NaN safety, history, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flowsamp.train import FitHistory, fit, forward_kl, reverse_kl

KEY = jax.random.key(42)
NUM_STEPS = 300
OPT = optax.adam(optax.cosine_decay_schedule(5e-2, NUM_STEPS))


@pytest.fixture(scope="module")
def loss(flow2, gauss):
    return reverse_kl(flow2, gauss.log_prob, batch_size=128)


@pytest.fixture(scope="module")
def trained(flow2, loss):
    return fit(KEY, flow2, flow2.init(KEY), loss, OPT, NUM_STEPS, chunk_size=100, progress=False)


def test_reverse_kl_fit_recovers_gaussian(trained, gauss):
    params, hist = trained
    # the affine family contains the target: the optimum is exact, KL(q||p) -> 0, ESS/N -> 1.
    # KL between diagonal Gaussians in closed form; 0.01 nats ~ a 1 % loss of ESS.
    m, s = np.asarray(params["shift"]), np.exp(np.asarray(params["log_scale"]))
    kl = np.sum(np.log(gauss.std / s) + (s**2 + (m - gauss.mean) ** 2) / (2 * gauss.std**2) - 0.5)
    assert kl < 0.01
    assert hist.ess[-20:].mean() > 0.99
    assert abs(hist.aux["log_w_mean"][-20:].mean() - gauss.log_Z) < 0.01


def test_history_shapes(trained):
    _, hist = trained
    assert isinstance(hist, FitHistory)
    for arr in (hist.loss, hist.ess, hist.grad_norm, hist.is_finite):
        assert arr.shape == (NUM_STEPS,)
    assert hist.is_finite.all() and np.isfinite(hist.grad_norm).all()
    assert hist.loss[-20:].mean() < hist.loss[:20].mean()


def test_chunking_and_determinism(flow2, loss, trained):
    # step keys are fold_in(key, step): the chunk size does not change the result;
    # num_steps not a multiple of chunk_size reuses the same program
    p_ref, h_ref = trained
    p, h = fit(KEY, flow2, flow2.init(KEY), loss, OPT, NUM_STEPS, chunk_size=100, progress=False)
    np.testing.assert_array_equal(h.loss, h_ref.loss)
    p7, h7 = fit(KEY, flow2, flow2.init(KEY), loss, OPT, 37, chunk_size=7, progress=False)
    np.testing.assert_allclose(h7.loss, h_ref.loss[:37], rtol=1e-5)
    assert h7.loss.shape == (37,)


def test_nan_region_keeps_params_finite(flow2, gauss):
    # the target is NaN on x0 > 2: batches that hit it are skipped, params stay finite
    def log_prob(x):
        return jnp.where(x[0] > 2.0, jnp.nan, gauss.log_prob(x))

    loss = reverse_kl(flow2, log_prob, batch_size=16)
    seen = []

    def callback(step, params, hist):
        seen.append(all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(params)))

    params, hist = fit(KEY, flow2, flow2.init(KEY), loss, OPT, 200, chunk_size=50,
                       progress=False, callback=callback)
    assert seen == [True] * 4
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(params))
    assert (~hist.is_finite).sum() > 0  # some batches were NaN and skipped
    assert np.all(np.isnan(hist.loss[~hist.is_finite]))


def test_always_nan_loss_leaves_params_unchanged(flow2):
    def loss(params, key):  # two-argument form is accepted too
        return jnp.sum(params["shift"]) * jnp.nan, {}

    p0 = {"shift": jnp.array([1.0, 2.0]), "log_scale": jnp.zeros(2)}
    params, hist = fit(KEY, flow2, p0, loss, optax.adam(0.1), 5, progress=True)
    np.testing.assert_array_equal(params["shift"], p0["shift"])
    assert not hist.is_finite.any() and np.isnan(hist.ess).all()


def test_callback_stops_early_and_forward_kl(flow2):
    data = 1.0 + 0.5 * jax.random.normal(KEY, (256, 2))
    loss = forward_kl(flow2, data)
    params, hist = fit(KEY, flow2, flow2.init(KEY), loss, optax.adam(0.05), 1000, chunk_size=100,
                       progress=False, callback=lambda step, p, h: step >= 300)
    assert hist.loss.shape == (300,)
    np.testing.assert_allclose(params["shift"], jnp.mean(data, 0), atol=0.05)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"num_steps": -1}, ValueError),
        ({"chunk_size": 0}, ValueError),
        ({"optimizer": "adam"}, TypeError),
        ({"params": {"shift": jnp.zeros(3), "log_scale": jnp.zeros(2)}}, ValueError),
        ({"params": {"shift": jnp.zeros(2)}}, ValueError),
    ],
)
def test_bad_input_raises(flow2, loss, kwargs, exc):
    args = dict(params=flow2.init(KEY), optimizer=OPT, num_steps=3)
    args.update(kwargs)
    with pytest.raises(exc):
        fit(KEY, flow2, args.pop("params"), loss, args.pop("optimizer"), args.pop("num_steps"),
            progress=False, **args)
