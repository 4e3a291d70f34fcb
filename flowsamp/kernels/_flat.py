"""Flat-vector helpers shared by the gradient and random-walk kernels.

Kernels do their arithmetic on one flat vector (``jax.flatten_util.ravel_pytree``), so a
position may be an array of shape ``(dim,)`` or any pytree of float arrays; for an array the
ravel is a reshape and costs nothing.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
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


def is_concrete(value: Any) -> bool:
    """False for a value traced under ``jit``/``vmap`` (it cannot be checked on the host)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless every element of ``value`` is finite and > 0.

    Only concrete values are checked: a step size traced inside ``jit`` (e.g. one being
    adapted) cannot be inspected and is passed through.
    """
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) or arr.size == 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def check_num_steps(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless a concrete ``value`` is an integer >= 1."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if isinstance(value, bool) or arr.shape != () or not np.issubdtype(arr.dtype, np.integer) or int(arr) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_inverse_mass(inverse_mass: Any) -> None:
    """Raise ``ValueError`` unless a concrete ``inverse_mass`` is a positive scalar, a positive
    finite vector or a symmetric positive-definite matrix."""
    if inverse_mass is None or not is_concrete(inverse_mass):
        return
    arr = np.asarray(inverse_mass, dtype=np.float64)
    if arr.ndim <= 1:
        check_positive("inverse_mass", arr)
        return
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"inverse_mass must be a scalar, a vector or a square matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or not np.allclose(arr, arr.T, rtol=1e-5, atol=1e-8 * np.abs(arr).max()):
        raise ValueError("inverse_mass must be a finite symmetric matrix")
    try:
        np.linalg.cholesky(arr)
    except np.linalg.LinAlgError:
        raise ValueError("inverse_mass must be positive definite (its Cholesky factorisation failed)") from None


def as_float_position(position: Any) -> Any:
    """Cast integer (or boolean) leaves of ``position`` to the default float dtype.

    Gradient and random-walk kernels move positions continuously, so an integer start such as
    ``jnp.array([1, 2])`` is cast (float32, or float64 under ``jax_enable_x64``) rather than
    rejected; float leaves are returned unchanged.
    """

    def cast(leaf: Any) -> Any:
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            raise TypeError(f"positions must be real, got dtype {leaf.dtype}")
        return leaf.astype(jnp.result_type(float))

    return jax.tree.map(cast, position)
