"""Autoregressive spin networks: exact normalisation by enumeration, sampling = log_prob."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flowsamp as fs
from flowsamp import autoregressive as ar
from flowsamp.autoregressive.base import sequential_sample


def _jit(net):
    """One compiled program per function (eager einsums compile op by op)."""
    return net._replace(log_prob=jax.jit(net.log_prob),
                        sample_and_log_prob=jax.jit(net.sample_and_log_prob, static_argnums=2))


def _perturbed(net, seed=1, scale=0.5):
    """Random (non-uniform) parameters so the checks are not trivial."""
    p = net.init(jax.random.key(0))
    leaves, tree = jax.tree.flatten(p)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


ISING_NETS = {
    "made": lambda: ar.made(3, depth=2, width=2),
    "made_linear": lambda: ar.made(3, depth=0),
    "pixelcnn": lambda: ar.pixelcnn(3, channels=4, depth=2, half_kernel=1),
    "made_z2": lambda: ar.symmetrize(ar.made(3, depth=1, width=2)),
}


@pytest.fixture(scope="module")
def ising3():
    s, _ = fs.targets.ising(L=3, beta=0.4).enumerate()
    return jnp.asarray(s, jnp.int32)


@pytest.mark.parametrize("name", list(ISING_NETS))
def test_ising_normalised_and_sampling_consistent(name, ising3):
    net = _jit(ISING_NETS[name]())
    p = _perturbed(net)
    lq = net.log_prob(p, ising3)
    assert ising3.shape[0] == 512
    np.testing.assert_allclose(float(jnp.exp(jax.scipy.special.logsumexp(lq))), 1.0, rtol=1e-5)
    s, lqs = net.sample_and_log_prob(p, jax.random.key(2), 64)
    assert s.shape == (64, 3, 3) and s.dtype == jnp.int32
    assert set(np.unique(np.asarray(s))) <= {-1, 1}
    np.testing.assert_allclose(lqs, net.log_prob(p, s), atol=1e-4)


def test_untrained_net_is_uniform(ising3):
    net = ar.made(3)
    lq = net.log_prob(net.init(jax.random.key(0)), ising3)
    np.testing.assert_allclose(lq, -9 * np.log(2.0), rtol=1e-6)


def test_cached_made_sampling_equals_sequential_passes():
    net = _jit(ar.made(3, [0, 1, 2], depth=2, width=3))
    p = _perturbed(net)
    s, lq = net.sample_and_log_prob(p, jax.random.key(5), 32)
    seq = jax.jit(sequential_sample, static_argnums=(0, 3, 4, 5))
    x_ref, lq_ref = seq(net.logits, p, jax.random.key(5), 32, 9, 3)
    np.testing.assert_array_equal(np.asarray(s).reshape(32, 9), np.asarray(x_ref))
    np.testing.assert_allclose(lq, lq_ref, atol=1e-4)


def test_samples_follow_q_by_enumeration(ising3):
    """Pearson chi^2 over the 512 states (cells with n q >= 5) within its 4-sigma band."""
    net = _jit(ISING_NETS["made"]())
    p = _perturbed(net)
    n = 20000
    s, _ = net.sample_and_log_prob(p, jax.random.key(3), n)
    code = 2 ** np.arange(8, -1, -1)
    idx = ((np.asarray(s).reshape(n, 9) + 1) // 2) @ code
    idx_all = ((np.asarray(ising3).reshape(-1, 9) + 1) // 2) @ code
    counts = np.bincount(idx, minlength=512)[idx_all]
    expected = n * np.exp(np.asarray(net.log_prob(p, ising3), np.float64))
    keep = expected >= 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    dof = keep.sum()
    assert abs(chi2 - dof) < 4 * np.sqrt(2 * dof)


@pytest.mark.parametrize("group", [None, "cyclic", "permutations"])
def test_potts_q3_normalised(group):
    target = fs.targets.potts(L=2, q=3, beta=1.0)
    s_all, _ = target.enumerate()
    s_all = jnp.asarray(s_all, jnp.int32)
    net = ar.made(2, target.spin_values, depth=1, width=2)
    if group:
        net = ar.symmetrize(net, group)
    net = _jit(net)
    p = _perturbed(net)
    lq = net.log_prob(p, s_all)
    np.testing.assert_allclose(float(jnp.exp(jax.scipy.special.logsumexp(lq))), 1.0, rtol=1e-5)
    s, lqs = net.sample_and_log_prob(p, jax.random.key(4), 16)
    np.testing.assert_allclose(lqs, net.log_prob(p, s), atol=1e-4)
    if group:  # invariant under relabelling every site
        np.testing.assert_allclose(net.log_prob(p, (s_all + 1) % 3), lq, atol=1e-4)


def test_potts_q3_pixelcnn_3x3_normalised():
    target = fs.targets.potts(L=3, q=3, beta=1.0)
    s_all = jnp.asarray(target.enumerate()[0], jnp.int32)  # 19683 states
    net = _jit(ar.pixelcnn(3, target.spin_values, channels=3, depth=1, half_kernel=1))
    lq = net.log_prob(_perturbed(net), s_all)
    np.testing.assert_allclose(float(jnp.exp(jax.scipy.special.logsumexp(lq))), 1.0, rtol=1e-5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="L must be"):
        ar.made(1)
    with pytest.raises(ValueError, match="ascending"):
        ar.made(3, (1, -1))
    net = ar.made(3)
    with pytest.raises(ValueError, match="shape"):
        net.log_prob(net.init(jax.random.key(0)), jnp.ones((4, 4), jnp.int32))
    with pytest.raises(TypeError, match="integer"):
        net.log_prob(net.init(jax.random.key(0)), jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="group"):
        ar.symmetrize(net, "dihedral")
