"""MALA: acceptance probability against a hand-derived value on a 1-D Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np

import flowsamp as fs

SIGMA = 1.5
EPS = 0.8
X = 2.0


def log_prob(x):
    return -0.5 * jnp.sum(x**2) / SIGMA**2


def hand_log_ratio(x, y, eps=EPS, s2=SIGMA**2):
    """log pi(y) - log pi(x) + log q(x|y) - log q(y|x) with grad log pi(x) = -x / s2 and
    q(y|x) = N(y; x (1 - eps / s2), 2 eps)."""
    log_pi = lambda z: -0.5 * z**2 / s2  # noqa: E731
    log_q = lambda to, frm: -((to - frm * (1.0 - eps / s2)) ** 2) / (4.0 * eps)  # noqa: E731
    return log_pi(y) - log_pi(x) + log_q(x, y) - log_q(y, x)


def test_acceptance_rate_matches_hand_derivation(x64):
    """For every accepted move x -> y, info.acceptance_rate == min(1, exp(hand_log_ratio(x, y)))."""
    alg = fs.kernels.mala(log_prob, EPS)
    state = alg.init(jnp.array([X]))
    keys = jax.random.split(jax.random.key(0), 400)
    new, info = jax.jit(jax.vmap(alg.step, in_axes=(0, None)))(keys, state)
    accepted = np.asarray(info.is_accepted)
    y = np.asarray(new.position[:, 0])[accepted]
    expected = np.minimum(1.0, np.exp(hand_log_ratio(X, y)))
    assert accepted.sum() > 100 and (~accepted).sum() > 10  # both branches exercised
    np.testing.assert_allclose(np.asarray(info.acceptance_rate)[accepted], expected, rtol=1e-12)
    # the cached gradient is grad log pi at the new point
    np.testing.assert_allclose(np.asarray(new.grad[:, 0])[accepted], -y / SIGMA**2, rtol=1e-12)


def test_proposal_distribution_and_rejections(x64):
    """Proposals are N(x (1 - eps/s2), 2 eps): the rejection fraction equals
    E[1 - min(1, r)] over that Gaussian (quadrature), within 4 binomial standard errors."""
    alg = fs.kernels.mala(log_prob, EPS)
    state = alg.init(jnp.array([X]))
    n = 20_000
    keys = jax.random.split(jax.random.key(1), n)
    _, info = jax.jit(jax.vmap(alg.step, in_axes=(0, None)))(keys, state)
    z, w = np.polynomial.hermite_e.hermegauss(200)  # probabilists' Gauss-Hermite
    y = X * (1.0 - EPS / SIGMA**2) + np.sqrt(2.0 * EPS) * z
    mean_rate = np.sum(w * np.minimum(1.0, np.exp(hand_log_ratio(X, y)))) / np.sqrt(2 * np.pi)
    frac = float(np.mean(info.is_accepted))
    se = np.sqrt(mean_rate * (1 - mean_rate) / n)
    assert abs(frac - mean_rate) < 4 * se, (frac, mean_rate, se)
    # info.acceptance_rate is an unbiased estimate of the same quantity (smaller variance)
    rate = np.asarray(info.acceptance_rate)
    assert abs(rate.mean() - mean_rate) < 4 * rate.std() / np.sqrt(n)
