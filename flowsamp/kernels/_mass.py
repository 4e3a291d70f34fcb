r"""The inverse mass matrix :math:`M^{-1}` shared by HMC, MALA and the warm-up.

``inverse_mass`` is ``None`` (the identity), a scalar, a flat vector (the diagonal of
:math:`M^{-1}`) or a dense symmetric positive-definite ``(dim, dim)`` matrix. With the
Cholesky factor :math:`M^{-1} = L L^\top` (dense) or :math:`L = \mathrm{diag}(\sqrt{m^{-1}})`
(diagonal):

* momentum :math:`p = L^{-\top}\xi \sim \mathcal N(0, M)` from :math:`\xi \sim \mathcal N(0, I)`;
* velocity :math:`M^{-1}p`; kinetic energy :math:`\tfrac12 p^\top M^{-1} p`;
* a preconditioned Langevin increment :math:`L\xi \sim \mathcal N(0, M^{-1})` and the
  quadratic form :math:`v^\top M v = \lVert L^{-1} v\rVert^2` of its proposal density.

Whether the matrix is dense is read from its (static) number of dimensions, so the same
code runs under ``jit`` for both.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from flowsamp.types import Array

__all__ = ["as_inverse_mass", "is_dense", "matvec", "cholesky", "momentum", "noise_scale", "whiten", "quadratic"]


def as_inverse_mass(inverse_mass: Any, dtype: Any) -> Array:
    """``inverse_mass`` as an array of ``dtype`` (``None`` is the scalar 1)."""
    return jnp.asarray(1.0 if inverse_mass is None else inverse_mass, dtype=dtype)


def is_dense(inverse_mass: Array) -> bool:
    """True for a ``(dim, dim)`` matrix, False for a scalar or a diagonal vector."""
    return jnp.ndim(inverse_mass) == 2


def matvec(inverse_mass: Array, v: Array) -> Array:
    """:math:`M^{-1} v`."""
    return inverse_mass @ v if is_dense(inverse_mass) else inverse_mass * v


def cholesky(inverse_mass: Array) -> Array:
    """:math:`L` with :math:`L L^\\top = M^{-1}` (lower triangular, or the diagonal's square root)."""
    return jnp.linalg.cholesky(inverse_mass) if is_dense(inverse_mass) else jnp.sqrt(inverse_mass)


def momentum(noise: Array, inverse_mass: Array) -> Array:
    """:math:`p = L^{-\\top}\\xi \\sim \\mathcal N(0, M)` from standard normal ``noise`` :math:`\\xi`."""
    chol = cholesky(inverse_mass)
    if is_dense(inverse_mass):
        return solve_triangular(chol, noise, lower=True, trans="T")
    return noise / chol


def noise_scale(noise: Array, chol: Array) -> Array:
    """:math:`L\\xi \\sim \\mathcal N(0, M^{-1})`."""
    return chol @ noise if chol.ndim == 2 else chol * noise


def whiten(v: Array, chol: Array) -> Array:
    """:math:`L^{-1} v` (the inverse of :func:`noise_scale`)."""
    return solve_triangular(chol, v, lower=True) if chol.ndim == 2 else v / chol


def quadratic(v: Array, chol: Array) -> Array:
    """:math:`v^\\top M v = \\lVert L^{-1} v \\rVert^2`."""
    w = whiten(v, chol)
    return jnp.sum(w * w)
