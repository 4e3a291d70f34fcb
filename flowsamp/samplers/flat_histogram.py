r"""Energy-level bookkeeping and the Wang-Landau update, shared by flat-histogram samplers.

The pieces here know nothing about how a move is proposed, so a learned (autoregressive,
flow) proposal can plug into the same bookkeeping:

* :func:`energy_bins` / :func:`level_index`: the map from an energy E to the index of its
  level in ``target.energy_levels`` (-1 for an energy that is not a level);
* :class:`Compensated`: a float accumulator kept as an unevaluated sum ``hi + lo``
  (double-float).  Increments go into ``lo`` and :func:`compensated_fold` moves them into
  ``hi`` with an error-free two-sum, so a float32 ln g near 1000 keeps 1/t increments of
  1e-6 that a plain float32 add would drop;
* :func:`wl_log_acceptance`: :math:`\log\alpha = \ln g(E) - \ln g(E') + \log q(x|x') -
  \log q(x'|x)`, the Wang-Landau acceptance for any proposal;
* :func:`is_flat`: the flatness test :math:`\min_E H(E) \ge c\, \overline{H}` (and
  :math:`H(E) > 0`) over the levels of a window.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from flowsamp.types import Array

__all__ = [
    "EnergyBins",
    "energy_bins",
    "level_index",
    "Compensated",
    "compensated",
    "compensated_value",
    "compensated_add_at",
    "compensated_fold",
    "wl_log_acceptance",
    "is_flat",
    "normalize_log_g",
]


class EnergyBins(NamedTuple):
    """Energy levels on a regular grid: ``levels[table[round((E - e_min) / step)]] == E``."""

    levels: np.ndarray
    e_min: float
    step: float
    table: np.ndarray


def energy_bins(levels: np.ndarray, rtol: float = 1e-9) -> EnergyBins:
    """Build the energy -> level-index map for sorted, distinct ``levels`` on a common grid.

    Raises ``ValueError`` when the levels are not all integer multiples of one spacing.
    """
    levels = np.asarray(levels, np.float64)
    if levels.ndim != 1 or levels.size < 2 or np.any(np.diff(levels) <= 0):
        raise ValueError("energy levels must be a sorted 1-D array of at least 2 distinct values")
    step = float(np.min(np.diff(levels)))
    grid = (levels - levels[0]) / step
    if np.max(np.abs(grid - np.rint(grid))) > rtol * max(1.0, grid[-1]):
        raise ValueError("energy levels are not on a regular grid")
    grid = np.rint(grid).astype(np.int64)
    table = -np.ones(int(grid[-1]) + 1, np.int32)
    table[grid] = np.arange(levels.size, dtype=np.int32)
    return EnergyBins(levels, float(levels[0]), step, table)


def level_index(bins: EnergyBins, energy: Array) -> Array:
    """Index of ``energy`` in ``bins.levels`` (int32), -1 when it is not a level."""
    g = jnp.rint((energy - bins.e_min) / bins.step).astype(jnp.int32)
    ok = (g >= 0) & (g < bins.table.size)
    return jnp.where(ok, jnp.asarray(bins.table)[jnp.clip(g, 0, bins.table.size - 1)], -1)


class Compensated(NamedTuple):
    """An array kept as the unevaluated sum ``hi + lo`` (``|lo|`` small after a fold)."""

    hi: Array
    lo: Array


def compensated(x: Array) -> Compensated:
    """Wrap an array as a compensated accumulator with zero low part."""
    x = jnp.asarray(x)
    return Compensated(x, jnp.zeros_like(x))


def compensated_value(c: Compensated) -> Array:
    """The (rounded) value ``hi + lo``."""
    return c.hi + c.lo


def compensated_add_at(c: Compensated, index, amount: Array) -> Compensated:
    """Add ``amount`` at ``index`` (scatter-add, repeated indices accumulate) into ``lo``."""
    return Compensated(c.hi, c.lo.at[index].add(amount))


def compensated_fold(c: Compensated) -> Compensated:
    """Move ``lo`` into ``hi`` by Knuth's error-free two-sum; the rounding error stays in ``lo``."""
    s = c.hi + c.lo
    bp = s - c.hi
    err = (c.hi - (s - bp)) + (c.lo - bp)
    return Compensated(s, err)


def wl_log_acceptance(log_g_old: Array, log_g_new: Array, log_q_ratio: Array = 0.0) -> Array:
    r"""Wang-Landau log acceptance :math:`\ln g(E) - \ln g(E') + \log\frac{q(x \mid x')}{q(x' \mid x)}`."""
    return log_g_old - log_g_new + log_q_ratio


def is_flat(histogram: np.ndarray, mask: np.ndarray, flatness: float) -> bool:
    """``True`` when every level in ``mask`` was visited and ``min H >= flatness * mean H``."""
    h = np.asarray(histogram)[np.asarray(mask)]
    if h.size == 0 or h.min() <= 0:
        return False
    return bool(h.min() >= flatness * h.mean())


def normalize_log_g(log_g: np.ndarray, log_g0: float) -> np.ndarray:
    """Shift ``log_g`` so that its first (ground-state) entry equals ``log_g0``."""
    log_g = np.asarray(log_g, np.float64)
    return log_g - log_g[0] + log_g0


def reference_log_g(target, exact_log_g) -> tuple[np.ndarray, np.ndarray] | None:
    """The exact ``(energies, ln g)`` a flat-histogram run is scored against: ``"auto"``
    (``target.exact_log_dos()`` when the target has one and ``q**L <= 256``), ``None`` (no
    reference) or a given ``(energies, log_g)`` pair (float64)."""
    if isinstance(exact_log_g, str):
        if exact_log_g != "auto":
            raise ValueError(f"exact_log_g must be 'auto', None or (energies, log_g), got {exact_log_g!r}")
        if hasattr(target, "exact_log_dos") and target.num_states**target.L <= 256:
            return target.exact_log_dos()
        return None
    if exact_log_g is None:
        return None
    return tuple(np.asarray(a, np.float64) for a in exact_log_g)

