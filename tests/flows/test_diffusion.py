"""Score diffusion: closed-form Gaussian likelihood of the untrained model (VP and VE), log q
consistency of the probability-flow ODE, score-matching loss and reverse-SDE draws."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flowsamp as fs
from tests.flows.conftest import perturb


@pytest.mark.parametrize("sde", ["vp", "ve"])
def test_untrained_model_is_its_gaussian(sde):
    """With the net at zero the PF-ODE is linear: q = N(loc, scale^2 (alpha^2 + sigma^2)(t_min))."""
    with jax.enable_x64(True):
        loc, scale = jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0])
        flow = fs.flows.diffusion(2, (4,), sde=sde, loc=loc, scale=scale)
        params = flow.init(jax.random.key(0))
        x = jnp.array([[1.2, 0.0], [0.0, -5.0]])
        t = jnp.asarray(flow.sde.t_min)
        var = scale**2 * (flow.sde.alpha(t) ** 2 + flow.sde.sigma(t) ** 2)
        exact = jnp.sum(jax.scipy.stats.norm.logpdf(x, loc, jnp.sqrt(var)), -1)
        got = flow.log_prob(params, x)
    np.testing.assert_allclose(got, exact, atol=1e-8)


def test_log_prob_of_sample_and_plug_in():
    flow = fs.flows.diffusion(2, (8,))
    params = perturb(flow.init(jax.random.key(0)), jax.random.key(1), 0.3)
    x, log_q = flow.sample_and_log_prob(params, jax.random.key(2), 16)
    err = float(jnp.max(jnp.abs(flow.log_prob(params, x) - log_q)))
    assert err < 1e-4, err
    assert isinstance(flow, fs.base.Flow)
    y = flow.sample_sde(params, jax.random.key(3), 8, 20)
    assert y.shape == (8, 2) and bool(jnp.all(jnp.isfinite(y)))


def test_score_matching_learns_a_shifted_gaussian():
    """Data N(3, 0.5^2) against a model standardised at (0, 1): DSM drives the score towards the
    exact noised score, so the loss falls to its floor d^-1 E||eps - E[eps|y_t]||^2 < 1."""
    data = 3.0 + 0.5 * jax.random.normal(jax.random.key(0), (4096, 1))
    flow = fs.flows.diffusion(1, (16,))
    loss = fs.train.score_matching(flow, data, batch_size=256)
    params = flow.init(jax.random.key(1))
    l0 = float(jnp.mean(jnp.array([loss(params, jax.random.key(i))[0] for i in range(8)])))
    params, hist = fs.train.fit(jax.random.key(2), flow, params, loss, optax.adam(3e-3), 400, progress=False)
    assert float(np.mean(hist.loss[-50:])) < 0.5 * l0
    with pytest.raises(TypeError, match="DiffusionFlow"):
        fs.train.score_matching(fs.flows.cnf(1, (4,)), data)


def test_bad_input():
    with pytest.raises(ValueError, match="sde"):
        fs.flows.diffusion(2, sde="sub-vp")
    with pytest.raises(ValueError, match="output"):
        fs.flows.diffusion(2, output="x0")
    with pytest.raises(ValueError, match="scale"):
        fs.flows.diffusion(2, scale=-1.0)


def test_lattice_scores():
    """LocalScore is a periodic convolution (commutes with lattice shifts, k^2 parameters per
    time coefficient); the global linear scores are zero at init."""
    from flowsamp.flows.vector_fields import LinearScore, LocalScore, TwoLayerScore

    L = 6
    net = LocalScore(L, kernel_size=3)
    params = net.init(jax.random.key(0), 0.0, jnp.zeros(L * L))
    params = perturb(params, jax.random.key(1), 1.0)
    x = jax.random.normal(jax.random.key(2), (L, L))
    shift = lambda f: jnp.roll(f, (1, 2), (0, 1))
    out = net.apply(params, 0.3, x.reshape(-1)).reshape(L, L)
    out_shifted = net.apply(params, 0.3, shift(x).reshape(-1)).reshape(L, L)
    np.testing.assert_allclose(out_shifted, shift(out), atol=1e-5)
    assert sum(a.size for a in jax.tree.leaves(params)) == 2 * 9
    for cls in (LinearScore, TwoLayerScore):
        p = cls(L * L).init(jax.random.key(0), 0.0, jnp.zeros(L * L))
        assert float(jnp.max(jnp.abs(cls(L * L).apply(p, 0.5, x.reshape(-1))))) == 0.0
