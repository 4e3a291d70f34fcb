r"""Delayed-acceptance Metropolis-Hastings: a cheap surrogate screens, the target corrects.

Christen & Fox (2005). Let :math:`\pi` be the expensive target (``log_prob_fn``) and
:math:`\pi^*` a cheap surrogate (``surrogate_log_prob``, any density: a learned potential, a
Laplace or Gaussian fit, a coarse model). Stage 1 is one step of a Metropolis-Hastings kernel
:math:`K^*` that is reversible with respect to :math:`\pi^*` (``proposal_kernel``: any
``fs.kernels`` MH kernel, e.g. ``rwmh``, ``mala``, ``hmc``) run on the surrogate. When it moves
to :math:`y \ne x`, stage 2 evaluates :math:`\pi(y)` and accepts with

.. math::

    \alpha_2(x, y) = \min\Big(1, \frac{\pi(y)\,\pi^*(x)}{\pi(x)\,\pi^*(y)}\Big).

Since :math:`\pi^*(x) K^*(x, y) = \pi^*(y) K^*(y, x)`,

.. math::

    \pi(x) K^*(x, y)\,\alpha_2(x, y) = K^*(y, x)\,\pi^*(y)\,
    \min\Big(\frac{\pi(x)}{\pi^*(x)}, \frac{\pi(y)}{\pi^*(y)}\Big)

is symmetric in :math:`(x, y)`: the composite kernel is reversible with respect to
:math:`\pi` for *any* surrogate (a bad one only lowers the acceptance rate). With the
random-walk stage 1 this is exactly Christen & Fox's two-stage test
:math:`\alpha_1 = \min(1, \pi^*(y)/\pi^*(x))`. Proposals the surrogate rejects never reach
:math:`\pi`: ``info.num_expensive_evaluations`` (0 or 1) counts the evaluations of
``log_prob_fn``. The evaluation sits in a ``lax.cond``, so one chain really skips it; under
``vmap`` a batch of chains evaluates every branch (XLA selects), so run expensive targets
chain by chain (or ``lax.map``) to bank the saving. A non-finite :math:`\log\pi(y)` or
:math:`\log\pi^*(y)` is a rejection.

References
----------
J. A. Christen and C. Fox, "Markov chain Monte Carlo using an approximation",
J. Comput. Graph. Stat. 14, 795 (2005). Also Cui, Fox & O'Sullivan, arXiv:1011.4927.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm, metropolis_test, select
from flowsamp.kernels import _flat
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["DelayedAcceptanceState", "DelayedAcceptanceInfo", "init", "build_kernel", "delayed_acceptance"]


class DelayedAcceptanceState(NamedTuple):
    """Position, its cached :math:`\\log\\pi(x)`, and the stage-1 kernel's state on the surrogate
    (which caches :math:`\\log\\pi^*(x)` and, for gradient kernels, its gradient)."""

    position: Any
    log_prob: Array
    surrogate_state: Any


class DelayedAcceptanceInfo(NamedTuple):
    """Diagnostics of one transition.

    ``is_accepted``: moved (both stages passed); ``acceptance_rate``: the stage-2 probability
    :math:`\\alpha_2` (0 when stage 1 did not move, or the proposal was non-finite);
    ``first_stage_accepted``: the surrogate kernel moved; ``is_finite``: no non-finite log-density
    was met; ``num_expensive_evaluations``: 1 when ``log_prob_fn`` was evaluated, else 0;
    ``surrogate_info``: the stage-1 kernel's own info; ``proposed_position`` and
    ``proposed_log_prob``: the stage-1 proposal :math:`y` and :math:`\\log\\pi(y)` where it was
    evaluated (the current position and its cached value otherwise), so a caller can keep every
    expensive evaluation, e.g. to train the surrogate (:func:`flowsamp.samplers.surrogate_mcmc`);
    ``proposed_surrogate_log_prob``: :math:`\\log\\pi^*(y)` likewise.
    """

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    first_stage_accepted: Array
    num_expensive_evaluations: Array
    surrogate_info: Any
    proposed_position: Any = None
    proposed_log_prob: Any = None
    proposed_surrogate_log_prob: Any = None


def init(
    position: Any, log_prob_fn: LogProbFn, surrogate_log_prob: LogProbFn, proposal_kernel: Any
) -> DelayedAcceptanceState:
    """Return the state at ``position``: :math:`\\log\\pi(x)` (one expensive evaluation) and
    ``proposal_kernel.init(position, surrogate_log_prob)``."""
    position = _flat.as_float_position(position)
    inner = proposal_kernel.init(position, surrogate_log_prob)
    return DelayedAcceptanceState(position, log_prob_fn(position), inner)


def build_kernel(proposal_kernel: Any, **static: Any) -> Callable[..., tuple[DelayedAcceptanceState, DelayedAcceptanceInfo]]:
    """Return ``kernel(key, state, log_prob_fn, surrogate_log_prob, **params) -> (state, info)``.

    ``proposal_kernel`` is a ``fs.kernels`` MH kernel API (``rwmh``, ``mala``, ``hmc`` ...);
    ``static`` goes to its ``build_kernel`` and ``params`` to its kernel (``scale=``,
    ``step_size=`` ...).
    """
    inner_kernel = proposal_kernel.build_kernel(**static)

    def kernel(
        key: PRNGKey,
        state: DelayedAcceptanceState,
        log_prob_fn: LogProbFn,
        surrogate_log_prob: LogProbFn,
        **params: Any,
    ) -> tuple[DelayedAcceptanceState, DelayedAcceptanceInfo]:
        key_inner, key_acc = jax.random.split(key)
        inner_new, inner_info = inner_kernel(key_inner, state.surrogate_state, surrogate_log_prob, **params)
        moved = inner_info.is_accepted
        dtype = jnp.result_type(state.log_prob)
        log_prob = jax.lax.cond(
            moved,
            lambda x: jnp.asarray(log_prob_fn(x), dtype),
            lambda x: state.log_prob,
            inner_new.position,
        )
        log_ratio = (log_prob - state.log_prob) - (inner_new.log_prob - state.surrogate_state.log_prob)
        log_u = _flat.log_uniform(key_acc, log_ratio)
        passed, rate, finite2 = metropolis_test(log_u, log_ratio)
        is_accepted = moved & passed
        candidate = DelayedAcceptanceState(inner_new.position, log_prob, inner_new)
        new_state = select(is_accepted, candidate, state)
        is_finite = inner_info.is_finite & (finite2 | ~moved)
        info = DelayedAcceptanceInfo(
            is_accepted,
            jnp.where(moved, rate, jnp.zeros_like(rate)),
            is_finite,
            moved,
            moved.astype(jnp.int32),
            inner_info,
            inner_new.position,
            log_prob,
            inner_new.log_prob,
        )
        return new_state, info

    return kernel


def delayed_acceptance(
    log_prob_fn: LogProbFn,
    surrogate_log_prob: LogProbFn,
    proposal_kernel: Any,
    **params: Any,
) -> SamplingAlgorithm:
    """Delayed-acceptance MH (Christen & Fox 2005) as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    log_prob_fn
        The expensive unnormalized log-density :math:`\\log\\pi(x)`.
    surrogate_log_prob
        A cheap approximation :math:`\\log\\pi^*(x)`; exactness holds for any choice.
    proposal_kernel
        A ``fs.kernels`` Metropolis-Hastings kernel API reversible with respect to its target
        (``fs.kernels.rwmh``, ``mala``, ``hmc``), run on the surrogate as stage 1.
    **params
        The stage-1 kernel's parameters (``scale=`` for ``rwmh``, ``step_size=`` ...).

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> DelayedAcceptanceState``; ``step(key, state) -> (state,
        DelayedAcceptanceInfo)``.

    Raises
    ------
    TypeError
        If ``proposal_kernel`` lacks ``init``/``build_kernel`` (pass ``fs.kernels.rwmh``, not
        ``fs.kernels.rwmh(...)``).
    """
    if not (hasattr(proposal_kernel, "init") and hasattr(proposal_kernel, "build_kernel")):
        raise TypeError(
            "proposal_kernel must be a flowsamp kernel API with init/build_kernel such as fs.kernels.rwmh, "
            f"got {type(proposal_kernel).__name__}"
        )
    # validate the stage-1 parameters the way its own constructor does
    proposal_kernel(surrogate_log_prob, **params)
    kernel = build_kernel(proposal_kernel)

    def init_fn(position: Any) -> DelayedAcceptanceState:
        return init(position, log_prob_fn, surrogate_log_prob, proposal_kernel)

    def step_fn(key: PRNGKey, state: DelayedAcceptanceState) -> tuple[DelayedAcceptanceState, DelayedAcceptanceInfo]:
        return kernel(key, state, log_prob_fn, surrogate_log_prob, **params)

    return SamplingAlgorithm(init_fn, step_fn)


delayed_acceptance = KernelAPI(delayed_acceptance, globals(), __all__)
