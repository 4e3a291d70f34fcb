"""The frozen global-local step of adaptive flow MCMC as a kernel (used by numpyro's ``Kernel``).

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
size); the state is the position and its log-density. The global move is
:func:`flowsamp.kernels.flow_imh.build_kernel`'s or :func:`flowsamp.kernels.isir.build_kernel`'s
kernel and the local one :mod:`flowsamp.kernels.mala`'s or :mod:`flowsamp.kernels.hmc`'s (no
copies).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import Flow, KernelAPI, SamplingAlgorithm
from flowsamp.flows import proposal as make_proposal
from flowsamp.kernels import _flat
from flowsamp.kernels.flow_imh import FlowIMHState
from flowsamp.kernels.flow_imh import build_kernel as _imh_kernel
from flowsamp.kernels.hmc import build_kernel as _hmc_kernel
from flowsamp.kernels.hmc import init as _hmc_init
from flowsamp.kernels.isir import build_kernel as _isir_kernel
from flowsamp.kernels.mala import build_kernel as _mala_kernel
from flowsamp.kernels.mala import init as _mala_init
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["GlobalLocalState", "GlobalLocalInfo", "init", "build_kernel", "global_local"]

LOCAL_KERNELS = ("mala", "hmc")


class GlobalLocalState(NamedTuple):
    """``position`` and ``log_prob`` :math:`\\log p(x)` (the flow parameters and step size
    are the constructor's, not state: numpyro's warm-up rebuilds the kernel with each new
    dual-averaging step size around an existing state)."""

    position: Array
    log_prob: Array


class GlobalLocalInfo(NamedTuple):
    """``is_accepted`` / ``acceptance_rate`` of the global (flow) move, and of the local one;
    ``is_finite``: both moves' proposals were finite."""

    is_accepted: Array
    acceptance_rate: Array
    local_is_accepted: Array
    local_acceptance_rate: Array
    is_finite: Array


def init(position: Array, log_prob_fn: LogProbFn) -> GlobalLocalState:
    """Return ``(x, log p(x))``; integer positions are cast to the default float dtype."""
    position = _flat.as_float_position(jnp.asarray(position))
    return GlobalLocalState(position, jnp.asarray(log_prob_fn(position), position.dtype))


def _check_options(local: str, num_candidates: int) -> None:
    if local not in LOCAL_KERNELS:
        raise ValueError(f"local must be 'mala' or 'hmc', got {local!r}")
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive int, got {num_candidates!r}")


def build_kernel(
    local: str = "mala", num_integration_steps: int = 8, num_candidates: int = 1
) -> Callable[..., tuple[GlobalLocalState, GlobalLocalInfo]]:
    """Return ``kernel(key, state, log_prob_fn, flow, params, step_size) -> (state, info)``:
    one flow move (IMH, or i-SIR with ``num_candidates >= 2``) then one ``local`` move."""
    _check_options(local, num_candidates)
    _flat.check_num_steps("num_integration_steps", num_integration_steps)
    global_kernel = _imh_kernel() if num_candidates == 1 else _isir_kernel(num_candidates)
    mala_kernel, hmc_kernel = _mala_kernel(), _hmc_kernel()

    def kernel(
        key: PRNGKey, state: GlobalLocalState, log_prob_fn: LogProbFn, flow: Flow, params: Any, step_size: Any
    ) -> tuple[GlobalLocalState, GlobalLocalInfo]:
        key_glob, key_loc = jax.random.split(key)
        step_size_now = jnp.asarray(step_size, state.position.dtype)
        prop = make_proposal(flow, params)
        log_q = jnp.asarray(prop.log_prob(state.position), state.log_prob.dtype)
        imh_state, imh_info = global_kernel(
            key_glob, FlowIMHState(state.position, state.log_prob, log_q), log_prob_fn, prop
        )
        if local == "mala":
            loc_state = _mala_init(imh_state.position, log_prob_fn)
            loc_state, loc_info = mala_kernel(key_loc, loc_state, log_prob_fn, step_size_now)
        else:
            loc_state = _hmc_init(imh_state.position, log_prob_fn)
            loc_state, loc_info = hmc_kernel(key_loc, loc_state, log_prob_fn, step_size_now, num_integration_steps)
        new = GlobalLocalState(loc_state.position, loc_state.log_prob)
        info = GlobalLocalInfo(
            imh_info.is_accepted,
            imh_info.acceptance_rate,
            loc_info.is_accepted,
            loc_info.acceptance_rate,
            imh_info.is_finite & loc_info.is_finite,
        )
        return new, info

    return kernel


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

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log p(x)` of one point ``(dim,)``.
    flow, params
        The flow :math:`q_\\theta` and its parameters (fixed).
    step_size
        The local move's step size (checked when concrete).
    local : {"mala", "hmc"}
        The local kernel; ``num_integration_steps`` is HMC's leapfrog count.
    num_candidates
        1 for independent MH, ``K >= 2`` for i-SIR.

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> GlobalLocalState`` and
        ``step(key, state) -> (GlobalLocalState, GlobalLocalInfo)`` with this flow
        (``params``) and local ``step_size``.
    """
    _check_options(local, num_candidates)
    _flat.check_positive("step_size", step_size)
    kernel = build_kernel(local, num_integration_steps, num_candidates)

    def init_fn(position: Array) -> GlobalLocalState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: GlobalLocalState) -> tuple[GlobalLocalState, GlobalLocalInfo]:
        return kernel(key, state, log_prob_fn, flow, params, step_size)

    return SamplingAlgorithm(init_fn, step_fn)


global_local = KernelAPI(global_local, globals(), __all__)
