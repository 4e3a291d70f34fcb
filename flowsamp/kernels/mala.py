r"""Metropolis-adjusted Langevin algorithm (MALA).

One Euler-Maruyama step of the Langevin diffusion with step size :math:`\epsilon`,

.. math::

    y = x + \epsilon \nabla\log\pi(x) + \sqrt{2\epsilon}\,\xi, \qquad \xi\sim\mathcal N(0, I),

corrected by Metropolis-Hastings with the proposal density
:math:`\log q(y \mid x) = -\lVert y - x - \epsilon\nabla\log\pi(x)\rVert^2 / (4\epsilon)`:

.. math::

    \log r = \log\pi(y) - \log\pi(x) + \log q(x \mid y) - \log q(y \mid x).

References: Roberts & Tweedie, Bernoulli 2(4) 341 (1996).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.base import SamplingAlgorithm, metropolis_accept, select
from flowsamp.kernels import _flat
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["MALAState", "MALAInfo", "init", "build_kernel", "mala"]


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
    """Return the state at ``position`` with log-density and gradient cached."""
    log_prob, grad = _flat.value_and_grad_flat(log_prob_fn, position)
    return MALAState(position, log_prob, grad)


def _log_q(to: Array, frm: Array, grad_frm: Array, step_size: Array) -> Array:
    """:math:`\\log q(to \\mid frm)` up to the constant shared by both directions."""
    diff = to - frm - step_size * grad_frm
    return -jnp.sum(diff * diff) / (4.0 * step_size)


def build_kernel() -> Callable[..., tuple[MALAState, MALAInfo]]:
    """Return ``kernel(key, state, log_prob_fn, step_size) -> (state, info)``."""

    def kernel(
        key: PRNGKey, state: MALAState, log_prob_fn: LogProbFn, step_size: Any
    ) -> tuple[MALAState, MALAInfo]:
        key_prop, key_acc = jax.random.split(key)
        flat, unravel = _flat.flatten(state.position)
        step_size = _flat.as_param(step_size, flat.dtype)
        noise = _flat.normal(key_prop, flat)
        new_flat = flat + step_size * state.grad + jnp.sqrt(2.0 * step_size) * noise
        flat_log_prob = _flat.flat_log_prob(log_prob_fn, unravel)
        log_prob, grad = jax.value_and_grad(flat_log_prob)(new_flat)
        log_ratio = (
            log_prob
            - state.log_prob
            + _log_q(flat, new_flat, grad, step_size)
            - _log_q(new_flat, flat, state.grad, step_size)
        )
        is_accepted, rate, is_finite = metropolis_accept(key_acc, log_ratio)
        proposal = MALAState(unravel(new_flat), log_prob, grad)
        new_state = select(is_accepted, proposal, state)
        return new_state, MALAInfo(is_accepted, rate, is_finite)

    return kernel


def mala(log_prob_fn: LogProbFn, step_size: Any) -> SamplingAlgorithm:
    """MALA as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log\\pi(x)` of one position (differentiable).
    step_size
        :math:`\\epsilon` in the proposal above (the Langevin time step).

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> MALAState``; ``step(key, state) -> (MALAState, MALAInfo)``.
    """
    kernel = build_kernel()

    def init_fn(position: Any) -> MALAState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: MALAState) -> tuple[MALAState, MALAInfo]:
        return kernel(key, state, log_prob_fn, step_size)

    return SamplingAlgorithm(init_fn, step_fn)
