"""Pareto-smoothed importance sampling diagnostic: the tail shape k-hat of the weights."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from flowsamp.estimators.weights import _check_log_weights, _finite
from flowsamp.types import Array


def _gpd_shape_zhang_stephens(x: Array) -> Array:
    """Zhang & Stephens (2009) posterior-mean estimate of the generalized-Pareto shape ``k``.

    ``x`` are the exceedances over the threshold, sorted ascending; zeros (tail weights tied
    with the threshold, common when a discrete target repeats states) carry no information
    about the tail's shape and are left out of the fit (masked, so the shapes stay static).
    A weakly informative prior pulls ``k`` towards 0.5 (Vehtari et al.), as in PSIS. NaN when
    fewer than 5 exceedances are positive.
    """
    size = x.shape[0]
    positive = x > 0
    n = jnp.sum(positive).astype(x.dtype)
    first = size - jnp.sum(positive)  # x is sorted: the positive exceedances are the last n
    m = 30 + int(math.sqrt(size))
    j = jnp.arange(1, m + 1, dtype=x.dtype)
    quartile = x[jnp.clip(first + jnp.floor(n / 4 + 0.5).astype(first.dtype) - 1, first, size - 1)]
    b = 1.0 - jnp.sqrt(m / (j - 0.5))
    b = b / (3.0 * quartile) + 1.0 / x[-1]

    def mean_log1p(bb: Array) -> Array:
        terms = jnp.where(positive, jnp.log1p(-bb[..., None] * jnp.where(positive, x, 0.0)), 0.0)
        return jnp.sum(terms, axis=-1) / n

    k = mean_log1p(b)
    # log(-b/k) as log|b| - log|k| where -b/k > 0: with the weights spanning float32's range, b
    # and k reach ~1e37 and a compiled b/k over- or underflows (an infinite profile likelihood)
    ratio = -b / k
    log_ratio = jnp.where(ratio > 0, jnp.log(jnp.abs(b)) - jnp.log(jnp.abs(k)), jnp.log(ratio))
    log_lik = n * (log_ratio - k - 1.0)
    weights = 1.0 / jnp.sum(jnp.exp(log_lik[None, :] - log_lik[:, None]), axis=1)
    weights = jnp.where(jnp.isfinite(weights), weights, 0.0)
    b_post = jnp.sum(b * weights) / jnp.sum(weights)
    k_post = mean_log1p(b_post)
    k_hat = (n * k_post + 10 * 0.5) / (n + 10)
    return jnp.where(n >= 5, k_hat, jnp.nan)


@jax.jit  # one program per shape, not ~100 op-by-op ones when called from host code (the verdicts)
def pareto_k(log_w: Array) -> Array:
    r"""PSIS tail-shape diagnostic :math:`\hat k` of the importance weights.

    Fits a generalized Pareto distribution to the :math:`M = \min(\lceil 0.2 N\rceil,
    \lceil 3\sqrt N\rceil)` largest weights (Vehtari, Simpson, Gelman, Yao, Gabry,
    arXiv:1507.02646). Reading: :math:`\hat k < 0.5` the variance of the weights is finite and
    the IS estimate is reliable; :math:`0.5 \le \hat k < 0.7` usable with care
    (``0.7`` is the large-N threshold); :math:`\hat k \ge 0.7` the estimate is unreliable.

    Returns
    -------
    Scalar :math:`\hat k` (``nan`` when fewer than 5 tail draws exceed the threshold: tail
    weights tied with it, as for repeated states of a discrete target, are left out of the fit).
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
    # exceedances w_i - w_cut relative to the largest, in log space so nothing over- or
    # underflows: log(e^d - 1) = d + log(1 - e^-d) with d = log w_i - log w_cut >= 0. A tail
    # weight tied with the threshold (d = 0) is an exact zero (left out of the fit); a positive
    # exceedance that underflows relative to the largest is kept as the smallest positive float.
    d = tail - cutoff
    log_x = d + jnp.log(-jnp.expm1(-jnp.where(d > 0, d, 1.0)))
    rel = jnp.maximum(jnp.exp(log_x - log_x[-1]), jnp.finfo(log_w.dtype).tiny)
    x = jnp.where(d > 0, rel, 0.0)
    return _gpd_shape_zhang_stephens(x)
