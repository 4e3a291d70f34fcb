r"""Wolff single-cluster updates for the Ising and Potts models.

A seed site is chosen uniformly; the cluster grows over bonds to neighbours with the
seed's value, each bond added independently with

.. math::

    p_{\mathrm{add}} = 1 - e^{-\beta\,\Delta}, \qquad \Delta = e_{\ne} - e_{=} = aJ

(:math:`2J` for Ising, :math:`J` for Potts); the whole cluster then takes a new value
drawn uniformly from the other q - 1 values (Ising: it flips).  The growth runs as a
breadth-first ``lax.while_loop`` over the lattice; every bond is tested at most once, so
the cluster is the seed's component of independent bond percolation (Wolff, PRL 62,
361 (1989)).  Rejection-free: every step is accepted.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm
from flowsamp.kernels._spins import SpinInfo, SpinState, check_spin_target
from flowsamp.kernels._spins import init as _init
from flowsamp.types import Array, PRNGKey

__all__ = ["SpinState", "SpinInfo", "init", "build_kernel", "wolff"]

_SHIFTS = ((1, 0), (-1, 0), (1, 1), (-1, 1))  # (shift, axis) of the four neighbours


def init(position: Array, target: Any) -> SpinState:
    """Return the state at ``position`` with its energy cached."""
    return _init(position, target)


def build_kernel() -> Callable[..., tuple[SpinState, SpinInfo]]:
    """Return ``kernel(key, state, target, beta) -> (state, info)``: one cluster update."""

    def kernel(key, state, target, beta):
        s = state.position
        L = target.L
        k_seed, k_new, k_grow = jax.random.split(key, 3)
        seed = jax.random.randint(k_seed, (), 0, L * L)
        i, j = seed // L, seed % L
        same = s == s[i, j]
        p_add = -jnp.expm1(-beta * target.bond_gap)
        cluster = jnp.zeros((L, L), bool).at[i, j].set(True)

        def cond(carry):
            return jnp.any(carry[1])

        def body(carry):
            cluster, frontier, k = carry
            k, sub = jax.random.split(k)
            u = jax.random.uniform(sub, (4, L, L), dtype=jnp.result_type(float))
            grow = jnp.zeros((L, L), bool)
            for d, (shift, axis) in enumerate(_SHIFTS):
                grow = grow | (jnp.roll(frontier, shift, axis=axis) & (u[d] < p_add))
            new = grow & same & ~cluster
            return cluster | new, new, k

        cluster, _, _ = jax.lax.while_loop(cond, body, (cluster, cluster, k_grow))
        old = target.state_index(s[i, j])
        offset = jax.random.randint(k_new, (), 1, target.num_states)
        value = target.spin_value((old + offset) % target.num_states, s.dtype)
        s_new = jnp.where(cluster, value, s)
        size = jnp.sum(cluster)
        info = SpinInfo(jnp.bool_(True), jnp.ones((), jnp.result_type(float)), size)
        return SpinState(s_new, target.energy(s_new)), info

    return kernel


def wolff(target: Any, beta: float | None = None) -> SamplingAlgorithm:
    """Wolff cluster updates as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    target
        Ferromagnetic Ising or Potts target.
    beta : float, optional
        Inverse temperature, default ``target.beta``.

    Returns
    -------
    SamplingAlgorithm
        ``step(key, state)`` builds and recolours one cluster; ``info.num_changed`` is
        the cluster size.
    """
    check_spin_target(target)
    if target.bond_gap <= 0:
        raise ValueError("Wolff updates need a ferromagnetic coupling (J > 0)")
    kernel = build_kernel()
    b = target.beta if beta is None else float(beta)

    def step(key: PRNGKey, state: SpinState) -> tuple[SpinState, SpinInfo]:
        return kernel(key, state, target, jnp.asarray(b, state.energy.dtype))

    return SamplingAlgorithm(lambda position: init(position, target), step)


wolff = KernelAPI(wolff, globals(), __all__)
