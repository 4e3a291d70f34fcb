r"""Symmetrised autoregressive distributions: Z2 (Ising) and S_q / Z_q (Potts).

For a group G acting on the spin states (a permutation of the q values applied to every site),

.. math::

    q_G(s) = \frac{1}{|G|} \sum_{g \in G} q(g\, s)

is normalised, G-invariant and exact to evaluate (|G| passes); a draw is ``g s`` with
``s ~ q`` and ``g`` uniform on G.  For Ising, G = Z2 (global flip), as in VAN's ``--z2``.
``group="cyclic"`` uses the q cyclic shifts (Z_q), ``"permutations"`` all q! relabellings (S_q;
q <= 5).  Symmetrising the training samples is the talk's cure for mode collapse.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.autoregressive.base import AutoregressiveNet, to_index, to_spins
from flowsamp.types import Array, PRNGKey

__all__ = ["symmetrize", "group_permutations"]

GROUPS = ("cyclic", "permutations")


def group_permutations(q: int, group: str) -> np.ndarray:
    """Permutations of the state indices, shape ``(|G|, q)`` (identity first)."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; choose one of {GROUPS}")
    if group == "cyclic":
        return np.array([(np.arange(q) + c) % q for c in range(q)])
    if q > 5:
        raise ValueError(f"group='permutations' has q! = {math.factorial(q)} elements; use 'cyclic' for q > 5")
    return np.array(list(itertools.permutations(range(q))))


def symmetrize(net: AutoregressiveNet, group: str = "cyclic") -> AutoregressiveNet:
    """Return the G-symmetrised net :math:`q_G(s) = |G|^{-1}\\sum_g q(g s)` (same params)."""
    perms = jnp.asarray(group_permutations(net.num_states, group), jnp.int32)
    size = perms.shape[0]
    L, values = net.L, net.spin_values

    def images(s: Array) -> Array:  # (..., L, L) -> (|G|, ..., L, L)
        x = to_index(s, values, L)
        return to_spins(_apply(perms, x), values, L)

    def log_prob(params, s: Array) -> Array:
        lq = jax.vmap(lambda t: net.log_prob(params, t))(images(s))
        return jax.scipy.special.logsumexp(lq, axis=0) - jnp.log(jnp.asarray(size, lq.dtype))

    def sample_and_log_prob(params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        k1, k2 = jax.random.split(key)
        s, _ = net.sample_and_log_prob(params, k1, n)
        g = jax.random.randint(k2, (n,), 0, size)
        x = to_index(s, values, L)
        s = to_spins(jnp.take_along_axis(perms[g], x, axis=-1), values, L)
        return s, log_prob(params, s)

    return AutoregressiveNet(net.init, log_prob, sample_and_log_prob, net.logits, L, net.num_states,
                             values, f"symmetrize({net.name}, {group})")


def _apply(perms: Array, x: Array) -> Array:
    """``perms[g][x]`` for every g: ``(|G|, ..., N)``."""
    return jax.vmap(lambda p: p[x])(perms)
