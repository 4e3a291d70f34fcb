"""fab: prioritised buffer semantics, the alpha-2 buffer loss, FAB on a Gaussian (ln Z within 4 SE), bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp.samplers._fab_ais import fab_ais
from flowsamp.train.alpha_divergence import fab_buffer_loss
from flowsamp.train.replay_buffer import prioritised_buffer

TARGET = fs.targets.gaussian(np.array([1.0, -0.5]), np.array([[1.0, 0.6], [0.6, 2.0]]))


def test_buffer_fifo_and_skips_nonfinite():
    buf = prioritised_buffer(5)
    s = buf.init(2)
    x = jnp.arange(8.0).reshape(4, 2)
    s = buf.add(s, x, jnp.array([0.0, 1.0, jnp.nan, 2.0]), jnp.zeros(4))
    assert int(s.size) == 4 and int(s.index) == 4
    assert not np.isfinite(float(s.log_w[2]))  # the NaN entry was skipped (slot stays empty)
    s = buf.add(s, x[:3] + 100, jnp.zeros(3), jnp.zeros(3))  # wraps: slots 4, 0, 1
    np.testing.assert_array_equal(np.asarray(s.x[jnp.array([4, 0, 1])]), np.asarray(x[:3] + 100))
    assert int(s.size) == 5 and int(s.index) == 2


def test_buffer_samples_proportional_to_weights():
    """One draw without replacement (Gumbel-top-1) is categorical(w): frequencies within 4 SE."""
    buf = prioritised_buffer(4)
    w = np.array([0.1, 0.2, 0.3, 0.4])
    s = buf.add(buf.init(1), jnp.arange(4.0)[:, None], jnp.log(jnp.asarray(w)), jnp.zeros(4))
    idx = jax.vmap(lambda k: buf.sample(k, s, 1)[2][0])(jax.random.split(jax.random.key(0), 20000))
    f = np.bincount(np.asarray(idx), minlength=4) / 20000
    assert np.all(np.abs(f - w) < 4 * np.sqrt(w * (1 - w) / 20000)), f
    two = buf.sample(jax.random.key(1), s, 4)[2]
    assert sorted(np.asarray(two).tolist()) == [0, 1, 2, 3]  # without replacement


def test_buffer_adjust():
    buf = prioritised_buffer(3)
    s = buf.add(buf.init(1), jnp.zeros((3, 1)), jnp.zeros(3), jnp.zeros(3))
    s = buf.adjust(s, jnp.array([2]), jnp.array([-1.5]), jnp.array([0.7]))
    np.testing.assert_allclose(np.asarray(s.log_w), [0, 0, -1.5])
    np.testing.assert_allclose(np.asarray(s.log_q_old), [0, 0, 0.7], rtol=1e-6)


def test_buffer_loss_matches_formula():
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    params = flow.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (16, 2))
    log_q = flow.log_prob(params, x)
    log_q_old = log_q + jnp.linspace(-3, 3, 16)
    loss, aux = fab_buffer_loss(flow, x, log_q_old, w_adjust_clip=10.0)(params, jax.random.key(2))
    w = np.minimum(np.exp(-(np.asarray(log_q) - np.asarray(log_q_old))), 10.0)
    np.testing.assert_allclose(float(loss), -np.mean(w * np.asarray(log_q)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(aux["log_w_adjust"]), np.asarray(log_q_old - log_q), rtol=1e-5, atol=1e-6)


def test_ais_weights_unbiased_for_z_p2_over_q():
    """AIS towards p^2/q from an untrained flow (N(0, I)): mean of w estimates int p^2/q, closed form."""
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    params = flow.init(jax.random.key(0))
    t = fs.targets.gaussian(np.array([0.3, -0.2]), np.diag([0.8, 0.6]))
    betas = jnp.linspace(0.0, 1.0, 5)
    _, log_w, _, acc, _ = jax.jit(lambda k: fab_ais(k, flow, params, t.log_prob, 20000, betas,
                                                   jnp.full((3,), np.log(0.3)), 3))(jax.random.key(3))
    # int p~^2 / q for p~ = exp(-x'S^-1 x / 2) (unnormalised), q = N(0, I): Gaussian integral per coordinate
    m, v = np.array([0.3, -0.2]), np.array([0.8, 0.6])
    a = 2 / v - 1  # precision of p~^2/q
    b = 2 * m / v
    log_exact = np.sum(0.5 * np.log(2 * np.pi) + 0.5 * np.log(2 * np.pi / a) + b**2 / (2 * a) - m**2 / v)
    lz, se = fs.estimators.log_evidence(log_w)
    assert abs(float(lz) - log_exact) < 4 * float(se) + 1e-3, (float(lz), float(se), log_exact)
    assert np.all(np.asarray(acc) > 0.3)


@pytest.fixture(scope="module")
def gaussian_run():
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(16,), affine=True)
    return fs.samplers.fab(0, TARGET.log_prob, flow, num_iterations=100, batch_size=64, buffer_min_batches=4,
                           buffer_max_batches=20, num_intermediate=2, num_leapfrog=3, num_eval_samples=4000,
                           warn=False)


def test_fab_gaussian_log_Z(gaussian_run):
    r = gaussian_run
    assert abs(r.log_Z - TARGET.log_Z) < 4 * r.log_Z_se, (r.log_Z, r.log_Z_se, TARGET.log_Z)
    assert r.ess > 0.3 * 4000 and r.history["loss"].shape == (100,)
    assert np.all(np.isfinite(r.step_sizes))
    res = fs.importance_sampling(1, fs.flows.realnvp(2, num_layers=2, hidden=(16,), affine=True), r.params,
                                 TARGET.log_prob, 2000, warn=False)
    assert abs(float(res.log_Z) - TARGET.log_Z) < 4 * float(res.log_Z_se)


def test_bad_input():
    flow = fs.flows.realnvp(2, num_layers=2, hidden=(8,))
    with pytest.raises(TypeError, match="Flow"):
        fs.samplers.fab(0, TARGET.log_prob, object())
    with pytest.raises(ValueError, match="alpha"):
        fs.samplers.fab(0, TARGET.log_prob, flow, alpha=1.0)
    with pytest.raises(ValueError, match="buffer_min_batches"):
        fs.samplers.fab(0, TARGET.log_prob, flow, updates_per_iteration=8, buffer_min_batches=4)


@pytest.mark.slow  # one AIS fill + IS compile: 166 s at load 19 on 2 cores
def test_far_off_result_is_flagged():
    """An untrained flow on many-well 8 (16 modes): ln Z far off; IS ESS and k-hat say so (converged False)."""
    t = fs.targets.many_well(8)
    flow = fs.flows.realnvp(8, num_layers=1, hidden=(4,))
    with pytest.warns(fs.NotConvergedWarning):
        r = fs.samplers.fab(0, t.log_prob, flow, num_iterations=0, batch_size=16, buffer_min_batches=1,
                            buffer_max_batches=1, updates_per_iteration=1, num_intermediate=1, num_leapfrog=1,
                            num_eval_samples=2000)
    assert not r.converged and r.problems
    assert r.ess < 100 or r.k_hat > 0.7, (r.ess, r.k_hat)
