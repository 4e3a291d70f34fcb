"""The target contract, checked on every continuous target (small instances)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

TARGETS = {
    "gaussian": lambda: fs.targets.gaussian([0.0, 1.0], [[1.0, 0.3], [0.3, 2.0]]),
    "mixture": lambda: fs.targets.four_mode_mixture(2),
    "many_well": lambda: fs.targets.many_well(4),
    "muller_brown": lambda: fs.targets.muller_brown(0.1),
    "funnel": lambda: fs.targets.funnel(3),
    "rosenbrock": lambda: fs.targets.rosenbrock(4),
    "dual_moon": lambda: fs.targets.dual_moon(),
    "phi4_1d": lambda: fs.targets.phi4_1d(N=8),
    "phi4_2d": lambda: fs.targets.phi4_2d(L=3),
    "radial_velocity": lambda: fs.targets.radial_velocity(),
}


@functools.partial(jax.jit, static_argnums=0)
def _lp_and_grad(target, x):
    """A target is hashable by identity, so it can be a static jit argument."""
    return jax.vmap(jax.value_and_grad(target.log_prob))(x)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_contract(name):
    t = TARGETS[name]()
    assert isinstance(t, fs.targets.Target) and isinstance(t.dim, int)
    assert t.log_Z is None or np.isfinite(t.log_Z)
    if t.mode_weights is not None:
        assert t.mode_weights.shape == (t.num_modes,) and t.mode_weights.sum() == pytest.approx(1.0)
    x = 0.1 * jnp.arange(3 * t.dim, dtype=jnp.float32).reshape(3, t.dim) / t.dim
    lp, g = _lp_and_grad(t, x)
    assert lp.shape == (3,) and lp.dtype == jnp.float32 and g.shape == x.shape
    assert np.all(np.isfinite(np.asarray(lp)[np.asarray(lp) > -np.inf]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.dim = 5
    try:
        labels = t.mode_of(x.reshape(3, 1, t.dim))
    except NotImplementedError:
        labels = None
    if labels is not None:
        assert labels.shape == (3, 1) and labels.dtype == jnp.int32
        assert np.all((0 <= np.asarray(labels)) & (np.asarray(labels) < t.num_modes))
    try:
        s = t.sample(jax.random.key(0), 5)
    except NotImplementedError:
        return
    assert s.shape == (5, t.dim) and s.dtype == jnp.float32 and np.all(np.isfinite(s))
    np.testing.assert_array_equal(s, t.sample(jax.random.key(0), 5))  # same key, same draws


X64_SAMPLERS = {
    "many_well": lambda: fs.targets.many_well(4),
    "rosenbrock": lambda: fs.targets.rosenbrock(2),
    "phi4_2d_free": lambda: fs.targets.phi4_2d(L=4, m2=1.0, lam=0.0),
    "mixture": lambda: fs.targets.four_mode_mixture(3),
    "funnel": lambda: fs.targets.funnel(3),
}


@pytest.mark.parametrize("name", sorted(X64_SAMPLERS))
def test_exact_samplers_and_log_prob_in_float64(name):
    t = X64_SAMPLERS[name]()
    with jax.enable_x64(True):
        s = t.sample(jax.random.key(1), 64)
        assert s.dtype == jnp.float64 and np.all(np.isfinite(s))
        lp = jax.vmap(t.log_prob)(s)
        assert lp.dtype == jnp.float64 and np.all(np.isfinite(lp))
