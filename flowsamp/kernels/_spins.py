"""Shared state, info and helpers of the lattice spin kernels."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from flowsamp.types import Array

__all__ = ["SpinState", "SpinInfo", "init", "checkerboard", "check_spin_target", "categorical_last"]


class SpinState(NamedTuple):
    """Spin configuration ``position`` (integer ``(L, L)``) and its cached ``energy`` E(s)."""

    position: Array
    energy: Array


class SpinInfo(NamedTuple):
    """Diagnostics of one transition (a sweep or a cluster update).

    ``acceptance_rate``: fraction of accepted site proposals (Metropolis), of changed
    sites (heat bath) or 1 (Wolff); ``is_accepted``: whether the configuration changed;
    ``num_changed``: number of sites whose value changed (the cluster size for Wolff).
    """

    is_accepted: Array
    acceptance_rate: Array
    num_changed: Array


def check_spin_target(target: Any) -> None:
    """Raise ``TypeError`` unless ``target`` is a lattice spin target (Ising, Potts)."""
    for attr in ("site_energies", "local_energies", "spin_values", "L", "beta", "energy"):
        if not hasattr(target, attr):
            raise TypeError(
                f"spin kernels need a lattice spin target (fs.targets.ising / potts); "
                f"{type(target).__name__} has no {attr!r}"
            )


def init(position: Array, target: Any) -> SpinState:
    """Return the state at ``position`` (integer spins ``(L, L)``) with E(s) cached."""
    position = jnp.asarray(position)
    if not jnp.issubdtype(position.dtype, jnp.integer):
        raise TypeError(f"spin positions must be integer arrays, got {position.dtype}")
    return SpinState(position, target.energy(position))


def checkerboard(L: int) -> Array:
    """Boolean ``(L, L)`` mask of the sites with ``(i + j)`` even."""
    i = jnp.arange(L)
    return (i[:, None] + i[None, :]) % 2 == 0


def categorical_last(key: Array, log_p: Array) -> Array:
    """Draw an index along the last axis of unnormalized ``log_p`` (Gumbel-max)."""
    return jnp.argmax(log_p + jax.random.gumbel(key, log_p.shape, log_p.dtype), axis=-1)
