r"""Independent Metropolis-Hastings for lattice spins with an autoregressive proposal (neural MCMC).

A candidate :math:`s' \sim q_\theta` (an :class:`~flowsamp.autoregressive.AutoregressiveNet`,
exact :math:`\ln q_\theta`) is accepted with

.. math::

    \alpha = \min\left(1, \frac{\tilde p(s')\, q_\theta(s)}{\tilde p(s)\, q_\theta(s')}\right),
    \qquad \tilde p(s) = e^{-\beta E(s)},

so the chain is exact for the Boltzmann distribution whatever :math:`q_\theta` is (VAN's
neural MCMC; Nicoli et al., PRE 101, 023304 (2020)).  The state is
:class:`~flowsamp.kernels.flow_imh.FlowIMHState` with an integer ``position`` and the test is
:func:`~flowsamp.kernels.flow_imh.imh_test` (the one IMH test of flowsamp).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from flowsamp.autoregressive import AutoregressiveNet
from flowsamp.base import KernelAPI, SamplingAlgorithm
from flowsamp.kernels._spins import check_spin_target
from flowsamp.kernels.flow_imh import FlowIMHInfo, FlowIMHState, imh_test
from flowsamp.types import Array, PRNGKey

__all__ = ["FlowIMHState", "FlowIMHInfo", "init", "build_kernel", "autoregressive_imh"]


def init(position: Array, target: Any, net: AutoregressiveNet, params: Any) -> FlowIMHState:
    """State at integer spins ``position`` (L, L): ``(s, log p~(s), log q(s))``."""
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.integer):
        raise TypeError(f"spin positions must be integer arrays, got {position.dtype}")
    log_p = target.log_prob(position)
    log_q = net.log_prob(params, position).astype(log_p.dtype)
    return FlowIMHState(position, log_p, log_q)


def build_kernel() -> Callable[..., tuple[FlowIMHState, FlowIMHInfo]]:
    """Return ``kernel(key, state, target, net, params) -> (state, info)`` (params an argument,
    so a sampler may retrain the net between steps inside one jitted program)."""

    def kernel(key: PRNGKey, state: FlowIMHState, target: Any, net: AutoregressiveNet,
               params: Any) -> tuple[FlowIMHState, FlowIMHInfo]:
        k_prop, k_u = jax.random.split(key)
        s, log_q = net.sample_and_log_prob(params, k_prop, 1)
        s = s[0].astype(state.position.dtype)
        log_p = target.log_prob(s).astype(state.log_prob.dtype)
        proposed = FlowIMHState(s, log_p, log_q[0].astype(state.log_prob.dtype))
        log_u = jnp.log(jax.random.uniform(k_u, (), dtype=state.log_prob.dtype))
        return imh_test(log_u, state, proposed)

    return kernel


def autoregressive_imh(target: Any, net: AutoregressiveNet, params: Any) -> SamplingAlgorithm:
    """Independence sampler for ``target`` (Ising / Potts) proposing from ``net`` at ``params``.

    Returns
    -------
    SamplingAlgorithm
        ``init(s) -> FlowIMHState`` and ``step(key, state) -> (state, FlowIMHInfo)``; vmap over
        chains.
    """
    check_spin_target(target)
    if not isinstance(net, AutoregressiveNet):
        raise TypeError(f"net must be an fs.autoregressive.AutoregressiveNet, got {type(net).__name__}")
    if net.L != target.L or net.num_states != target.num_states:
        raise ValueError(f"net is for L={net.L}, q={net.num_states}; target has L={target.L}, q={target.num_states}")
    kernel = build_kernel()

    def init_fn(position: Array) -> FlowIMHState:
        return init(position, target, net, params)

    def step_fn(key: PRNGKey, state: FlowIMHState) -> tuple[FlowIMHState, FlowIMHInfo]:
        return kernel(key, state, target, net, params)

    return SamplingAlgorithm(init_fn, step_fn)


autoregressive_imh = KernelAPI(autoregressive_imh, globals(), __all__)
