"""The frozen global-local step of adaptive flow MCMC, as a flowsamp kernel for numpyro.

After :func:`flowsamp.samplers.adaptive_flow_mcmc` has trained a flow :math:`q_\\theta`
(inside :class:`flowsamp.numpyro.Kernel`'s warm-up), each numpyro iteration applies one
independent-MH move proposed by the flow and then one local MALA/HMC move:

.. math::

    x \\xrightarrow{\\text{flow IMH}} x' \\xrightarrow{\\text{local}} x'', \\qquad
    \\alpha_{\\text{glob}} = \\min\\Big(1, \\frac{p(x^*) q_\\theta(x)}{p(x) q_\\theta(x^*)}\\Big),

both of which leave :math:`p` invariant, so their composition does. With
``num_candidates=K >= 2`` the global move is i-SIR instead (keep x, draw K-1 candidates from
:math:`q_\\theta`, pick one with probability :math:`\\propto p/q_\\theta`,
:mod:`flowsamp.kernels.isir`): K-1 chances per step to land in a mode the flow covers only
thinly, such as a narrow peak it smooths over. The flow parameters and the local step size are
fixed when the kernel is built (numpyro's warm-up rebuilds it with each dual-averaging step
size); the state is the position and its log-density.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import Flow, SamplingAlgorithm
from flowsamp.flows import proposal as make_proposal
from flowsamp.kernels import hmc, isir, mala

# the package re-exports the constructor under the module's name: fetch the module itself
flow_imh_module = importlib.import_module("flowsamp.kernels.flow_imh")
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["GlobalLocalState", "GlobalLocalInfo", "global_local"]


class GlobalLocalState(NamedTuple):
    """``position`` and ``log_prob`` :math:`\\log p(x)` (the flow parameters and step size
    are the constructor's, not state: numpyro's warm-up rebuilds the kernel with each new
    dual-averaging step size around an existing state)."""

    position: Array
    log_prob: Array


class GlobalLocalInfo(NamedTuple):
    """``is_accepted`` / ``acceptance_rate`` of the global (flow) move, and of the local one."""

    is_accepted: Array
    acceptance_rate: Array
    local_is_accepted: Array
    local_acceptance_rate: Array


def global_local(
    log_prob_fn: LogProbFn,
    flow: Flow,
    params: Any,
    step_size: Any,
    local: str = "mala",
    num_integration_steps: int = 8,
    num_candidates: int = 1,
) -> SamplingAlgorithm:
    """One flow move followed by one local move (MALA or HMC).

    The flow move is independent MH (``num_candidates=1``) or i-SIR with ``num_candidates``
    points per step, the current one included (``>= 2``); ``acceptance_rate`` is then the
    probability of moving to a fresh candidate.

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> GlobalLocalState`` and
        ``step(key, state) -> (GlobalLocalState, GlobalLocalInfo)`` with this flow
        (``params``) and local ``step_size``.
    """
    if local not in ("mala", "hmc"):
        raise ValueError(f"local must be 'mala' or 'hmc', got {local!r}")
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive int, got {num_candidates!r}")

    def init(position: Array) -> GlobalLocalState:
        position = jnp.asarray(position)
        return GlobalLocalState(position, log_prob_fn(position))

    def step(key: PRNGKey, state: GlobalLocalState) -> tuple[GlobalLocalState, GlobalLocalInfo]:
        key_glob, key_loc = jax.random.split(key)
        step_size_now = jnp.asarray(step_size, state.position.dtype)
        prop = make_proposal(flow, params)
        if num_candidates == 1:
            imh = flow_imh_module.flow_imh(log_prob_fn, prop)
        else:
            imh = isir(log_prob_fn, prop, num_candidates=num_candidates)
        imh_state = flow_imh_module.FlowIMHState(
            state.position, state.log_prob, jnp.asarray(prop.log_prob(state.position), state.log_prob.dtype)
        )
        imh_state, imh_info = imh.step(key_glob, imh_state)
        if local == "mala":
            loc = mala(log_prob_fn, step_size_now)
        else:
            loc = hmc(log_prob_fn, step_size_now, num_integration_steps)
        loc_state, loc_info = loc.step(key_loc, loc.init(imh_state.position))
        new = GlobalLocalState(loc_state.position, loc_state.log_prob)
        info = GlobalLocalInfo(
            imh_info.is_accepted, imh_info.acceptance_rate, loc_info.is_accepted, loc_info.acceptance_rate
        )
        return new, info

    return SamplingAlgorithm(init, step)
