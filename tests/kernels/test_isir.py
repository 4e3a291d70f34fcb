"""i-SIR with a stateless proposal: resampling law, NaN safety, invariance, mixing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowsamp.kernels.isir import ISIRState, build_kernel, isir
from tests.kernels.test_flow_imh import (
    GOOD,
    NUM_CHAINS,
    POOR,
    assert_moments,
    exact_samples,
    run_chains,
    target_log_prob,
)


def test_move_probability_matches_weights():
    """With K = 2 the move probability is Barker's w_1 / (w_0 + w_1)."""
    kernel = build_kernel(2)
    x = jnp.array([0.5, 0.5])
    state = ISIRState(x, target_log_prob(x), GOOD.log_prob(x))
    key = jax.random.key(2)
    _, info = kernel(key, state, target_log_prob, GOOD)
    # rebuild the candidate the kernel drew
    key_prop, _ = jax.random.split(key)
    x1, lq1 = jax.vmap(GOOD.sample_and_log_prob)(jax.random.split(key_prop, 1))
    w0 = state.log_prob - state.log_q
    w1 = target_log_prob(x1[0]) - lq1[0]
    np.testing.assert_allclose(info.acceptance_rate, jax.nn.sigmoid(w1 - w0), rtol=1e-5)


def test_non_finite_candidates_get_zero_weight():
    def log_prob(x):
        return jnp.where(x[0] > -100.0, jnp.nan, 0.0)

    alg = isir(log_prob, GOOD, num_candidates=4)
    x = jnp.array([-200.0, 0.0])
    new, info = alg.step(jax.random.key(1), ISIRState(x, jnp.array(0.0), GOOD.log_prob(x)))
    assert not bool(info.is_accepted) and not bool(info.is_finite)
    np.testing.assert_array_equal(new.position, x)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_num_candidates_validated(bad):
    with pytest.raises(ValueError, match="num_candidates"):
        isir(target_log_prob, GOOD, num_candidates=bad)


@pytest.mark.parametrize("proposal", [GOOD, POOR], ids=["good", "poor"])
def test_invariance_from_exact_samples(proposal):
    key_x, key_run = jax.random.split(jax.random.key(21))
    x0 = exact_samples(key_x, NUM_CHAINS)
    states, acc = run_chains(isir(target_log_prob, proposal, num_candidates=8), key_run, x0, 10)
    assert float(acc.mean()) > 0.02
    assert_moments(states.position)


def test_mixes_from_a_single_point():
    x0 = jnp.tile(jnp.array([[8.0, 8.0]]), (NUM_CHAINS, 1))
    states, _ = run_chains(isir(target_log_prob, GOOD, num_candidates=8), jax.random.key(6), x0, 20)
    assert_moments(states.position)
