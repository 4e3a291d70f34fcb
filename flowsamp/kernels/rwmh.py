r"""Random-walk Metropolis-Hastings with a Gaussian proposal.

The proposal is symmetric,

.. math::

    y = x + s \odot \xi, \qquad \xi \sim \mathcal N(0, I),

with ``scale`` :math:`s` a scalar or one value per dimension, so the Metropolis
log-ratio is :math:`\log\pi(y) - \log\pi(x)`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from flowsamp.base import KernelAPI, SamplingAlgorithm, metropolis_accept, select
from flowsamp.kernels import _flat
from flowsamp.types import Array, LogProbFn, PRNGKey

__all__ = ["RWMHState", "RWMHInfo", "init", "build_kernel", "rwmh"]


class RWMHState(NamedTuple):
    """Position and its cached log-density :math:`\\log\\pi(x)`."""

    position: Any
    log_prob: Array


class RWMHInfo(NamedTuple):
    """Diagnostics of one transition.

    ``acceptance_rate`` is :math:`\\min(1, \\pi(y)/\\pi(x))` (0 for a non-finite proposal),
    ``is_finite`` is False when the proposed log-density was NaN or infinite.
    """

    is_accepted: Array
    acceptance_rate: Array
    is_finite: Array


def init(position: Any, log_prob_fn: LogProbFn) -> RWMHState:
    """Return the state at ``position`` with ``log_prob_fn(position)`` cached.

    Integer positions are cast to the default float dtype.
    """
    position = _flat.as_float_position(position)
    return RWMHState(position, log_prob_fn(position))


def build_kernel() -> Callable[..., tuple[RWMHState, RWMHInfo]]:
    """Return ``kernel(key, state, log_prob_fn, scale) -> (state, info)``.

    ``scale`` is the proposal standard deviation: a scalar or an array of the flat
    dimension (per-dimension scales).
    """

    def kernel(
        key: PRNGKey, state: RWMHState, log_prob_fn: LogProbFn, scale: Any
    ) -> tuple[RWMHState, RWMHInfo]:
        key_prop, key_acc = jax.random.split(key)
        flat, unravel = _flat.flatten(state.position)
        scale = _flat.as_param(scale, flat.dtype)
        proposal = unravel(flat + scale * _flat.normal(key_prop, flat))
        log_prob = log_prob_fn(proposal)
        is_accepted, rate, is_finite = metropolis_accept(key_acc, log_prob - state.log_prob)
        new_state = select(is_accepted, RWMHState(proposal, log_prob), state)
        return new_state, RWMHInfo(is_accepted, rate, is_finite)

    return kernel


def rwmh(log_prob_fn: LogProbFn, scale: Any) -> SamplingAlgorithm:
    """Random-walk Metropolis-Hastings as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    log_prob_fn
        Unnormalized log-density :math:`\\log\\pi(x)` of one position.
    scale
        Proposal standard deviation, scalar or per dimension.

    Raises
    ------
    ValueError
        If ``scale`` is not positive and finite (checked when concrete, not when traced).

    Returns
    -------
    SamplingAlgorithm
        ``init(position) -> RWMHState``; ``step(key, state) -> (RWMHState, RWMHInfo)``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> kernel = rwmh(lambda x: -0.5 * jnp.sum(x**2), scale=0.5)
    >>> state = kernel.init(jnp.zeros(2))
    >>> state, info = kernel.step(jax.random.key(0), state)
    >>> state.position.shape, bool(info.is_finite)
    ((2,), True)
    """
    _flat.check_positive("scale", scale)
    kernel = build_kernel()

    def init_fn(position: Any) -> RWMHState:
        return init(position, log_prob_fn)

    def step_fn(key: PRNGKey, state: RWMHState) -> tuple[RWMHState, RWMHInfo]:
        return kernel(key, state, log_prob_fn, scale)

    return SamplingAlgorithm(init_fn, step_fn)


rwmh = KernelAPI(rwmh, globals(), __all__)
