"""Flat-vector helpers shared by the gradient and random-walk kernels.

Kernels do their arithmetic on one flat vector (``jax.flatten_util.ravel_pytree``), so a
position may be an array of shape ``(dim,)`` or any pytree of float arrays; for an array the
ravel is a reshape and costs nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from flowsamp.types import Array, PRNGKey


def flatten(position: Any) -> tuple[Array, Callable[[Array], Any]]:
    """Return ``(flat, unravel)`` for ``position`` (an array or a pytree of arrays)."""
    if isinstance(position, jax.Array) and position.ndim == 1:
        return position, lambda flat: flat
    return ravel_pytree(position)


def flat_log_prob(log_prob_fn: Callable[[Any], Array], unravel: Callable[[Array], Any]):
    """``log_prob`` as a function of the flat vector."""
    return lambda flat: log_prob_fn(unravel(flat))


def value_and_grad_flat(log_prob_fn: Callable[[Any], Array], position: Any) -> tuple[Array, Array]:
    """``(log_prob(position), grad log_prob(position))`` with the gradient as a flat vector."""
    flat, unravel = flatten(position)
    return jax.value_and_grad(flat_log_prob(log_prob_fn, unravel))(flat)


def as_param(value: Any, dtype: Any) -> Array:
    """Cast a step size / scale / inverse mass to the dtype of the position."""
    return jnp.asarray(value, dtype=dtype)


def normal(key: PRNGKey, flat: Array) -> Array:
    """One standard normal vector shaped like ``flat`` (one draw per step)."""
    return jax.random.normal(key, flat.shape, flat.dtype)


def log_uniform(key: PRNGKey, like: Array) -> Array:
    """:math:`\\log u`, :math:`u \\sim U(0, 1)`, shaped like ``like`` in its float dtype (the draw
    :func:`flowsamp.base.metropolis_accept` makes)."""
    dtype = jnp.result_type(like, float)
    return jnp.log(jax.random.uniform(key, jnp.shape(like), dtype=dtype))
