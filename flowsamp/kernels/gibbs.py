r"""Heat-bath (Gibbs) sweeps for lattice spin targets, and the simultaneous-update trap.

Each site is redrawn from its conditional given its neighbours,

.. math::

    p(s_i = v \mid s_{\partial i}) \propto e^{-\beta\, e_i(v)} .

``order="checkerboard"`` (default) redraws one sublattice, then the other, each in one
vectorised step: a valid sequential Gibbs sweep on the bipartite lattice (even L).
``order="sequential"`` visits the sites one at a time in raster order (any L).
``order="simultaneous"`` redraws *every* site from the previous configuration at once.
That is not a Gibbs sampler: on the bipartite lattice the two sublattices evolve as two
independent chains and the stationary law is :math:`p(s_A)\,p(s_B)`, not
:math:`p(s_A, s_B)`, so nearest-neighbour correlations (the energy) come out wrong.  It is
exposed only as the cautionary example and warns.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm
from flowsamp.kernels._spins import (
    SpinInfo,
    SpinState,
    categorical_last,
    check_spin_target,
    checkerboard,
)
from flowsamp.kernels._spins import init as _init
from flowsamp.types import Array, PRNGKey

__all__ = ["SpinState", "SpinInfo", "init", "build_kernel", "gibbs", "SimultaneousGibbsWarning"]

ORDERS = ("checkerboard", "sequential", "simultaneous")


class SimultaneousGibbsWarning(UserWarning):
    """Warns that a simultaneous ("parallel") Gibbs update samples the wrong distribution."""


def init(position: Array, target: Any) -> SpinState:
    """Return the state at ``position`` with its energy cached."""
    return _init(position, target)


def build_kernel(order: str = "checkerboard") -> Callable[..., tuple[SpinState, SpinInfo]]:
    """Return ``kernel(key, state, target, beta) -> (state, info)`` doing one sweep."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {ORDERS}")

    def draw_all(key, s, target, beta):
        idx = categorical_last(key, -beta * target.local_energies(s))
        return target.spin_value(idx, s.dtype)

    def checkerboard_sweep(key, state, target, beta):
        s = state.position
        mask = checkerboard(target.L)
        for colour, k in zip((mask, ~mask), jax.random.split(key, 2)):
            s = jnp.where(colour, draw_all(k, s, target, beta), s)
        return s

    def simultaneous_sweep(key, state, target, beta):
        return draw_all(key, state.position, target, beta)

    def sequential_sweep(key, state, target, beta):
        L = target.L
        keys = jax.random.split(key, target.num_sites)

        def body(s, xs):
            site, k = xs
            i, j = site // L, site % L
            nb = jnp.stack([s[(i - 1) % L, j], s[(i + 1) % L, j], s[i, (j - 1) % L], s[i, (j + 1) % L]])
            idx = categorical_last(k, -beta * target.site_energies(nb))
            return s.at[i, j].set(target.spin_value(idx, s.dtype)), None

        s, _ = jax.lax.scan(body, state.position, (jnp.arange(target.num_sites), keys))
        return s

    sweep = {
        "checkerboard": checkerboard_sweep,
        "sequential": sequential_sweep,
        "simultaneous": simultaneous_sweep,
    }[order]

    def kernel(key, state, target, beta):
        s = sweep(key, state, target, beta)
        changed = jnp.sum(s != state.position)
        info = SpinInfo(changed > 0, changed / target.num_sites, changed)
        return SpinState(s, target.energy(s)), info

    return kernel


def gibbs(target: Any, order: str = "checkerboard", beta: float | None = None) -> SamplingAlgorithm:
    """Heat-bath sweeps over a lattice spin target as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    target
        Lattice spin target (``fs.targets.ising`` / ``potts``).
    order : {"checkerboard", "sequential", "simultaneous"}
        Site order of a sweep (see the module docstring).  ``"simultaneous"`` is *wrong*
        (it does not leave the target invariant) and emits ``SimultaneousGibbsWarning``.
    beta : float, optional
        Inverse temperature, default ``target.beta``.

    Returns
    -------
    SamplingAlgorithm
        ``step(key, state)`` redraws every site once; ``info.acceptance_rate`` is the
        fraction of sites whose value changed.
    """
    check_spin_target(target)
    kernel = build_kernel(order)
    if order == "checkerboard" and target.L % 2:
        raise ValueError(f"checkerboard order needs even L (bipartite lattice), got L={target.L}")
    if order == "simultaneous":
        warnings.warn(
            "gibbs(order='simultaneous') conditions every site on the previous state: it does "
            "NOT sample the target (the sublattices decouple); use 'checkerboard' or 'sequential'",
            SimultaneousGibbsWarning,
            stacklevel=2,
        )
    b = target.beta if beta is None else float(beta)

    def step(key: PRNGKey, state: SpinState) -> tuple[SpinState, SpinInfo]:
        return kernel(key, state, target, jnp.asarray(b, state.energy.dtype))

    return SamplingAlgorithm(lambda position: init(position, target), step)


gibbs = KernelAPI(gibbs, globals(), __all__)
