r"""Common contract of the autoregressive networks for lattice spins.

A configuration ``s`` of an ``L x L`` lattice (spin values, e.g. -1/+1 for Ising, 0..q-1 for
Potts) is read in raster order as state indices :math:`x_1, \dots, x_N \in \{0..q-1\}` and

.. math::

    q_\theta(s) = \prod_{i=1}^N q_\theta(x_i \mid x_{<i}), \qquad
    q_\theta(x_i = a \mid x_{<i}) = \operatorname{softmax}_a\, \ell_{i}(x_{<i}),

with logits :math:`\ell_i` from a masked network (MADE, PixelCNN) that sees only
:math:`x_{<i}`.  ``log_prob`` is exact (one teacher-forced pass) and ``sample_and_log_prob``
draws by ancestral sampling, which also returns the exact ``log q`` of each draw.

References: Wu, Wang & Zhang, PRL 122, 080602 (2019), arXiv:1809.10606 (VAN).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.types import Array, PRNGKey

__all__ = ["AutoregressiveNet", "check_spin_values", "to_index", "to_spins", "sequential_sample",
           "log_prob_from_logits"]


class AutoregressiveNet(NamedTuple):
    """An autoregressive distribution :math:`q_\\theta(s)` over spin configurations.

    * ``init(key) -> params`` (zero output layer: the untrained net is uniform, q = q**-N);
    * ``log_prob(params, s) -> log q(s)``, ``s`` integer spins ``(..., L, L)``;
    * ``sample_and_log_prob(params, key, n) -> (s (n, L, L) int32, log q (n,))``;
    * ``logits(params, x) -> (n, N, q)`` conditional logits given state indices ``x (n, N)``
      (output i depends on ``x[:, :i]`` only);
    * ``L``, ``num_states`` (q), ``spin_values`` (numpy, ascending), ``name``.
    """

    init: Callable[[PRNGKey], Any]
    log_prob: Callable[[Any, Array], Array]
    sample_and_log_prob: Callable[[Any, PRNGKey, int], tuple[Array, Array]]
    logits: Callable[[Any, Array], Array]
    L: int
    num_states: int
    spin_values: np.ndarray
    name: str

    @property
    def num_sites(self) -> int:
        return self.L * self.L


def check_spin_values(L: Any, spin_values: Any) -> tuple[int, np.ndarray]:
    """Validate ``L`` (int >= 2) and ``spin_values`` (>= 2 distinct ascending ints)."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"L must be an int >= 2, got {L!r}")
    values = np.asarray(spin_values)
    if values.ndim != 1 or values.size < 2 or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"spin_values must be a 1-D list of >= 2 ints, got {spin_values!r}")
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"spin_values must be strictly ascending, got {values.tolist()}")
    return int(L), values.astype(np.int64)


def to_index(s: Array, spin_values: np.ndarray, L: int) -> Array:
    """Spins ``(..., L, L)`` -> state indices ``(..., N)`` (int32)."""
    s = jnp.asarray(s)
    if s.ndim < 2 or s.shape[-2:] != (L, L):
        raise ValueError(f"expected spins of shape (..., {L}, {L}), got {s.shape}")
    if not jnp.issubdtype(s.dtype, jnp.integer):
        raise TypeError(f"spin configurations must be integer arrays, got {s.dtype}")
    values = jnp.asarray(spin_values, s.dtype)
    idx = jnp.sum((s[..., None] == values) * jnp.arange(values.size, dtype=jnp.int32), axis=-1)
    return idx.reshape(s.shape[:-2] + (L * L,)).astype(jnp.int32)


def to_spins(x: Array, spin_values: np.ndarray, L: int) -> Array:
    """State indices ``(..., N)`` -> spins ``(..., L, L)`` (int32)."""
    return jnp.asarray(spin_values, jnp.int32)[x].reshape(x.shape[:-1] + (L, L))


def log_prob_from_logits(logits: Array, x: Array) -> Array:
    r""":math:`\sum_i \log\operatorname{softmax}(\ell_i)_{x_i}`, logits ``(..., N, q)``, ``x (..., N)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.take_along_axis(logp, x[..., None], axis=-1)[..., 0], axis=-1)


def sequential_sample(
    logits_fn: Callable[[Any, Array], Array], params: Any, key: PRNGKey, n: int, N: int, q: int
) -> tuple[Array, Array]:
    """Ancestral sampling with one full teacher-forced pass per site (O(N) passes).

    Correct for any autoregressive ``logits_fn``; Gumbel noise is drawn in bulk.
    Returns state indices ``(n, N)`` and ``log q`` ``(n,)``.
    """
    dtype = jnp.result_type(float)
    gumbel = jax.random.gumbel(key, (N, n, q), dtype)

    def body(i, carry):
        x, log_q = carry
        li = jax.nn.log_softmax(logits_fn(params, x)[:, i], axis=-1)
        xi = jnp.argmax(li + gumbel[i], axis=-1).astype(jnp.int32)
        log_q = log_q + jnp.take_along_axis(li, xi[:, None], axis=-1)[:, 0]
        return x.at[:, i].set(xi), log_q

    x0 = jnp.zeros((n, N), jnp.int32)
    return jax.lax.fori_loop(0, N, body, (x0, jnp.zeros(n, dtype)))


def make_net(
    init: Callable, logits: Callable, sample_index: Callable | None, L: int, spin_values: np.ndarray,
    name: str,
) -> AutoregressiveNet:
    """Wrap ``logits(params, x)`` (and an optional cached ``sample_index(params, key, n)``)."""
    N, q = L * L, int(spin_values.size)

    def log_prob(params: Any, s: Array) -> Array:
        x = to_index(s, spin_values, L)
        batch = x.shape[:-1]
        flat = x.reshape((-1, N))
        return log_prob_from_logits(logits(params, flat), flat).reshape(batch)

    def sample_and_log_prob(params: Any, key: PRNGKey, n: int) -> tuple[Array, Array]:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if sample_index is None:
            x, log_q = sequential_sample(logits, params, key, int(n), N, q)
        else:
            x, log_q = sample_index(params, key, int(n))
        return to_spins(x, spin_values, L), log_q

    return AutoregressiveNet(init, log_prob, sample_and_log_prob, logits, L, q, spin_values, name)
