"""fs.train.early_stopping: held-out NLL tracking, best parameters, stop after `patience`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsamp as fs
from flowsamp.train import early_stopping, fit, forward_kl

KEY = jax.random.key(0)


def test_stops_at_best_validation_nll(flow2):
    # 8 training points from N(0, I): the maximum-likelihood affine flow overfits them, so the
    # validation NLL (4096 fresh points) rises while the training loss falls; the flow starts at
    # the truth (shift 0, scale 1), the first evaluation is the best and training stops after
    # `patience` worse ones.
    k_train, k_val = jax.random.split(KEY)
    train = jax.random.normal(k_train, (8, 2))
    validation = jax.random.normal(k_val, (4096, 2))
    stop = early_stopping(flow2, validation, patience=3)
    params, hist = fit(KEY, flow2, flow2.init(KEY), forward_kl(flow2, train), optax.adam(0.02), 5000,
                       chunk_size=25, progress=False, callback=stop)
    assert hist.loss.shape[0] < 5000 and stop.steps[-1] == hist.loss.shape[0]
    assert len(stop.nll) == stop.steps.index(stop.best_step) + 1 + 3
    assert stop.best_nll == min(stop.nll)
    nll = lambda p: float(-jnp.mean(flow2.log_prob(p, validation)))
    np.testing.assert_allclose(nll(stop.best_params), stop.best_nll, rtol=1e-6)
    assert nll(params) > stop.best_nll  # the last parameters overfit
    # the training loss kept falling: early stopping is what picked the earlier parameters
    assert hist.loss[-1] < hist.loss[stop.best_step - 1]


def test_non_finite_validation_nll_is_never_best(flow2):
    stop = early_stopping(flow2, jnp.ones((4, 2)), patience=2)
    bad = {"shift": jnp.zeros(2), "log_scale": jnp.array([jnp.inf, 0.0])}
    assert stop(10, bad) is False and stop.best_params is None
    assert stop(20, flow2.init(KEY)) is False and stop.best_step == 20
    assert stop(30, bad) is False and stop(40, bad) is True


@pytest.mark.parametrize("validation, kwargs, exc, match", [
    (jnp.zeros((4, 3)), {}, ValueError, "shape"),
    (jnp.zeros((4, 2), jnp.int32), {}, TypeError, "floating"),
    (jnp.array([[0.0, jnp.nan]]), {}, ValueError, "non-finite"),
    (jnp.zeros((4, 2)), {"patience": 0}, ValueError, "patience"),
    (jnp.zeros((4, 2)), {"min_delta": -1.0}, ValueError, "min_delta"),
])
def test_bad_input(flow2, validation, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        early_stopping(flow2, validation, **kwargs)


def test_exported():
    assert fs.train.early_stopping is early_stopping
