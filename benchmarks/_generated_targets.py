"""Seeded target generators shared by the held-out benchmarks (``smc_generated_targets.py``,
``pt_generated_targets.py``, ``mcmc_generated_targets.py``): none of these targets is used by the
tests, and each comes with what its benchmark checks exactly.

Each constructor returns a :class:`Generated`: ``log_prob`` of one point (plus ``offset``, so that
ln Z is not 0), the dimension, ln Z, the per-coordinate first and second moments (``m2`` ``None``
where x^2 has no finite fourth moment, so that no MCSE of E[x^2] can be trusted), and for mixtures ``mode_of``
(the component of largest responsibility), the weights and the means.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


class Generated(NamedTuple):
    log_prob: Callable
    dim: int
    log_Z: float
    mean: np.ndarray
    m2: np.ndarray | None
    mode_of: Callable | None = None
    weights: np.ndarray | None = None
    means: np.ndarray | None = None


def rotated_gaussian(d: int, cond: float, shift: float, seed: int, offset: float = 0.0) -> Generated:
    """N(mu, Q diag(logspace(0, log10 cond)) Q^T), Q a random rotation, |mu| ~ ``shift``."""
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (q * np.logspace(0, np.log10(cond), d)) @ q.T
    prec = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    mu = shift * rng.normal(size=d) / np.sqrt(d)
    m = jnp.asarray(mu, jnp.float32)
    lz = 0.5 * np.linalg.slogdet(cov)[1] + 0.5 * d * np.log(2 * np.pi) + offset
    return Generated(lambda x: -0.5 * (x - m) @ prec @ (x - m) + offset, d, lz, mu, np.diag(cov) + mu**2)


def scaled_gaussian(d: int, lo: float, hi: float, seed: int) -> Generated:
    """Axis-aligned Gaussian, sds log-uniform in [lo, hi] (a diagonal mass fits it)."""
    import jax.numpy as jnp

    sd = np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), d))
    s = jnp.asarray(sd, jnp.float32)
    lz = float(np.sum(np.log(sd)) + 0.5 * d * np.log(2 * np.pi))
    return Generated(lambda x: -0.5 * jnp.sum((x / s) ** 2), d, lz, np.zeros(d), sd**2)


def student(d: int, nu: float) -> Generated:
    """Multivariate Student t, unit scale. Second moments only when nu > 8, where x^2 has a finite
    fourth moment: for 4 < nu <= 8 its mean has a CLT but the MCSE estimated from the draws is
    not reliable (nu = 5, 3 seeds: z of E[x_j^2] -3.1 and -3.2 from NUTS, -4.9 from the flow
    sampler, all low: the draws' own spread under-states the tail)."""
    import jax.numpy as jnp
    from scipy.special import gammaln

    c = gammaln((nu + d) / 2) - gammaln(nu / 2) - d / 2 * np.log(nu * np.pi)
    m2 = np.full(d, nu / (nu - 2)) if nu > 8 else None
    return Generated(lambda x: -(nu + d) / 2 * jnp.log1p(x @ x / nu), d, -float(c), np.zeros(d), m2)


def banana(d: int, b: float) -> Generated:
    """Haario's banana: x_0 ~ N(0, 100), x_1 + b (x_0^2 - 100) ~ N(0, 1), the rest N(0, 1)."""
    import jax.numpy as jnp

    def lp(x):
        y2 = x[1] + b * (x[0] ** 2 - 100.0)
        return -0.5 * (x[0] ** 2 / 100.0 + y2**2 + jnp.sum(x[2:] ** 2))

    m2 = np.ones(d)
    m2[0], m2[1] = 100.0, 1.0 + 2.0 * b**2 * 100.0**2
    return Generated(lp, d, 0.5 * d * np.log(2 * np.pi) + np.log(10.0), np.zeros(d), m2)


def funnel(d: int, scale: float) -> Generated:
    """Neal's funnel: v ~ N(0, scale^2), x_i | v ~ N(0, e^v), i = 1 .. d - 1."""
    import jax.numpy as jnp

    def lp(x):
        v = x[0]
        return -0.5 * v**2 / scale**2 - 0.5 * jnp.sum(x[1:] ** 2) * jnp.exp(-v) - 0.5 * (d - 1) * v

    m2 = np.full(d, np.exp(scale**2 / 2))
    m2[0] = scale**2
    return Generated(lp, d, 0.5 * d * np.log(2 * np.pi) + np.log(scale), np.zeros(d), m2)


def mixture(d: int, k: int, sep: float, seed: int, offset: float = 0.0) -> Generated:
    """k isotropic Gaussians, means N(0, sep^2 / 2), sds U(0.5, 1.5), weights Dirichlet(2)."""
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp

    rng = np.random.default_rng(seed)
    mus = rng.normal(size=(k, d)) * sep / np.sqrt(2)
    w = rng.dirichlet(np.ones(k) * 2)
    s = rng.uniform(0.5, 1.5, size=k)
    m_, lw_, s_ = jnp.asarray(mus, jnp.float32), jnp.asarray(np.log(w), jnp.float32), jnp.asarray(s, jnp.float32)

    def comp(x):
        x = jnp.asarray(x)
        return lw_ - 0.5 * jnp.sum((x[..., None, :] - m_) ** 2, -1) / s_**2 - d * jnp.log(s_)

    return Generated(lambda x: logsumexp(comp(x)) + offset, d, 0.5 * d * np.log(2 * np.pi) + offset, w @ mus,
                     w @ (s[:, None] ** 2 + mus**2), lambda x: jnp.argmax(comp(x), -1), w, mus)
