"""Minibatches of data rows, uniform or weighted (shared by the simulation-free losses)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flowsamp.types import Array, PRNGKey


def row_log_weights(weights: Array | None, n: int, name: str) -> Array | None:
    """``log(weights)`` after checking them (non-negative, shape ``(n,)``, positive sum), or ``None``."""
    if weights is None:
        return None
    weights = jnp.asarray(weights)
    if weights.shape != (n,) or not bool(jnp.all(weights >= 0)) or not bool(jnp.sum(weights) > 0):
        raise ValueError(f"{name}: `weights` must be non-negative with shape ({n},) and a positive sum")
    return jnp.log(weights)


def draw_rows(key: PRNGKey, data: Array, log_w: Array | None, batch_size: int) -> Array:
    """``batch_size`` rows of ``data`` drawn with replacement, uniformly or in proportion to ``exp(log_w)``."""
    if log_w is None:
        idx = jax.random.randint(key, (batch_size,), 0, data.shape[0])
    else:
        idx = jax.random.categorical(key, log_w, shape=(batch_size,))
    return data[idx]
