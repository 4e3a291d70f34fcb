r"""Hamiltonian Monte Carlo with a leapfrog integrator and a diagonal mass matrix.

Each transition draws :math:`p \sim \mathcal N(0, M)` with :math:`M = \mathrm{diag}(1/m^{-1})`
(``inverse_mass`` :math:`m^{-1}`, default 1), integrates ``num_integration_steps``
leapfrog steps of size :math:`\epsilon` (:mod:`flowsamp.kernels.integrators`) and accepts
the end point with

.. math::

    \log r = -H(x', p') + H(x, p), \qquad H(x, p) = -\log\pi(x) + \tfrac12 p^\top M^{-1} p.

References: Duane, Kennedy, Pendleton & Roweth, Phys. Lett. B 195, 216 (1987);
Neal, arXiv:1206.1901.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import SamplingAlgorithm, metropolis_accept, select
from flowsamp.kernels import _flat
from flowsamp.kernels.integrators import IntegratorState, kinetic_energy, leapfrog
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["HMCState", "HMCInfo", "init", "build_kernel", "hmc"]


class HMCState(NamedTuple):
    """Position, :math:`\\log\\pi(x)` and :math:`\\nabla\\log\\pi(x)` (flat vector)."""

    position: Any
    log_prob: Array
    grad: Array


class HMCInfo(NamedTuple):
    """Diagnostics: ``acceptance_rate`` is :math:`\\min(1, e^{-\\Delta H})` (0 when not finite);
    ``energy_change`` is :math:`\\Delta H = H(x', p') - H(x, p)`."""

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    energy_change: Array


def init(position: Any, log_prob_fn: LogProbFn) -> HMCState:
    """Return the state at ``position`` with log-density and gradient cached."""
    log_prob, grad = _flat.value_and_grad_flat(log_prob_fn, position)
    return HMCState(position, log_prob, grad)


def build_kernel() -> Callable[..., tuple[HMCState, HMCInfo]]:
    """Return ``kernel(key, state, log_prob_fn, step_size, num_integration_steps,
    inverse_mass=None) -> (state, info)``.

    ``inverse_mass`` is a scalar or a flat vector (diagonal :math:`M^{-1}`); ``None`` is 1.
    """

    def kernel(
        key: PRNGKey,
        state: HMCState,
        log_prob_fn: LogProbFn,
        step_size: Any,
        num_integration_steps: int | Array,
        inverse_mass: Any = None,
    ) -> tuple[HMCState, HMCInfo]:
        key_mom, key_acc = jax.random.split(key)
        flat, unravel = _flat.flatten(state.position)
        step_size = _flat.as_param(step_size, flat.dtype)
        inv_mass = _flat.as_param(1.0 if inverse_mass is None else inverse_mass, flat.dtype)
        momentum = _flat.normal(key_mom, flat) / jnp.sqrt(inv_mass)
        start = IntegratorState(flat, momentum, state.log_prob, state.grad)
        end = leapfrog(
            _flat.flat_log_prob(log_prob_fn, unravel),
            start,
            step_size,
            num_integration_steps,
            inv_mass,
        )
        energy_change = (
            -end.log_prob
            + kinetic_energy(end.momentum, inv_mass)
            + state.log_prob
            - kinetic_energy(momentum, inv_mass)
        )
        is_accepted, rate, is_finite = metropolis_accept(key_acc, -energy_change)
        proposal = HMCState(unravel(end.position), end.log_prob, end.grad)
        new_state = select(is_accepted, proposal, state)
        return new_state, HMCInfo(is_accepted, rate, is_finite, energy_change)

    return kernel


def hmc(
    log_prob_fn: LogProbFn,
    step_size: Any,
    num_integration_steps: int,
    inverse_mass: Any = None,
) -> SamplingAlgorithm:
    """HMC as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log\\pi(x)` of one position (differentiable).
    step_size
        Leapfrog step size :math:`\\epsilon`.
    num_integration_steps
        Leapfrog steps per transition (trajectory length :math:`L\\epsilon`).
    inverse_mass
        Diagonal of :math:`M^{-1}` (scalar or flat vector); ``None`` means the identity.

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> HMCState``; ``step(key, state) -> (HMCState, HMCInfo)``.
    """
    if isinstance(num_integration_steps, int) and num_integration_steps < 1:
        raise ValueError(f"num_integration_steps must be >= 1, got {num_integration_steps}")
    kernel = build_kernel()

    def init_fn(position: Any) -> HMCState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: HMCState) -> tuple[HMCState, HMCInfo]:
        return kernel(key, state, log_prob_fn, step_size, num_integration_steps, inverse_mass)

    return SamplingAlgorithm(init_fn, step_fn)
