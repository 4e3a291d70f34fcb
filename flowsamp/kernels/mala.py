r"""Metropolis-adjusted Langevin algorithm (MALA), optionally preconditioned.

One Euler-Maruyama step of the Langevin diffusion with step size :math:`\epsilon` and
inverse mass (preconditioner) :math:`M^{-1} = L L^\top` (default the identity),

.. math::

    y = x + \epsilon M^{-1}\nabla\log\pi(x) + \sqrt{2\epsilon}\,L\xi, \qquad \xi\sim\mathcal N(0, I),

corrected by Metropolis-Hastings with the proposal density
:math:`\log q(y \mid x) = -(y - x - \epsilon M^{-1}\nabla\log\pi(x))^\top M
(y - x - \epsilon M^{-1}\nabla\log\pi(x)) / (4\epsilon)`:

.. math::

    \log r = \log\pi(y) - \log\pi(x) + \log q(x \mid y) - \log q(y \mid x).

:func:`transition` is the deterministic map given the pre-drawn :math:`\xi` and
:math:`\log u`, :math:`u \sim U(0, 1)` (so a sampler can draw them in bulk);
:func:`build_kernel`'s kernel draws them from its key and calls it.

References: Roberts & Tweedie, Bernoulli 2(4) 341 (1996); Girolami & Calderhead,
JRSS B 73, 123 (2011) (the constant-metric preconditioned form).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm, metropolis_test, select
from flowsamp.kernels import _flat, _mass
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["MALAState", "MALAInfo", "init", "propose", "transition", "build_kernel", "mala"]


class MALAState(NamedTuple):
    """Position, :math:`\\log\\pi(x)` and :math:`\\nabla\\log\\pi(x)` (flat vector)."""

    position: Any
    log_prob: Array
    grad: Array


class MALAInfo(NamedTuple):
    """Diagnostics: ``acceptance_rate`` is :math:`\\min(1, e^{\\log r})` (0 when not finite)."""

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array


def init(position: Any, log_prob_fn: LogProbFn) -> MALAState:
    """Return the state at ``position`` with log-density and gradient cached.

    Integer positions are cast to the default float dtype.
    """
    position = _flat.as_float_position(position)
    log_prob, grad = _flat.value_and_grad_flat(log_prob_fn, position)
    return MALAState(position, log_prob, grad)


def _log_q(to: Array, frm: Array, grad_frm: Array, step_size: Array, inv_mass: Array, chol: Array) -> Array:
    """:math:`\\log q(to \\mid frm)` up to the constant shared by both directions."""
    diff = to - frm - step_size * _mass.matvec(inv_mass, grad_frm)
    return -_mass.quadratic(diff, chol) / (4.0 * step_size)


def propose(
    flat: Array,
    log_prob: Array,
    grad: Array,
    flat_log_prob: Callable[[Array], Array],
    step_size: Array,
    noise: Array,
    inv_mass: Array,
    chol: Array,
) -> tuple[Array, Array, Array, Array]:
    r"""The Langevin proposal :math:`y` from the flat ``flat`` (with its cached ``log_prob`` and
    ``grad``) given :math:`\xi` = ``noise``, and ``(y, log_prob(y), grad(y), log r)`` with the
    Metropolis-Hastings log-ratio :math:`\log r` of the module docstring (``inv_mass`` as an
    array, ``chol`` its :func:`flowsamp.kernels._mass.cholesky`)."""
    drift = step_size * _mass.matvec(inv_mass, grad)
    new_flat = flat + drift + jnp.sqrt(2.0 * step_size) * _mass.noise_scale(noise, chol)
    new_log_prob, new_grad = jax.value_and_grad(flat_log_prob)(new_flat)
    log_ratio = (
        new_log_prob
        - log_prob
        + _log_q(flat, new_flat, new_grad, step_size, inv_mass, chol)
        - _log_q(new_flat, flat, grad, step_size, inv_mass, chol)
    )
    return new_flat, new_log_prob, new_grad, log_ratio


def transition(
    state: MALAState,
    log_prob_fn: LogProbFn,
    step_size: Any,
    noise: Array,
    log_u: Array,
    inverse_mass: Any = None,
) -> tuple[MALAState, MALAInfo]:
    """One MALA transition given its random numbers.

    Parameters
    ----------
    state
        Current state (position, :math:`\\log\\pi(x)`, flat gradient).
    log_prob_fn
        Unnormalized log-density of one position.
    step_size
        :math:`\\epsilon > 0`.
    noise
        :math:`\\xi \\sim \\mathcal N(0, I)`, shaped like the flat position.
    log_u
        :math:`\\log u`, :math:`u \\sim U(0, 1)` (scalar) for the Metropolis test.
    inverse_mass
        :math:`M^{-1}`: ``None`` (identity), a scalar, a flat diagonal vector or a dense
        ``(dim, dim)`` matrix.

    Returns
    -------
    (MALAState, MALAInfo)
        The proposal :math:`y` if :math:`\\log u < \\log r` (NaN-safe: a non-finite
        :math:`\\log r` is a rejection), else ``state``.
    """
    flat, unravel = _flat.flatten(state.position)
    step_size = _flat.as_param(step_size, flat.dtype)
    inv_mass = _mass.as_inverse_mass(inverse_mass, flat.dtype)
    chol = _mass.cholesky(inv_mass)
    flat_log_prob = _flat.flat_log_prob(log_prob_fn, unravel)
    new_flat, log_prob, grad, log_ratio = propose(flat, state.log_prob, state.grad, flat_log_prob, step_size,
                                                  noise, inv_mass, chol)
    is_accepted, rate, is_finite = metropolis_test(log_u, log_ratio)
    proposal = MALAState(unravel(new_flat), log_prob, grad)
    new_state = select(is_accepted, proposal, state)
    return new_state, MALAInfo(is_accepted, rate, is_finite)


def build_kernel() -> Callable[..., tuple[MALAState, MALAInfo]]:
    """Return ``kernel(key, state, log_prob_fn, step_size, inverse_mass=None) -> (state, info)``.

    The kernel draws :math:`\\xi` and :math:`\\log u` from ``key`` and calls :func:`transition`.
    """

    def kernel(
        key: PRNGKey, state: MALAState, log_prob_fn: LogProbFn, step_size: Any, inverse_mass: Any = None
    ) -> tuple[MALAState, MALAInfo]:
        key_prop, key_acc = jax.random.split(key)
        flat, _ = _flat.flatten(state.position)
        noise = _flat.normal(key_prop, flat)
        log_u = _flat.log_uniform(key_acc, state.log_prob)
        return transition(state, log_prob_fn, step_size, noise, log_u, inverse_mass)

    return kernel


def mala(log_prob_fn: LogProbFn, step_size: Any, inverse_mass: Any = None) -> SamplingAlgorithm:
    """MALA as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log\\pi(x)` of one position (differentiable).
    step_size
        :math:`\\epsilon` in the proposal above (the Langevin time step).
    inverse_mass
        Preconditioner :math:`M^{-1}`: ``None`` (identity), a scalar, the flat diagonal or a
        dense ``(dim, dim)`` matrix (e.g. the ``params`` of
        :func:`flowsamp.kernels.window_adaptation`).

    Raises
    ------
    ValueError
        If ``step_size`` is not positive and finite or ``inverse_mass`` is not positive
        (definite). Only concrete values are checked; values traced inside ``jit`` are not.

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> MALAState``; ``step(key, state) -> (MALAState, MALAInfo)``.
    """
    _flat.check_positive("step_size", step_size)
    _flat.check_inverse_mass(inverse_mass)
    kernel = build_kernel()

    def init_fn(position: Any) -> MALAState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: MALAState) -> tuple[MALAState, MALAInfo]:
        return kernel(key, state, log_prob_fn, step_size, inverse_mass)

    return SamplingAlgorithm(init_fn, step_fn)


mala = KernelAPI(mala, globals(), __all__)
