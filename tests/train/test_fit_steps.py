"""fs.train.guarded_step / fit_steps (the one guarded optimiser step, shared by fit and the
adaptive flow sampler) and forward_kl's weights (a masked buffer)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsamp as fs


@pytest.fixture(scope="module")
def setup():
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    params = flow.init(jax.random.key(0))
    data = jax.random.normal(jax.random.key(1), (64, 2)) * 2.0 + 1.0
    return flow, params, data


def test_fit_steps_is_fit(setup):
    flow, params, data = setup
    loss, opt = fs.train.forward_kl(flow, data), optax.adam(1e-2)
    p_fit, hist = fs.train.fit(jax.random.key(2), flow, params, loss, opt, 7, chunk_size=3, progress=False)
    p_st, _, rec = jax.jit(lambda p, s: fs.train.fit_steps(loss, opt, p, s, jax.random.key(2), 7))(params, opt.init(params))
    np.testing.assert_allclose(np.asarray(rec["loss"]), hist.loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(p_fit), jax.tree.leaves(p_st)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_guarded_step_skips_a_nonfinite_step(setup):
    flow, params, _ = setup
    opt = optax.adam(1e-2)

    def loss(p, key):
        return jnp.nan * jnp.sum(jax.tree.leaves(p)[0]), {}

    p, s, rec = fs.train.guarded_step(loss, opt, params, opt.init(params), jax.random.key(0), 0)
    assert not bool(rec["is_finite"])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(params)))


def test_forward_kl_weights_select_rows(setup):
    flow, params, data = setup
    mask = jnp.arange(64) < 40
    bad = data.at[50].set(jnp.nan)  # a masked-out row may hold anything
    masked = fs.train.forward_kl(flow, bad, weights=mask)
    subset = fs.train.forward_kl(flow, data[:40])
    key = jax.random.key(0)
    np.testing.assert_allclose(masked(params, key)[0], subset(params, key)[0], rtol=1e-6)
    g1 = jax.grad(lambda p: masked(p, key)[0])(params)
    g2 = jax.grad(lambda p: subset(p, key)[0])(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="weights"):
        fs.train.forward_kl(flow, data, weights=jnp.ones(3))
