"""Common pieces of every continuous target.

A target is a frozen dataclass (``eq=False``: hashed by identity, so it can be a
static argument of ``jax.jit``) with

* ``dim``: the event dimension;
* ``log_prob(x)``: the unnormalized log-density :math:`\\log \\tilde p(x)` of one
  point ``x`` of shape ``(dim,)`` (pure; works under ``jit``, ``vmap``, ``grad``);
* ``log_Z``: the exact :math:`\\ln \\int \\tilde p(x)\\,dx`, or ``None``;
* ``sample(key, n)``: ``n`` exact draws of shape ``(n, dim)`` or ``NotImplementedError``;
* ``mode_of(x)``: integer mode label of ``x`` (``(dim,)`` or ``(n, dim)``);
* ``mode_weights``: exact probabilities of the labels (numpy array) or ``None``;
* ``num_modes``: number of labels ``mode_of`` can return, or ``None``.

Constants are stored as numpy float64 and cast to the dtype of ``x`` inside
``log_prob``, so the same target runs in float32 and under ``jax_enable_x64``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.base import as_key
from flowsamp.types import Array, PRNGKey

__all__ = ["Target", "as_points", "float_dtype", "check_n", "rejection_sample"]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Target:
    """Base class: shared fields and default behaviour of a target.

    Subclasses override :meth:`log_prob` and, where they exist, :meth:`sample`
    and :meth:`mode_of`.
    """

    dim: int
    log_Z: float | None = None
    mode_weights: np.ndarray | None = None
    num_modes: int | None = None

    def log_prob(self, x: Array) -> Array:  # pragma: no cover - abstract
        """Unnormalized log-density of one point ``x`` of shape ``(dim,)``."""
        raise NotImplementedError

    def sample(self, key: PRNGKey, n: int) -> Array:
        """``n`` exact independent draws, shape ``(n, dim)``, in the default float dtype.

        Compiled once per ``(target, n)``; raises ``NotImplementedError`` where the
        target has no exact sampler.
        """
        if type(self)._sample is Target._sample:
            raise NotImplementedError(f"{type(self).__name__} has no exact sampler")
        return _jit_sample(self, as_key(key), check_n(n))

    def _sample(self, key: PRNGKey, n: int) -> Array:
        """Subclasses implement exact sampling here (traced under ``jit``)."""
        raise NotImplementedError

    def mode_of(self, x: Array) -> Array:
        """Integer mode label per point; this target defines no modes."""
        raise NotImplementedError(f"{type(self).__name__} defines no modes")

    def __repr__(self) -> str:  # arrays make the dataclass repr unreadable
        return f"{type(self).__name__}(dim={self.dim}, log_Z={self.log_Z})"


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jit_sample(target: Target, key: PRNGKey, n: int) -> Array:
    return target._sample(key, n)


def float_dtype() -> Any:
    """The default JAX float dtype (float64 under ``jax_enable_x64``, else float32)."""
    return jnp.result_type(float)


def as_points(x: Any, dim: int) -> Array:
    """Return ``x`` as a floating JAX array whose last axis has length ``dim``.

    Integer input is cast to the default float dtype; float input keeps its dtype.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(float_dtype())
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(f"expected points with last axis of length {dim}, got shape {x.shape}")
    return x


def check_n(n: Any) -> int:
    """Validate a (static) number of samples."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return int(n)


def check_positive(name: str, value: Any) -> float:
    """Return ``float(value)``, raising ``ValueError`` unless it is finite and > 0."""
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return v


def rejection_sample(key: PRNGKey, n: int, propose, log_accept, batch: int | None = None) -> Array:
    """Exact rejection sampling of ``n`` points, vectorised, under ``lax.while_loop``.

    Parameters
    ----------
    key : PRNGKey
    n : int
        Number of accepted draws wanted (static).
    propose : callable
        ``propose(key, m) -> (m, ...)`` array of candidates from the envelope g.
    log_accept : callable
        ``log_accept(y) -> (m,)`` the log acceptance probability
        :math:`\\log [f(y) / (M g(y))] \\le 0` of each candidate.
    batch : int, optional
        Candidates per round (default ``max(n, 16)``).

    Returns
    -------
    Array of shape ``(n, ...)``: independent exact draws from f, in the order accepted.
    """
    key = as_key(key)
    n = check_n(n)
    m = max(n, 16) if batch is None else int(batch)
    probe = jax.eval_shape(lambda k: propose(k, m), key)
    buf = jnp.zeros((n,) + probe.shape[1:], probe.dtype)
    if n == 0:
        return buf

    def cond(carry):
        return carry[2] < n

    def body(carry):
        key, buf, filled = carry
        key, kp, ku = jax.random.split(key, 3)
        y = propose(kp, m)
        log_u = jnp.log(jax.random.uniform(ku, (m,), dtype=y.dtype))
        acc = log_u < log_accept(y)
        idx = filled + jnp.cumsum(acc, dtype=jnp.int32) - 1
        idx = jnp.where(acc & (idx < n), idx, n)  # out of range -> dropped
        buf = buf.at[idx].set(y, mode="drop")
        filled = jnp.minimum(n, filled + jnp.sum(acc, dtype=jnp.int32))
        return key, buf, filled

    _, buf, _ = jax.lax.while_loop(cond, body, (key, buf, jnp.asarray(0, jnp.int32)))
    return buf
