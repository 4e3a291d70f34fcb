r"""Hamiltonian Monte Carlo with a leapfrog integrator and a diagonal or dense mass matrix.

Each transition draws :math:`p \sim \mathcal N(0, M)` (``inverse_mass`` :math:`M^{-1}`: the
identity by default, a diagonal vector or a dense matrix, :mod:`flowsamp.kernels._mass`), integrates ``num_integration_steps``
leapfrog steps of size :math:`\epsilon` (:mod:`flowsamp.kernels.integrators`) and accepts
the end point with

.. math::

    \log r = -H(x', p') + H(x, p), \qquad H(x, p) = -\log\pi(x) + \tfrac12 p^\top M^{-1} p.

A transition is *divergent* when :math:`\Delta H = H(x', p') - H(x, p) > 1000` or is not
finite (Stan's definition): the integrator left the region where it is stable, a sign that
the step size is too large for some part of the target.

:func:`transition` is the deterministic map given the pre-drawn momentum and :math:`\log u`;
:func:`build_kernel`'s kernel draws them from its key and calls it.

References: Duane, Kennedy, Pendleton & Roweth, Phys. Lett. B 195, 216 (1987);
Neal, arXiv:1206.1901.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from flowsamp.base import KernelAPI, SamplingAlgorithm, metropolis_test, select
from flowsamp.kernels import _flat, _mass
from flowsamp.kernels.integrators import IntegratorState, kinetic_energy, leapfrog
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["HMCState", "HMCInfo", "DIVERGENCE_THRESHOLD", "init", "sample_momentum", "transition", "build_kernel", "hmc"]

#: :math:`\Delta H` above which a transition counts as divergent (Stan's ``max_deltaH``).
DIVERGENCE_THRESHOLD = 1000.0


class HMCState(NamedTuple):
    """Position, :math:`\\log\\pi(x)` and :math:`\\nabla\\log\\pi(x)` (flat vector)."""

    position: Any
    log_prob: Array
    grad: Array


class HMCInfo(NamedTuple):
    """Diagnostics: ``acceptance_rate`` is :math:`\\min(1, e^{-\\Delta H})` (0 when not finite);
    ``energy_change`` is :math:`\\Delta H = H(x', p') - H(x, p)`; ``is_divergent`` is
    :math:`\\Delta H > 1000` or non-finite."""

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array
    energy_change: Array
    is_divergent: Array


def init(position: Any, log_prob_fn: LogProbFn) -> HMCState:
    """Return the state at ``position`` with log-density and gradient cached.

    Integer positions are cast to the default float dtype.
    """
    position = _flat.as_float_position(position)
    log_prob, grad = _flat.value_and_grad_flat(log_prob_fn, position)
    return HMCState(position, log_prob, grad)


def sample_momentum(noise: Array, inverse_mass: Any = None) -> Array:
    """Momentum :math:`p \\sim \\mathcal N(0, M)` from standard normal ``noise`` (flat vector).

    With the identity mass (``inverse_mass=None``) the momentum is ``noise`` itself.
    """
    return _mass.momentum(noise, _mass.as_inverse_mass(inverse_mass, noise.dtype))


def transition(
    state: HMCState,
    log_prob_fn: LogProbFn,
    step_size: Any,
    num_integration_steps: int | Array,
    momentum: Array,
    log_u: Array,
    inverse_mass: Any = None,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition given its random numbers.

    Parameters
    ----------
    state
        Current state (position, :math:`\\log\\pi(x)`, flat gradient).
    log_prob_fn
        Unnormalized log-density of one position.
    step_size, num_integration_steps
        Leapfrog step size :math:`\\epsilon` and number of steps :math:`L`.
    momentum
        Initial momentum :math:`p \\sim \\mathcal N(0, M)` (flat); :func:`sample_momentum`
        makes it from a standard normal draw (for the identity mass it *is* that draw).
    log_u
        :math:`\\log u`, :math:`u \\sim U(0, 1)` (scalar).
    inverse_mass
        :math:`M^{-1}`: ``None`` (identity), scalar, flat diagonal or dense ``(dim, dim)``.

    Returns
    -------
    (HMCState, HMCInfo)
        The leapfrog end point if :math:`\\log u < -\\Delta H` (NaN-safe), else ``state``.
    """
    flat, unravel = _flat.flatten(state.position)
    step_size = _flat.as_param(step_size, flat.dtype)
    inv_mass = _mass.as_inverse_mass(inverse_mass, flat.dtype)
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
    is_accepted, rate, is_finite = metropolis_test(log_u, -energy_change)
    is_divergent = ~is_finite | (energy_change > DIVERGENCE_THRESHOLD)
    proposal = HMCState(unravel(end.position), end.log_prob, end.grad)
    new_state = select(is_accepted, proposal, state)
    return new_state, HMCInfo(is_accepted, rate, is_finite, energy_change, is_divergent)


def build_kernel() -> Callable[..., tuple[HMCState, HMCInfo]]:
    """Return ``kernel(key, state, log_prob_fn, step_size, num_integration_steps,
    inverse_mass=None) -> (state, info)``.

    The kernel draws the momentum and :math:`\\log u` from ``key`` and calls :func:`transition`.
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
        flat, _ = _flat.flatten(state.position)
        momentum = sample_momentum(_flat.normal(key_mom, flat), inverse_mass)
        log_u = _flat.log_uniform(key_acc, state.log_prob)
        return transition(state, log_prob_fn, step_size, num_integration_steps, momentum, log_u, inverse_mass)

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
        :math:`M^{-1}`: ``None`` (identity), a scalar, the flat diagonal or a dense
        ``(dim, dim)`` matrix (e.g. the ``params`` of :func:`flowsamp.kernels.window_adaptation`).

    Raises
    ------
    ValueError
        If ``step_size`` is not positive and finite, ``num_integration_steps`` is not an
        integer >= 1 or ``inverse_mass`` is not positive (definite). Only concrete values are
        checked; values traced inside ``jit`` are not.

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> HMCState``; ``step(key, state) -> (HMCState, HMCInfo)``.
    """
    _flat.check_positive("step_size", step_size)
    _flat.check_num_steps("num_integration_steps", num_integration_steps)
    _flat.check_inverse_mass(inverse_mass)
    kernel = build_kernel()

    def init_fn(position: Any) -> HMCState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: HMCState) -> tuple[HMCState, HMCInfo]:
        return kernel(key, state, log_prob_fn, step_size, num_integration_steps, inverse_mass)

    return SamplingAlgorithm(init_fn, step_fn)


hmc = KernelAPI(hmc, globals(), __all__)
