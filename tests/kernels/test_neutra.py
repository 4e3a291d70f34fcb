"""NeuTra: latent density vs a Jacobian determinant, invariance with good and poor flows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.kernels.neutra import latent_log_prob, neutra
from tests.kernels.test_flow_imh import NUM_CHAINS, assert_moments, exact_samples, run_chains, target_log_prob

FLOW = fs.flows.realnvp(2, num_layers=2, hidden=(8,))


@pytest.fixture(scope="module")
def poor_params():
    """Deliberately poor flow: random (non-identity, untrained) coupling weights."""
    params = FLOW.init(jax.random.key(0))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [l + 0.5 * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, noisy)


def test_latent_log_prob_matches_jacobian(poor_params):
    z = jnp.array([0.3, -1.1])
    fwd = lambda v: FLOW.forward(poor_params, v[None])[0][0]  # noqa: E731
    log_det = jnp.linalg.slogdet(jax.jacfwd(fwd)(z))[1]
    expected = target_log_prob(fwd(z)) + log_det
    np.testing.assert_allclose(latent_log_prob(target_log_prob, FLOW, poor_params)(z), expected, rtol=1e-5)


def test_positions_reported_in_x_space(poor_params):
    alg = neutra(target_log_prob, FLOW, poor_params, step_size=0.2)
    x = jnp.array([0.5, 1.5])
    s = alg.init(x)
    np.testing.assert_allclose(s.position, x)
    s, _ = alg.step(jax.random.key(0), s)
    np.testing.assert_allclose(s.position, FLOW.forward(poor_params, s.latent.position[None])[0][0], rtol=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="Flow"):
        neutra(target_log_prob, object(), {})


@pytest.mark.parametrize(
    "inner,kw",
    [
        (fs.kernels.mala, {"step_size": 0.15}),
        (fs.kernels.hmc, {"step_size": 0.3, "num_integration_steps": 4}),
        (fs.kernels.nuts, {"step_size": 0.3}),
    ],
    ids=["mala", "hmc", "nuts"],
)
def test_invariance_poor_flow(poor_params, inner, kw):
    key_x, key_run = jax.random.split(jax.random.key(31))
    x0 = exact_samples(key_x, NUM_CHAINS)
    states, acc = run_chains(neutra(target_log_prob, FLOW, poor_params, inner=inner, **kw), key_run, x0, 10)
    assert float(acc.mean()) > 0.1
    assert_moments(states.position)


def test_invariance_identity_flow():
    params = FLOW.init(jax.random.key(0))
    key_x, key_run = jax.random.split(jax.random.key(41))
    x0 = exact_samples(key_x, NUM_CHAINS)
    states, acc = run_chains(neutra(target_log_prob, FLOW, params, step_size=0.3), key_run, x0, 10)
    assert float(acc.mean()) > 0.1
    assert_moments(states.position)
