r"""A flow symmetrised over a finite set of volume-preserving involutions.

.. math::

    q_G(x) = \frac{1}{|G|} \sum_{g \in G} q_\theta(g(x)), \qquad
    G = \{\mathrm{id}, g_1, \dots, g_m\},

sampled by drawing :math:`y \sim q_\theta` and a uniform :math:`g \in G`, then
:math:`x = g(y)` (each :math:`g` is its own inverse with unit Jacobian, e.g. sign flips or
swaps of coordinates, so :math:`x` has density :math:`q_G`). It is a valid independence
proposal whether or not the target is symmetric: the Metropolis-Hastings test with
:math:`q_G` keeps the chain exact, and a flow trained on one mode then also proposes its
images.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from flowsamp.base import Flow
from flowsamp.types import Array, PRNGKey

__all__ = ["symmetrize"]


def _not_a_bijection(*_: Any) -> Any:
    raise NotImplementedError(
        "a symmetrized flow is a mixture over the symmetry group, not a bijection: "
        "it has no forward/inverse map (use the underlying flow's)"
    )


def symmetrize(flow: Flow, symmetries: Sequence[Callable[[Array], Array]]) -> Flow:
    r"""Return the flow mixture :math:`q_G` over ``{id} + symmetries`` as a :class:`Flow`.

    Parameters
    ----------
    flow
        The flow :math:`q_\theta`; its ``params`` are those of the result.
    symmetries
        Volume-preserving involutions :math:`g` (``g(g(x)) = x``, :math:`|\det Dg| = 1`),
        each mapping a batch ``(n, dim)`` row-wise, e.g. ``lambda x: -x``.

    Returns
    -------
    Flow
        ``init``, ``dim`` of ``flow``; ``log_prob(params, x)`` is
        :math:`\log q_G(x) = \operatorname{logsumexp}_g \log q_\theta(g(x)) - \log|G|`
        and ``sample_and_log_prob`` draws :math:`x = g(y)`, :math:`y \sim q_\theta`,
        :math:`g` uniform on :math:`G`. ``forward``/``inverse`` raise (a mixture is not a
        bijection). With no symmetries, ``flow`` itself is returned.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"symmetrize: flow must be a flowsamp Flow, got {type(flow).__name__}")
    symmetries = tuple(symmetries)
    for g in symmetries:
        if not callable(g):
            raise TypeError(f"symmetrize: symmetries must be callables x -> g(x), got {type(g).__name__}")
    if not symmetries:
        return flow
    maps = (lambda x: x,) + symmetries
    m = len(maps)

    def images(x: Array) -> Array:  # (m, n, d)
        return jnp.stack([g(x) for g in maps])

    def log_prob(params: Any, x: Array) -> Array:
        lead = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        lq = flow.log_prob(params, images(flat).reshape(-1, x.shape[-1])).reshape(m, -1)
        return (jax.nn.logsumexp(lq, axis=0) - jnp.log(m).astype(lq.dtype)).reshape(lead)

    def sample_and_log_prob(params: Any, key: PRNGKey, n: int) -> tuple[Array, Array]:
        k_y, k_g = jax.random.split(key)
        y, _ = flow.sample_and_log_prob(params, k_y, n)
        which = jax.random.randint(k_g, (n,), 0, m)
        x = jnp.take_along_axis(images(y), which[None, :, None], axis=0)[0]
        return x, log_prob(params, x)

    return Flow(flow.init, sample_and_log_prob, log_prob, _not_a_bijection, _not_a_bijection, flow.dim)
