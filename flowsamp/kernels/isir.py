"""Iterated sampling-importance-resampling (i-SIR) with an independence proposal.

One step keeps the current point ``x_0 = x`` and draws ``K - 1`` fresh candidates
``x_1, ..., x_{K-1} ~ q``; it then picks the next point among the ``K`` with
probability proportional to the importance weights

.. math::

    w_i = \\frac{p(x_i)}{q(x_i)}, \\qquad
    P(\\text{next} = x_j) = \\frac{w_j}{\\sum_{i=0}^{K-1} w_i}.

The chain leaves ``p`` invariant for any ``q`` covering ``p`` (it is a Gibbs
sampler on the extended space of K candidates and an index); with ``K = 2`` it is
Barker's version of independent MH. The state caches ``log p`` and ``log q`` of the
current point. Non-finite candidate weights are dropped (weight 0).

:func:`isir_select` is the deterministic selection given pre-drawn candidates (with their
``log p`` and ``log q``) and one uniform :math:`u` (inverse-CDF draw of the index), so a
sampler can draw candidates in bulk; :func:`build_kernel`'s kernel draws them and calls it.

References: Andrieu, Lee, Vihola, Bernoulli 24 (2018) 842, arXiv:1504.01896;
Samsonov et al., "Local-global MCMC kernels", NeurIPS 2022, arXiv:2111.02702.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, Proposal, SamplingAlgorithm
from flowsamp.kernels.flow_imh import FlowIMHState, _check_proposal
from flowsamp.kernels.flow_imh import init as _imh_init
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["ISIRInfo", "ISIRState", "build_kernel", "init", "isir", "isir_select"]

#: The i-SIR state is the independence-chain state (x, log p(x), log q(x)).
ISIRState = FlowIMHState


class ISIRInfo(NamedTuple):
    """Diagnostics of one step.

    ``is_accepted``: the chain moved to a fresh candidate; ``acceptance_rate``:
    the probability of moving, ``1 - w_0 / sum_i w_i``; ``is_finite``: every fresh
    candidate had a finite weight; ``ess``: ``(sum w)^2 / sum w^2`` over the K points.
    """

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    ess: Array


def init(position: Array, log_prob_fn: LogProbFn, proposal: Proposal) -> ISIRState:
    """Return the state at ``position``: ``(x, log p(x), log q(x))``."""
    return _imh_init(position, log_prob_fn, proposal)


def isir_select(u: Array, state: ISIRState, candidates: ISIRState) -> tuple[ISIRState, ISIRInfo]:
    """Pick the next point among ``state`` and ``K - 1`` pre-evaluated ``candidates``.

    Parameters
    ----------
    u
        A uniform :math:`u \\sim U(0, 1)` (scalar); the index is the smallest :math:`j` with
        :math:`\\sum_{i \\le j} w_i > u \\sum_i w_i` (inverse CDF), so it has probability
        :math:`w_j / \\sum_i w_i`.
    state
        The current point ``(x_0, log p(x_0), log q(x_0))``.
    candidates
        An :data:`ISIRState` whose leaves have a leading axis of ``K - 1`` fresh draws
        :math:`x_i \\sim q` with their ``log p`` and ``log q``.

    Returns
    -------
    (ISIRState, ISIRInfo)
        The chosen point and the info. Candidates with a non-finite weight get weight 0 (and
        ``info.is_finite`` is False); if the current weight is not finite either, the chain
        stays.
    """
    dtype = state.position.dtype
    log_w_new = candidates.log_prob - candidates.log_q
    fresh_finite = jnp.isfinite(log_w_new)
    log_w_new = jnp.where(fresh_finite, log_w_new, -jnp.inf)
    log_w = jnp.concatenate([(state.log_prob - state.log_q)[None], log_w_new])
    probs = jax.nn.softmax(log_w)
    probs = jnp.where(jnp.isfinite(probs), probs, 0.0)
    cdf = jnp.cumsum(probs)
    idx = jnp.sum(cdf <= jnp.asarray(u, cdf.dtype) * cdf[-1])
    # float rounding may push idx past the last positive weight: clamp to it
    last_positive = probs.shape[0] - 1 - jnp.argmax((probs > 0)[::-1])
    idx = jnp.where(cdf[-1] > 0, jnp.minimum(idx, last_positive), 0)
    pick = lambda first, rest: jnp.concatenate([first[None], rest])[idx]  # noqa: E731
    new_state = jax.tree.map(pick, state, candidates)
    new_state = ISIRState(*(jnp.asarray(leaf, dtype) for leaf in new_state))
    ess = 1.0 / jnp.sum(probs**2)
    info = ISIRInfo(idx > 0, 1.0 - probs[0], jnp.all(fresh_finite), ess)
    return new_state, info


def build_kernel(
    num_candidates: int,
) -> Callable[[PRNGKey, ISIRState, LogProbFn, Proposal], tuple[ISIRState, ISIRInfo]]:
    """Return ``kernel(key, state, log_prob_fn, proposal)`` for ``K = num_candidates``
    points per step (the current one plus ``K - 1`` fresh draws); it draws the candidates
    and the uniform and calls :func:`isir_select`."""
    if not isinstance(num_candidates, int) or isinstance(num_candidates, bool) or num_candidates < 2:
        raise ValueError(f"num_candidates must be an integer >= 2, got {num_candidates!r}")

    def kernel(
        key: PRNGKey, state: ISIRState, log_prob_fn: LogProbFn, proposal: Proposal
    ) -> tuple[ISIRState, ISIRInfo]:
        dtype = state.position.dtype
        key_prop, key_pick = jax.random.split(key)
        keys = jax.random.split(key_prop, num_candidates - 1)
        xs, log_qs = jax.vmap(proposal.sample_and_log_prob)(keys)
        xs = jnp.asarray(xs, dtype=dtype)
        log_qs = jnp.asarray(log_qs, dtype=dtype)
        log_ps = jnp.asarray(jax.vmap(log_prob_fn)(xs), dtype=dtype)
        u = jax.random.uniform(key_pick, (), dtype=jnp.result_type(dtype, float))
        return isir_select(u, state, ISIRState(xs, log_ps, log_qs))

    return kernel


def isir(log_prob_fn: LogProbFn, proposal: Proposal, num_candidates: int = 16) -> SamplingAlgorithm:
    """i-SIR kernel: keep the current point, draw ``num_candidates - 1`` from ``q``,
    resample one in proportion to ``p / q``.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density log p(x) of one point of shape ``(dim,)``.
    proposal
        A :class:`flowsamp.base.Proposal` (``fs.flows.proposal(flow, params)``).
    num_candidates
        K, the number of points per step including the current one (>= 2).

    Returns
    -------
    SamplingAlgorithm
        ``init(x) -> ISIRState`` and ``step(key, state) -> (state, ISIRInfo)``; the
        next point is ``x_j`` with probability :math:`w_j / \\sum_i w_i`,
        :math:`w_i = p(x_i) / q(x_i)`, which leaves ``p`` invariant.
    """
    if not callable(log_prob_fn):
        raise TypeError(f"log_prob_fn must be callable, got {type(log_prob_fn).__name__}")
    _check_proposal(proposal)
    kernel = build_kernel(num_candidates)

    def init_fn(position: Array) -> ISIRState:
        return init(position, log_prob_fn, proposal)

    def step_fn(key: PRNGKey, state: ISIRState) -> tuple[ISIRState, ISIRInfo]:
        return kernel(key, state, log_prob_fn, proposal)

    return SamplingAlgorithm(init_fn, step_fn)


isir = KernelAPI(isir, globals(), __all__)
