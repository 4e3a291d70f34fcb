"""Independent Metropolis-Hastings with a flow (or any independence proposal).

The proposal ``q`` does not depend on the current point: a candidate ``x'`` is
drawn from ``q`` and accepted with probability

.. math::

    \\alpha(x, x') = \\min\\left(1, \\frac{p(x')\\, q(x)}{p(x)\\, q(x')}\\right),

so the chain is exact for ``p`` whatever ``q`` is (it mixes fast when ``q`` is
close to ``p`` and covers it). The state caches ``log p(x)`` and ``log q(x)`` of
the current point, so one step costs one draw from ``q`` plus one evaluation of
``log p`` and nothing else.

References: Tierney, Ann. Statist. 22 (1994) 1701; Gabrié, Rotskoff,
Vanden-Eijnden, PNAS 119 (2022) e2109420119, arXiv:2105.12603.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, Proposal, SamplingAlgorithm, metropolis_test, select
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["FlowIMHInfo", "FlowIMHState", "build_kernel", "flow_imh", "init", "imh_accept", "imh_test"]


class FlowIMHState(NamedTuple):
    """State of an independence chain.

    ``position`` is x, ``log_prob`` is log p(x) (unnormalized), ``log_q`` is the
    proposal's log q(x) at the same point.
    """

    position: Array
    log_prob: Array
    log_q: Array


class FlowIMHInfo(NamedTuple):
    """Diagnostics of one step: whether the candidate was accepted, min(1, ratio), and
    whether the proposed log-ratio was finite (non-finite = rejection)."""

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array


def _check_proposal(proposal: Proposal) -> None:
    for name in ("sample_and_log_prob", "log_prob"):
        if not callable(getattr(proposal, name, None)):
            raise TypeError(
                f"proposal must provide a callable `{name}` (see flowsamp.base.Proposal); "
                f"got {type(proposal).__name__}"
            )


def init(position: Array, log_prob_fn: LogProbFn, proposal: Proposal) -> FlowIMHState:
    """Return the state at ``position``: ``(x, log p(x), log q(x))``."""
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.floating):
        position = position.astype(jnp.result_type(float))
    log_p = jnp.asarray(log_prob_fn(position), dtype=position.dtype)
    log_q = jnp.asarray(proposal.log_prob(position), dtype=position.dtype)
    return FlowIMHState(position, log_p, log_q)


def imh_test(log_u: Array, state: FlowIMHState, proposed: FlowIMHState) -> tuple[FlowIMHState, FlowIMHInfo]:
    """Independence Metropolis-Hastings test of ``proposed`` against ``state`` given ``log u``.

    ``proposed`` carries the candidate with its ``log p`` and ``log q`` already evaluated and
    ``log_u`` is :math:`\\log u`, :math:`u \\sim U(0, 1)`, so candidates and uniforms may be
    drawn and evaluated in bulk beforehand. The candidate is accepted when
    :math:`\\log u < \\log r`,

    .. math::

        \\log r = [\\log p(x') - \\log q(x')] - [\\log p(x) - \\log q(x)],

    NaN-safe (a non-finite :math:`\\log r` is a rejection). Works elementwise on a batch of
    chains too. Returns the new state (candidate if accepted, else ``state``) and the info.
    """
    log_ratio = (proposed.log_prob - proposed.log_q) - (state.log_prob - state.log_q)
    is_accepted, rate, is_finite = metropolis_test(log_u, log_ratio)
    new_state = select(is_accepted, proposed, state)
    return new_state, FlowIMHInfo(is_accepted, rate, is_finite)


def imh_accept(
    key: PRNGKey, state: FlowIMHState, proposed: FlowIMHState
) -> tuple[FlowIMHState, FlowIMHInfo]:
    """:func:`imh_test` with :math:`\\log u` drawn from ``key`` (one chain)."""
    dtype = jnp.result_type(state.log_prob, float)
    log_u = jnp.log(jax.random.uniform(key, jnp.shape(state.log_prob), dtype=dtype))
    return imh_test(log_u, state, proposed)


def build_kernel() -> Callable[[PRNGKey, FlowIMHState, LogProbFn, Proposal], tuple[FlowIMHState, FlowIMHInfo]]:
    """Return ``kernel(key, state, log_prob_fn, proposal) -> (state, info)``.

    ``proposal`` is an argument (not closed over) so that a sampler can rebuild it
    from new flow parameters inside a jitted program.
    """

    def kernel(
        key: PRNGKey, state: FlowIMHState, log_prob_fn: LogProbFn, proposal: Proposal
    ) -> tuple[FlowIMHState, FlowIMHInfo]:
        key_prop, key_acc = jax.random.split(key)
        x_new, log_q_new = proposal.sample_and_log_prob(key_prop)
        x_new = jnp.asarray(x_new, dtype=state.position.dtype)
        log_q_new = jnp.asarray(log_q_new, dtype=state.position.dtype)
        log_p_new = jnp.asarray(log_prob_fn(x_new), dtype=state.position.dtype)
        proposed = FlowIMHState(x_new, log_p_new, log_q_new)
        return imh_accept(key_acc, state, proposed)

    return kernel


def flow_imh(log_prob_fn: LogProbFn, proposal: Proposal) -> SamplingAlgorithm:
    """Independent Metropolis-Hastings with a stateless proposal (e.g. a trained flow).

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density log p(x) of one point ``x`` of shape ``(dim,)``.
    proposal
        A :class:`flowsamp.base.Proposal`: ``sample_and_log_prob(key) -> (x', log q(x'))``
        and ``log_prob(x) -> log q(x)``; ``fs.flows.proposal(flow, params)`` builds one.

    Returns
    -------
    SamplingAlgorithm
        ``init(x) -> FlowIMHState`` and ``step(key, state) -> (state, FlowIMHInfo)``;
        the step accepts ``x' ~ q`` with probability

        .. math::

            \\min\\left(1, \\frac{p(x')\\, q(x)}{p(x)\\, q(x')}\\right)

        and leaves ``p`` invariant for any ``q`` whose support covers ``p``'s.
    """
    if not callable(log_prob_fn):
        raise TypeError(f"log_prob_fn must be callable, got {type(log_prob_fn).__name__}")
    _check_proposal(proposal)
    kernel = build_kernel()

    def init_fn(position: Array) -> FlowIMHState:
        return init(position, log_prob_fn, proposal)

    def step_fn(key: PRNGKey, state: FlowIMHState) -> tuple[FlowIMHState, FlowIMHInfo]:
        return kernel(key, state, log_prob_fn, proposal)

    return SamplingAlgorithm(init_fn, step_fn)


flow_imh = KernelAPI(flow_imh, globals(), __all__)
