"""A flow symmetrised over a finite set of volume-preserving involutions.

.. math::

    q_G(x) = \\frac{1}{|G|} \\sum_{g \\in G} q_\\theta(g(x)), \\qquad
    G = \\{\\mathrm{id}, g_1, \\dots, g_m\\},

sampled by drawing :math:`y \\sim q_\\theta` and a uniform :math:`g \\in G`, then
``x = g(y)`` (each :math:`g` is its own inverse with unit Jacobian, e.g. sign flips or
swaps of coordinates). It is a valid proposal whether or not the target is symmetric.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from flowsamp.base import Flow
from flowsamp.types import Array, PRNGKey


def symmetrized(
    flow: Flow, symmetries: Sequence[Callable[[Array], Array]]
) -> tuple[Callable[[Any, PRNGKey, int], tuple[Array, Array]], Callable[[Any, Array], Array]]:
    """Return ``(sample_and_log_prob(params, key, n), log_prob(params, x))`` of :math:`q_G`.

    With no symmetries these are the flow's own functions. Each symmetry must map a batch
    ``(n, dim)`` row-wise.
    """
    if not symmetries:
        return flow.sample_and_log_prob, flow.log_prob
    maps = (lambda x: x,) + tuple(symmetries)
    m = len(maps)

    def apply_all(x: Array) -> Array:  # (m, n, d)
        return jnp.stack([g(x) for g in maps])

    def log_prob(params: Any, x: Array) -> Array:
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        imgs = apply_all(flat)
        lq = flow.log_prob(params, imgs.reshape(-1, x.shape[-1])).reshape(m, -1)
        return (jax.nn.logsumexp(lq, axis=0) - jnp.log(m).astype(lq.dtype)).reshape(lead)

    def sample_and_log_prob(params: Any, key: PRNGKey, n: int) -> tuple[Array, Array]:
        k_y, k_g = jax.random.split(key)
        y, _ = flow.sample_and_log_prob(params, k_y, n)
        which = jax.random.randint(k_g, (n,), 0, m)
        imgs = apply_all(y)
        x = jnp.take_along_axis(imgs, which[None, :, None], axis=0)[0]
        return x, log_prob(params, x)

    return sample_and_log_prob, log_prob
