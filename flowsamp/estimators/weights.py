"""Self-normalised importance weights and their effective sample size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from flowsamp.types import Array


def _check_log_weights(log_w: Array) -> Array:
    log_w = jnp.asarray(log_w)
    if log_w.ndim != 1:
        raise ValueError(f"log_w must be a 1-D array of log importance weights, got shape {log_w.shape}")
    if log_w.shape[0] == 0:
        raise ValueError("log_w is empty")
    if not jnp.issubdtype(log_w.dtype, jnp.floating):
        raise TypeError(f"log_w must be floating point, got dtype {log_w.dtype}")
    return log_w


def _finite(log_w: Array) -> Array:
    """Map NaN log-weights (a failed density evaluation) to -inf: zero weight."""
    return jnp.where(jnp.isnan(log_w), -jnp.inf, log_w)


def _shift(log_w: Array) -> Array:
    """Subtract the largest finite log-weight, so sums of squares keep full precision."""
    top = jnp.max(jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf))
    return log_w - jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))


@jax.jit  # one program per shape (see pareto_k)
def normalized_weights(log_w: Array) -> Array:
    r"""Self-normalised importance weights.

    .. math::
        \bar w_i = \frac{w_i}{\sum_j w_j}, \qquad w_i = \exp(\log w_i)
        = \frac{p(x_i)}{q(x_i)}.

    Parameters
    ----------
    log_w
        Log importance weights ``log p(x_i) - log q(x_i)``, shape ``(N,)``. NaN entries
        count as zero weight.

    Returns
    -------
    Array of shape ``(N,)`` summing to one.
    """
    log_w = _finite(_check_log_weights(log_w))
    return jnp.exp(log_w - logsumexp(log_w))


@jax.jit  # one program per shape (see pareto_k)
def ess(log_w: Array) -> Array:
    r"""Importance-sampling effective sample size (Kish).

    .. math::
        \mathrm{ESS} = \frac{(\sum_i w_i)^2}{\sum_i w_i^2} \in [1, N].

    Divide by ``N`` for the ESS fraction. Computed in log space, so it is exact for
    weights spanning hundreds of orders of magnitude.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(ess(jnp.zeros(100))), 3)  # equal weights: ESS = N
    100.0
    >>> float(ess(jnp.log(jnp.array([1.0, 1.0, 0.0, 0.0]))))  # two of four draws carry the weight
    2.0
    """
    log_w = _shift(_finite(_check_log_weights(log_w)))
    return jnp.exp(2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w))
