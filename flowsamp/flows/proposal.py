"""A trained flow as a stateless one-point proposal for MH and importance sampling."""

from __future__ import annotations

from typing import Any



from flowsamp.base import Flow, Proposal
from flowsamp.types import Array, PRNGKey


def proposal(flow: Flow, params: Any) -> Proposal:
    r"""Freeze ``params`` into a :class:`~flowsamp.base.Proposal` drawing one point at a time.

    ``sample_and_log_prob(key) -> (x, log_q)`` with :math:`x \sim q_\theta` of shape
    ``(dim,)`` and :math:`\log q_\theta(x)` a scalar; ``log_prob(x) -> log_q`` for one point
    (or a batch ``(..., dim)``). Both are pure and vmap-able over keys / points.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a flowsamp Flow, got {type(flow).__name__}")

    def sample_and_log_prob(key: PRNGKey) -> tuple[Array, Array]:
        x, log_q = flow.sample_and_log_prob(params, key, 1)
        return x[0], log_q[0]

    def log_prob(x: Array) -> Array:
        return flow.log_prob(params, x)

    return Proposal(sample_and_log_prob, log_prob)


