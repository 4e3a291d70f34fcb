"""Delayed-acceptance MH (Christen & Fox 2005): exact for any surrogate, counts expensive calls.

Invariance from exact samples: 2000 chains start at exact draws of a correlated 2-D Gaussian
and run 60 steps; every feature in {x_i, x_i^2, x_0 x_1} must be within 4 SE of its exact
value, for a good surrogate (the target itself, shifted), a bad one (wrong mean, scale and
correlation sign) and a flat one. Power: the same runs with stage 2 removed (accept whatever the
surrogate accepts) leave the bad surrogate's moments off by |z| >> 4 (checked below).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

MEAN = np.array([0.5, -1.0])
COV = np.array([[1.0, 0.8], [0.8, 1.0]])
PREC = np.linalg.inv(COV)
NUM_CHAINS, NUM_STEPS = 2000, 60


def target(x):
    d = x - MEAN
    return -0.5 * d @ PREC @ d


SURROGATES = {
    "good": lambda x: target(x) + 3.0,
    "bad": lambda x: -0.5 * jnp.sum(((x - jnp.array([-1.0, 1.0])) / jnp.array([0.5, 2.0])) ** 2) + 0.9 * x[0] * x[1],
    "flat": lambda x: jnp.zeros((), x.dtype),
}
KERNELS = {
    "good": (fs.kernels.mala, {"step_size": 0.3}),
    "bad": (fs.kernels.rwmh, {"scale": 0.6}),
    "flat": (fs.kernels.rwmh, {"scale": 0.8}),
}


def _features(x):
    return np.concatenate([x, x**2, x[:, :1] * x[:, 1:]], axis=1)


EXACT = np.concatenate([MEAN, np.diag(COV) + MEAN**2, [COV[0, 1] + MEAN[0] * MEAN[1]]])


def _run(alg, key):
    x0 = jax.random.multivariate_normal(key, jnp.asarray(MEAN), jnp.asarray(COV), (NUM_CHAINS,))
    states = jax.vmap(alg.init)(x0)

    def one(state, k):
        state, info = jax.vmap(alg.step)(jax.random.split(k, NUM_CHAINS), state)
        return state, (info.is_accepted.mean(), getattr(info, "num_expensive_evaluations", info.is_accepted).sum())

    states, (acc, evals) = jax.lax.scan(one, states, jax.random.split(jax.random.fold_in(key, 1), NUM_STEPS))
    return np.asarray(states.position), float(acc.mean()), int(evals.sum())


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_invariance_any_surrogate(name):
    proposal, params = KERNELS[name]
    alg = fs.kernels.delayed_acceptance(target, SURROGATES[name], proposal, **params)
    x, acc, evals = _run(alg, jax.random.key(3))
    f = _features(x)
    z = (f.mean(0) - EXACT) / (f.std(0) / np.sqrt(NUM_CHAINS))
    assert np.max(np.abs(z)) < 4.0, z
    assert acc > 0.1, acc
    assert 0 < evals <= NUM_CHAINS * NUM_STEPS


def test_second_stage_matters():
    """Without stage 2 the bad surrogate's chain samples the surrogate: moments far off."""
    proposal, params = KERNELS["bad"]
    x, _, _ = _run(proposal(SURROGATES["bad"], **params), jax.random.key(3))
    f = _features(x)
    z = (f.mean(0) - EXACT) / (f.std(0) / np.sqrt(NUM_CHAINS))
    assert np.max(np.abs(z)) > 20.0


def test_counts_and_skips_expensive_evaluations():
    """A surrogate that rejects everything never calls the target; info counts the calls."""
    wall = lambda x: jnp.where(jnp.abs(x[0]) < 1e-3, 0.0, -jnp.inf)  # noqa: E731  only the start is allowed
    alg = fs.kernels.delayed_acceptance(target, wall, fs.kernels.rwmh, scale=0.5)
    state = alg.init(jnp.zeros(2))
    new, info = jax.jit(alg.step)(jax.random.key(0), state)
    assert int(info.num_expensive_evaluations) == 0 and not bool(info.first_stage_accepted)
    np.testing.assert_array_equal(new.position, state.position)
    alg = fs.kernels.delayed_acceptance(target, SURROGATES["flat"], fs.kernels.rwmh, scale=0.5)
    _, info = jax.jit(alg.step)(jax.random.key(0), alg.init(jnp.zeros(2)))
    assert int(info.num_expensive_evaluations) == 1


def test_non_finite_target_is_a_rejection():
    alg = fs.kernels.delayed_acceptance(lambda x: jnp.nan * x[0], SURROGATES["flat"], fs.kernels.rwmh, scale=0.5)
    state = alg.init(jnp.zeros(2))
    new, info = jax.jit(alg.step)(jax.random.key(0), state)
    assert not bool(info.is_accepted) and not bool(info.is_finite) and float(info.acceptance_rate) == 0.0


def test_bad_input():
    with pytest.raises(TypeError, match="proposal_kernel"):
        fs.kernels.delayed_acceptance(target, target, fs.kernels.rwmh(target, scale=0.5))
    with pytest.raises(ValueError, match="scale"):
        fs.kernels.delayed_acceptance(target, target, fs.kernels.rwmh, scale=-1.0)
