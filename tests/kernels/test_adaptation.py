"""Dual-averaging step-size adaptation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs

SCALES = np.linspace(0.5, 2.0, 5)


def log_prob(x):
    return -0.5 * jnp.sum((x / SCALES.astype(x.dtype)) ** 2)


def test_dual_averaging_solves_a_known_acceptance_curve():
    """With a deterministic acceptance alpha(eps) = exp(-eps), the averaged iterate converges to
    eps* = -log(delta). The residual after 3000 steps is O(1/sqrt(m)) ~ 2 %; we allow 5 %."""
    delta = 0.6
    opt = fs.kernels.dual_averaging(delta)

    def body(state, _):
        return opt.update(state, jnp.exp(-jnp.exp(state.log_step_size))), None

    state, _ = jax.lax.scan(body, opt.init(jnp.asarray(0.01)), None, length=3000)
    eps_star = -np.log(delta)
    assert abs(float(jnp.exp(state.log_step_size_avg)) / eps_star - 1.0) < 0.05


def test_dual_averaging_rejects_bad_target():
    with pytest.raises(ValueError, match="target_acceptance"):
        fs.kernels.dual_averaging(1.5)


FACTORY = lambda eps: fs.kernels.mala(log_prob, eps)  # noqa: E731


@pytest.fixture(scope="module")
def adapted():
    x0 = jnp.zeros((32, SCALES.size))
    return fs.kernels.dual_averaging_adaptation(jax.random.key(0), FACTORY, x0, 600, 0.57)


def test_adapted_step_size_gives_target_acceptance(adapted):
    """Production at the adapted step (found by find_step_size then dual averaging) accepts at
    the target rate. Tolerance: 0.02 for the residual of the averaged dual-averaging iterate
    after 600 steps (its error decays like 1/sqrt(m)), plus 4 standard errors of the
    production mean over 32 chains (chains are independent replicates)."""
    assert adapted.step_size.shape == () and float(adapted.step_size) > 0
    assert adapted.state.position.shape == (32, SCALES.size)
    trace = fs.sample(1, FACTORY(adapted.step_size), adapted.state, 500, keep="summary")
    rate = np.asarray(trace.acceptance_rate)
    print(f"\nadapted MALA step {float(adapted.step_size):.4f}: acceptance {rate.mean():.4f} (target 0.57)")
    assert abs(rate.mean() - 0.57) < 0.02 + 4 * rate.std(ddof=1) / np.sqrt(rate.size)
    # the warm-up history records the step sizes used and their mean acceptance
    assert adapted.step_sizes.shape == adapted.acceptance_rates.shape == (600,)


def test_per_chain_adaptation_shapes():
    x0 = jnp.zeros((4, SCALES.size))
    factory = lambda eps: fs.kernels.rwmh(log_prob, eps)  # noqa: E731
    res = fs.kernels.dual_averaging_adaptation(1, factory, x0, 50, 0.3, initial_step_size=0.5, shared=False)
    assert res.step_size.shape == (4,)
    assert res.step_sizes.shape == (50, 4) and res.acceptance_rates.shape == (50, 4)
    assert np.all(np.isfinite(res.step_size)) and np.all(res.step_size > 0)
