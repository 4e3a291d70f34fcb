"""Pareto-smoothed importance sampling diagnostic: the tail shape k-hat of the weights."""

from __future__ import annotations

import math

import jax.numpy as jnp

from flowsamp.estimators.weights import _check_log_weights, _finite
from flowsamp.types import Array


def _gpd_shape_zhang_stephens(x: Array) -> Array:
    """Zhang & Stephens (2009) posterior-mean estimate of the generalized-Pareto shape ``k``.

    ``x`` are the positive exceedances over the threshold, sorted ascending. A weakly
    informative prior pulls ``k`` towards 0.5 (Vehtari et al.), as in PSIS.
    """
    n = x.shape[0]
    m = 30 + int(math.sqrt(n))
    j = jnp.arange(1, m + 1, dtype=x.dtype)
    quartile = x[max(int(n / 4 + 0.5) - 1, 0)]
    b = 1.0 - jnp.sqrt(m / (j - 0.5))
    b = b / (3.0 * quartile) + 1.0 / x[-1]
    k = jnp.mean(jnp.log1p(-b[:, None] * x[None, :]), axis=1)
    log_lik = n * (jnp.log(-b / k) - k - 1.0)
    weights = 1.0 / jnp.sum(jnp.exp(log_lik[None, :] - log_lik[:, None]), axis=1)
    weights = jnp.where(jnp.isfinite(weights), weights, 0.0)
    b_post = jnp.sum(b * weights) / jnp.sum(weights)
    k_post = jnp.mean(jnp.log1p(-b_post * x))
    return (n * k_post + 10 * 0.5) / (n + 10)


def pareto_k(log_w: Array) -> Array:
    r"""PSIS tail-shape diagnostic :math:`\hat k` of the importance weights.

    Fits a generalized Pareto distribution to the :math:`M = \min(\lceil 0.2 N\rceil,
    \lceil 3\sqrt N\rceil)` largest weights (Vehtari, Simpson, Gelman, Yao, Gabry,
    arXiv:1507.02646). Reading: :math:`\hat k < 0.5` the variance of the weights is finite and
    the IS estimate is reliable; :math:`0.5 \le \hat k < 0.7` usable with care
    (``0.7`` is the large-N threshold); :math:`\hat k \ge 0.7` the estimate is unreliable.

    Returns
    -------
    Scalar :math:`\hat k` (``nan`` when fewer than 5 tail draws are available).
    """
    log_w = _finite(_check_log_weights(log_w))
    n = log_w.shape[0]
    m = min(math.ceil(0.2 * n), math.ceil(3.0 * math.sqrt(n)))
    if m < 5 or n < m + 1:
        return jnp.asarray(jnp.nan, log_w.dtype)
    sorted_lw = jnp.sort(log_w)
    tail = sorted_lw[-m:]
    cutoff = sorted_lw[-m - 1]
    # exceedances in units of the largest weight, so nothing overflows
    top = tail[-1]
    x = jnp.exp(tail - top) - jnp.exp(cutoff - top)
    x = jnp.maximum(x, jnp.finfo(log_w.dtype).tiny)
    return _gpd_shape_zhang_stephens(x / x[-1])
