r"""Prioritised replay buffer of weighted samples (FAB's, Midgley et al. 2023, arXiv:2208.01893).

A fixed-size FIFO store of points :math:`x_i` with log importance weights :math:`\log w_i` and
the proposal log-density :math:`\log q_{\rm old}(x_i)` at which the weights were computed.
Batches are drawn **without replacement with probabilities proportional to** :math:`w_i`
(Gumbel-top-k: the indices of the ``n`` largest :math:`\log w_i + G_i`, :math:`G_i` standard
Gumbel, are a sample without replacement from the weights; Kool et al. 2019, arXiv:1903.06059).
After the flow moved from :math:`q_{\rm old}` to :math:`q_\theta`, :func:`PrioritisedBuffer.adjust`
re-weights the drawn entries, :math:`\log w_i \mathrel{+}= \log\Delta_i`,
:math:`\log q_{\rm old}(x_i) \leftarrow \log q_\theta(x_i)`, so the priorities stay those of
the current flow.

Pure functions over a NamedTuple state (jittable); empty slots have :math:`\log w = -\infty`
and are never drawn.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.types import Array, PRNGKey

__all__ = ["BufferState", "PrioritisedBuffer", "prioritised_buffer"]


class BufferState(NamedTuple):
    """``x`` (max_length, dim), ``log_w``, ``log_q_old`` (max_length,), ``index`` next slot, ``size``."""

    x: Array
    log_w: Array
    log_q_old: Array
    index: Array
    size: Array


class PrioritisedBuffer(NamedTuple):
    """``init(dim, dtype) -> state``; ``add(state, x, log_w, log_q) -> state``;
    ``sample(key, state, n) -> (x, log_q_old, indices)``; ``adjust(state, indices, log_w_adjust, log_q) -> state``."""

    init: Callable[..., BufferState]
    add: Callable[..., BufferState]
    sample: Callable[..., tuple[Array, Array, Array]]
    adjust: Callable[..., BufferState]
    max_length: int


def prioritised_buffer(max_length: int) -> PrioritisedBuffer:
    """Return the buffer's pure functions for ``max_length`` entries (see module docs).

    ``add`` writes a batch at the FIFO position (overwriting the oldest entries); entries with a
    non-finite ``x``, ``log_w`` or ``log_q`` are skipped (their slots keep the old content).
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"prioritised_buffer: `max_length` must be a positive int, got {max_length!r}")

    def init(dim: int, dtype=None) -> BufferState:
        dt = jnp.result_type(float) if dtype is None else dtype
        return BufferState(jnp.zeros((max_length, dim), dt), jnp.full((max_length,), -jnp.inf, dt),
                           jnp.zeros((max_length,), dt), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def add(state: BufferState, x: Array, log_w: Array, log_q: Array) -> BufferState:
        n = x.shape[0]
        if n > max_length:
            raise ValueError(f"prioritised_buffer.add: batch of {n} exceeds max_length {max_length}")
        ok = jnp.isfinite(log_w) & jnp.isfinite(log_q) & jnp.all(jnp.isfinite(x), axis=-1)
        idx = (state.index + jnp.arange(n)) % max_length
        x = jnp.where(ok[:, None], x, state.x[idx])
        log_w = jnp.where(ok, log_w, state.log_w[idx])
        log_q = jnp.where(ok, log_q, state.log_q_old[idx])
        return BufferState(state.x.at[idx].set(x), state.log_w.at[idx].set(log_w),
                           state.log_q_old.at[idx].set(log_q), (state.index + n) % max_length,
                           jnp.minimum(state.size + n, max_length))

    def sample(key: PRNGKey, state: BufferState, n: int) -> tuple[Array, Array, Array]:
        k1, k2 = jax.random.split(key)
        g = jax.random.gumbel(k1, state.log_w.shape, state.log_w.dtype)
        _, idx = jax.lax.top_k(state.log_w + g, n)
        idx = jax.random.permutation(k2, idx)
        return state.x[idx], state.log_q_old[idx], idx

    def adjust(state: BufferState, indices: Array, log_w_adjust: Array, log_q: Array) -> BufferState:
        log_w = state.log_w[indices] + log_w_adjust
        log_w = jnp.where(jnp.isfinite(log_w), log_w, -jnp.inf)
        return state._replace(log_w=state.log_w.at[indices].set(log_w),
                              log_q_old=state.log_q_old.at[indices].set(log_q))

    return PrioritisedBuffer(init, add, sample, adjust, max_length)
