r"""Single-spin Metropolis sweeps for lattice spin targets (Ising, Potts).

One ``step`` is a sweep of N = L**2 single-site proposals.  Each proposal replaces the
value at a site by one of the other q - 1 values, uniformly (symmetric), accepted with

.. math::

    \alpha = \min\left(1, e^{-\beta\,[e_i(v') - e_i(v)]}\right),

where :math:`e_i(v)` is the energy of site i's four bonds with value v.  ``scan="random"``
visits N uniformly random sites one after another; ``scan="checkerboard"`` updates all
sites of one sublattice at once, then the other (exact on the bipartite lattice, even L,
because sites of one colour do not interact).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from flowsamp.base import KernelAPI, SamplingAlgorithm, metropolis_accept
from flowsamp.kernels._spins import SpinInfo, SpinState, check_spin_target, checkerboard
from flowsamp.kernels._spins import init as _init
from flowsamp.types import Array, PRNGKey

__all__ = ["SpinState", "SpinInfo", "init", "build_kernel", "spin_metropolis"]

SCANS = ("random", "checkerboard")


def init(position: Array, target: Any) -> SpinState:
    """Return the state at ``position`` with its energy cached."""
    return _init(position, target)


def _site_trial(target, s, i, j, offset, key, beta):
    """Metropolis trial at site (i, j) with new state index ``old + offset`` (mod q)."""
    L = target.L
    nb = jnp.stack([s[(i - 1) % L, j], s[(i + 1) % L, j], s[i, (j - 1) % L], s[i, (j + 1) % L]])
    e = target.site_energies(nb)
    old = target.state_index(s[i, j])
    new = (old + offset) % target.num_states
    de = e[new] - e[old]
    acc, _, _ = metropolis_accept(key, -beta * de)
    value = jnp.where(acc, target.spin_value(new, s.dtype), s[i, j])
    return s.at[i, j].set(value), jnp.where(acc, de, 0.0), acc


def build_kernel(scan: str = "random") -> Callable[..., tuple[SpinState, SpinInfo]]:
    """Return ``kernel(key, state, target, beta) -> (state, info)`` doing one sweep."""
    if scan not in SCANS:
        raise ValueError(f"unknown scan {scan!r}; choose one of {SCANS}")

    def random_sweep(key, state, target, beta):
        n = target.num_sites
        k_site, k_off, k_acc = jax.random.split(key, 3)
        sites = jax.random.randint(k_site, (n,), 0, n)
        offsets = jax.random.randint(k_off, (n,), 1, target.num_states)
        keys = jax.random.split(k_acc, n)

        def body(carry, xs):
            s, energy, count = carry
            site, off, k = xs
            s, de, acc = _site_trial(target, s, site // target.L, site % target.L, off, k, beta)
            return (s, energy + de.astype(energy.dtype), count + acc), None

        init_carry = (state.position, state.energy, jnp.int32(0))
        (s, energy, count), _ = jax.lax.scan(body, init_carry, (sites, offsets, keys))
        changed = jnp.sum(s != state.position)
        info = SpinInfo(changed > 0, count / n, changed)
        return SpinState(s, target.energy(s)), info

    def checkerboard_sweep(key, state, target, beta):
        if target.L % 2:
            raise ValueError(f"checkerboard scan needs even L (bipartite lattice), got L={target.L}")
        s = state.position
        mask = checkerboard(target.L)
        count = jnp.int32(0)
        for colour, k in zip((mask, ~mask), jax.random.split(key, 2)):
            k_off, k_acc = jax.random.split(k)
            e = target.local_energies(s)
            old = target.state_index(s)
            off = jax.random.randint(k_off, s.shape, 1, target.num_states)
            new = (old + off) % target.num_states
            de = jnp.take_along_axis(e, new[..., None], -1) - jnp.take_along_axis(e, old[..., None], -1)
            log_u = jnp.log(jax.random.uniform(k_acc, s.shape, dtype=e.dtype))
            acc = colour & (log_u < -beta * de[..., 0])
            s = jnp.where(acc, target.spin_value(new, s.dtype), s)
            count = count + jnp.sum(acc)
        changed = jnp.sum(s != state.position)
        info = SpinInfo(changed > 0, count / target.num_sites, changed)
        return SpinState(s, target.energy(s)), info

    return random_sweep if scan == "random" else checkerboard_sweep


def spin_metropolis(target: Any, scan: str = "random", beta: float | None = None) -> SamplingAlgorithm:
    """Single-spin Metropolis sweeps as ``SamplingAlgorithm(init, step)``.

    Parameters
    ----------
    target
        Lattice spin target (``fs.targets.ising`` / ``potts``).
    scan : {"random", "checkerboard"}
        Site order: N random sites in sequence, or the two sublattices in turn
        (vectorised; even L only).
    beta : float, optional
        Inverse temperature; defaults to ``target.beta`` (a state-free argument so that
        tempering schemes can change it).

    Returns
    -------
    SamplingAlgorithm
        ``step(key, state)`` performs one sweep of N proposals and leaves
        :math:`p(s) \\propto e^{-\\beta E(s)}` invariant.
    """
    check_spin_target(target)
    kernel = build_kernel(scan)
    if scan == "checkerboard" and target.L % 2:
        raise ValueError(f"checkerboard scan needs even L (bipartite lattice), got L={target.L}")
    b = target.beta if beta is None else float(beta)

    def step(key: PRNGKey, state: SpinState) -> tuple[SpinState, SpinInfo]:
        return kernel(key, state, target, jnp.asarray(b, state.energy.dtype))

    return SamplingAlgorithm(lambda position: init(position, target), step)


spin_metropolis = KernelAPI(spin_metropolis, globals(), __all__)
