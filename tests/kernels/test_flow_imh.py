"""Independent MH with a stateless proposal: exact ratio, NaN safety, invariance, mixing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsamp.base import Proposal
from flowsamp.kernels.flow_imh import FlowIMHState, build_kernel, flow_imh, imh_accept

MEAN = np.array([1.0, -0.5])
STD = np.array([1.0, 2.0])
NUM_CHAINS = 4000


def target_log_prob(x):
    z = (x - MEAN.astype(x.dtype)) / STD.astype(x.dtype)
    return -0.5 * jnp.sum(z**2)


def gaussian_proposal(mean, std):
    """A hand-made diagonal Gaussian q obeying the Proposal contract."""
    mean, std = np.asarray(mean), np.asarray(std)

    def log_prob(x):
        z = (x - mean.astype(x.dtype)) / std.astype(x.dtype)
        return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(std.astype(x.dtype))) - 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi)

    def sample_and_log_prob(key):
        x = mean + std * jax.random.normal(key, mean.shape)
        return x, log_prob(x)

    return Proposal(sample_and_log_prob, log_prob)


GOOD = gaussian_proposal(MEAN, 1.3 * STD)
# deliberately poor: shifted, too narrow in one direction, too wide in the other
POOR = gaussian_proposal(np.array([-1.0, 2.0]), np.array([0.6, 6.0]))


def run_chains(alg, key, x0, num_steps):
    states = jax.vmap(alg.init)(x0)

    def one(state, k):
        state, info = jax.vmap(alg.step)(jax.random.split(k, x0.shape[0]), state)
        return state, info.acceptance_rate.mean()

    return jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, num_steps)))(states, key)


def exact_samples(key, n, dtype=jnp.float32):
    return (MEAN + STD * jax.random.normal(key, (n, 2))).astype(dtype)


def assert_moments(x):
    """First and second moments within 4 standard errors of the exact ones."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    se_mean = STD / np.sqrt(n)
    assert np.all(np.abs(x.mean(0) - MEAN) < 4 * se_mean), (x.mean(0), MEAN)
    # Var of x^2 under N(m, s^2) is 4 m^2 s^2 + 2 s^4
    m2 = MEAN**2 + STD**2
    se_m2 = np.sqrt(4 * MEAN**2 * STD**2 + 2 * STD**4) / np.sqrt(n)
    assert np.all(np.abs((x**2).mean(0) - m2) < 4 * se_m2), ((x**2).mean(0), m2)


def test_acceptance_ratio_matches_hand_derivation():
    state = FlowIMHState(jnp.array([0.0, 0.0]), jnp.array(-1.0), jnp.array(-2.0))
    proposed = FlowIMHState(jnp.array([1.0, 1.0]), jnp.array(-3.0), jnp.array(-2.5))
    _, info = imh_accept(jax.random.key(0), state, proposed)
    # log r = (-3 + 2.5) - (-1 + 2) = -1.5
    np.testing.assert_allclose(info.acceptance_rate, np.exp(-1.5), rtol=1e-6)


def test_non_finite_candidate_is_rejected():
    def log_prob(x):
        return jnp.where(x[0] > -100.0, jnp.nan, 0.0)  # every candidate is NaN

    alg = flow_imh(log_prob, GOOD)
    state = FlowIMHState(jnp.array([-200.0, 0.0]), jnp.array(0.0), GOOD.log_prob(jnp.array([-200.0, 0.0])))
    new, info = alg.step(jax.random.key(1), state)
    assert not bool(info.is_accepted) and not bool(info.is_finite)
    assert float(info.acceptance_rate) == 0.0
    np.testing.assert_array_equal(new.position, state.position)


def test_init_caches_log_p_and_log_q():
    alg = flow_imh(target_log_prob, GOOD)
    x = jnp.array([0.3, 0.7])
    s = alg.init(x)
    np.testing.assert_allclose(s.log_prob, target_log_prob(x), rtol=1e-6)
    np.testing.assert_allclose(s.log_q, GOOD.log_prob(x), rtol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="sample_and_log_prob"):
        flow_imh(target_log_prob, object())
    with pytest.raises(TypeError, match="log_prob_fn"):
        flow_imh(3.0, GOOD)


def test_jit_equals_eager():
    alg = flow_imh(target_log_prob, GOOD)
    s = alg.init(jnp.array([0.1, 0.2]))
    key = jax.random.key(3)
    a, _ = alg.step(key, s)
    b, _ = jax.jit(alg.step)(key, s)
    np.testing.assert_allclose(a.position, b.position, rtol=1e-6)


@pytest.mark.parametrize("proposal", [GOOD, POOR], ids=["good", "poor"])
def test_invariance_from_exact_samples(proposal):
    key_x, key_run = jax.random.split(jax.random.key(11))
    x0 = exact_samples(key_x, NUM_CHAINS)
    states, acc = run_chains(flow_imh(target_log_prob, proposal), key_run, x0, 20)
    assert float(acc.mean()) > 0.02  # the chain moves
    assert_moments(states.position)


def test_mixes_from_a_single_point():
    """With a good q, 60 steps from one point (all chains) reach the target."""
    x0 = jnp.tile(jnp.array([[8.0, 8.0]]), (NUM_CHAINS, 1))
    states, _ = run_chains(flow_imh(target_log_prob, GOOD), jax.random.key(5), x0, 60)
    assert_moments(states.position)


def test_float64():
    with jax.enable_x64(True):
        alg = flow_imh(target_log_prob, GOOD)
        s = alg.init(jnp.array([0.1, 0.2], dtype=jnp.float64))
        s, info = jax.jit(alg.step)(jax.random.key(0), s)
        assert s.position.dtype == jnp.float64 and s.log_q.dtype == jnp.float64


def test_invariance_with_a_poor_flow_proposal():
    """A real flow (fs.flows.proposal) with random untrained weights: still exact."""
    import flowsamp as fs

    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    leaves, tree = jax.tree.flatten(flow.init(jax.random.key(0)))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [l + 0.5 * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)])
    key_x, key_run = jax.random.split(jax.random.key(12))
    x0 = exact_samples(key_x, NUM_CHAINS)
    states, acc = run_chains(flow_imh(target_log_prob, fs.flows.proposal(flow, params)), key_run, x0, 10)
    assert float(acc.mean()) > 0.02
    assert_moments(states.position)
