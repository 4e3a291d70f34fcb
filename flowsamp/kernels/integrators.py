r"""Leapfrog (velocity Verlet) integration of Hamiltonian dynamics.

For :math:`H(x, p) = -\log\pi(x) + \tfrac12 p^\top M^{-1} p` with an inverse mass
:math:`M^{-1}` (``inverse_mass``: a scalar, a diagonal vector or a dense matrix), one leapfrog step of size :math:`\epsilon` is

.. math::

    p_{1/2} = p + \tfrac{\epsilon}{2}\nabla\log\pi(x), \quad
    x' = x + \epsilon M^{-1} p_{1/2}, \quad
    p' = p_{1/2} + \tfrac{\epsilon}{2}\nabla\log\pi(x').

It is volume preserving and time reversible; the energy error over a fixed time is
:math:`O(\epsilon^2)`. The gradient at the end point is cached, so ``n`` steps cost ``n``
gradient evaluations.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.kernels._mass import matvec
from flowsamp.types import Array

__all__ = ["IntegratorState", "leapfrog", "kinetic_energy"]


class IntegratorState(NamedTuple):
    """Flat position, momentum, :math:`\\log\\pi(x)` and :math:`\\nabla\\log\\pi(x)`."""

    position: Array
    momentum: Array
    log_prob: Array
    grad: Array


def kinetic_energy(momentum: Array, inverse_mass: Array) -> Array:
    """:math:`K(p) = \\tfrac12 p^\\top M^{-1} p` (diagonal or dense :math:`M^{-1}`)."""
    return 0.5 * jnp.sum(momentum * matvec(inverse_mass, momentum))


def leapfrog(
    flat_log_prob: Callable[[Array], Array],
    state: IntegratorState,
    step_size: Array,
    num_steps: int | Array,
    inverse_mass: Array,
) -> IntegratorState:
    """Return the state after ``num_steps`` leapfrog steps of size ``step_size``.

    ``flat_log_prob`` takes the flat position vector. ``num_steps`` may be a Python int
    or a traced integer.
    """
    value_and_grad = jax.value_and_grad(flat_log_prob)
    half = 0.5 * step_size

    def one_step(_, s: IntegratorState) -> IntegratorState:
        momentum = s.momentum + half * s.grad
        position = s.position + step_size * matvec(inverse_mass, momentum)
        log_prob, grad = value_and_grad(position)
        return IntegratorState(position, momentum + half * grad, log_prob, grad)

    return jax.lax.fori_loop(0, num_steps, one_step, state)
