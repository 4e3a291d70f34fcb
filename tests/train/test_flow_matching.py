"""Flow matching: the loss trains a CNF (no ODE solve in training); input checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsamp as fs


def test_flow_matching_reduces_loss_to_its_floor():
    """Two well-separated 1-D clusters: the conditional-OT regression target has irreducible
    variance, but a trained field explains most of the initial loss E||x1 - x0||^2."""
    key = jax.random.key(0)
    data = jnp.where(jax.random.bernoulli(key, 0.5, (4096, 1)), 3.0, -3.0) + 0.3 * jax.random.normal(
        jax.random.key(1), (4096, 1))
    flow = fs.flows.cnf(1, (16, 16))
    params = flow.init(jax.random.key(2))
    loss = fs.train.flow_matching(flow, data, batch_size=256)
    l0, aux = loss(params, jax.random.key(3))
    assert set(aux) == {"fm", "ess"} and np.isfinite(float(l0))
    params, hist = fs.train.fit(jax.random.key(4), flow, params, loss, optax.adam(3e-3), 400, progress=False)
    assert float(np.mean(hist.loss[-50:])) < 0.4 * float(l0)


def test_weights_select_rows():
    data = jnp.array([[0.0], [100.0]])
    flow = fs.flows.cnf(1, (4,))
    params = flow.init(jax.random.key(0))
    loss = fs.train.flow_matching(flow, data, batch_size=512, weights=jnp.array([1.0, 0.0]))
    # v = 0 at init: loss = E (x1 - x0)^2 with x1 = 0 only, i.e. E x0^2 = 1 (not ~5000)
    assert float(loss(params, jax.random.key(1))[0]) < 1.5


def test_bad_input():
    data = jnp.zeros((10, 2))
    with pytest.raises(TypeError, match="ContinuousFlow"):
        fs.train.flow_matching(fs.flows.realnvp(2, 2, (4,)), data)
    flow = fs.flows.cnf(2, (4,))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        fs.train.flow_matching(flow, jnp.zeros((10, 3)))
    with pytest.raises(ValueError, match="sigma_min"):
        fs.train.flow_matching(flow, data, sigma_min=1.0)
    with pytest.raises(ValueError, match="weights"):
        fs.train.flow_matching(flow, data, weights=-jnp.ones(10))
