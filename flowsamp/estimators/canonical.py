r"""Canonical averages reweighted from a density of states ln g(E).

Given levels :math:`E_k` and :math:`\ln g(E_k)` (from Wang-Landau, a multicanonical run,
or exact), at inverse temperature :math:`\beta`

.. math::

    P_\beta(E_k) = \frac{g(E_k)\, e^{-\beta E_k}}{Z(\beta)}, \qquad
    \ln Z = \operatorname{logsumexp}_k [\ln g(E_k) - \beta E_k],

    \langle E \rangle = \sum_k E_k P_\beta(E_k), \qquad
    C = \beta^2 \left(\langle E^2\rangle - \langle E\rangle^2\right), \qquad
    F = -\ln Z / \beta, \qquad S = \beta(\langle E\rangle - F)

(:math:`k_B = 1`, extensive quantities; divide by N for per-site values).  Levels with a
non-finite ln g (never visited) carry zero weight.  Computed in the float dtype of
``log_g`` (float64 under ``jax_enable_x64``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.types import Array

__all__ = [
    "CanonicalAverages",
    "canonical_averages",
    "canonical_distribution",
    "equal_height_beta",
    "smoothed_distribution",
]


class CanonicalAverages(NamedTuple):
    """Canonical quantities at ``beta`` (each the shape of ``beta``)."""

    beta: Array
    log_Z: Array
    mean_energy: Array
    specific_heat: Array
    free_energy: Array
    entropy: Array


def _prepare(energies, log_g):
    log_g = jnp.asarray(log_g)
    if not jnp.issubdtype(log_g.dtype, jnp.floating):
        log_g = log_g.astype(jnp.result_type(float))
    energies = jnp.asarray(energies, log_g.dtype)
    if energies.shape != log_g.shape or energies.ndim != 1:
        raise ValueError(f"energies {energies.shape} and log_g {log_g.shape} must be equal 1-D shapes")
    return energies, jnp.where(jnp.isfinite(log_g), log_g, -jnp.inf)


def canonical_distribution(energies: Array, log_g: Array, beta: float | Array) -> Array:
    r"""Energy distribution :math:`P_\beta(E_k)` (sums to 1); shape ``beta.shape + (K,)``."""
    energies, log_g = _prepare(energies, log_g)
    beta = jnp.asarray(beta, log_g.dtype)[..., None]
    logits = log_g - beta * energies
    return jax.nn.softmax(logits, axis=-1)


def canonical_averages(energies: Array, log_g: Array, beta: float | Array) -> CanonicalAverages:
    r"""``log_Z``, ``<E>``, specific heat :math:`\beta^2\mathrm{Var}(E)`, free energy and entropy.

    Parameters
    ----------
    energies, log_g : array (K,)
        Energy levels and ln g(E) (any additive normalisation shifts only ``log_Z``,
        ``free_energy`` and ``entropy``; give ln g(E_0) = ln(ground degeneracy) for
        absolute values).
    beta : float or array
        Inverse temperature(s).

    Returns
    -------
    CanonicalAverages
    """
    energies, log_g = _prepare(energies, log_g)
    beta = jnp.asarray(beta, log_g.dtype)
    b = beta[..., None]
    logits = log_g - b * energies
    log_Z = jax.nn.logsumexp(logits, axis=-1)
    p = jnp.exp(logits - log_Z[..., None])
    mean = jnp.sum(p * energies, axis=-1)
    var = jnp.sum(p * (energies - mean[..., None]) ** 2, axis=-1)
    free = -log_Z / beta
    return CanonicalAverages(beta, log_Z, mean, beta**2 * var, free, beta * (mean - free))


def equal_height_beta(
    energies: Array,
    log_g: Array,
    beta_lo: float,
    beta_hi: float,
    split: float | None = None,
    smooth: int = 1,
    criterion: str = "height",
) -> float:
    r"""Inverse temperature at which the two peaks of :math:`P_\beta(E)` balance.

    ``criterion="height"``: equal maxima of :math:`P_\beta` below and above ``split``
    (after a moving average over ``smooth`` neighbouring levels, which removes the comb of
    discrete low-lying excitations on small lattices); ``"weight"``: equal probability
    below and above ``split``.  ``split`` defaults to the energy of the minimum of the
    (smoothed) :math:`P_\beta` between its two peaks at the midpoint beta.  The root is
    bracketed by ``[beta_lo, beta_hi]`` (``ValueError`` otherwise) and found by Brent's
    method in float64.  Either criterion defines a finite-size transition point
    :math:`\beta_c(L)`.
    """
    if criterion not in ("height", "weight"):
        raise ValueError(f"unknown criterion {criterion!r}; choose 'height' or 'weight'")
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or smooth < 1:
        raise ValueError(f"smooth must be a positive int, got {smooth!r}")
    e = np.asarray(energies, np.float64)
    lg = np.asarray(log_g, np.float64)
    lg = np.where(np.isfinite(lg), lg, -np.inf)
    kernel = np.ones(smooth) / smooth

    def log_p(beta):
        x = lg - beta * e
        x = x - np.max(x)
        p = np.convolve(np.exp(x), kernel, mode="same")
        with np.errstate(divide="ignore"):
            return np.log(p / p.sum())

    if split is None:
        logp = log_p(0.5 * (beta_lo + beta_hi))
        i1, i2 = _two_peaks(logp)
        split = e[i1 + int(np.argmin(logp[i1 : i2 + 1]))]
    low = e < split

    def gap(beta):
        lp = log_p(beta)
        if criterion == "height":
            return np.max(lp[low]) - np.max(lp[~low])
        return np.logaddexp.reduce(lp[low]) - np.logaddexp.reduce(lp[~low])

    g_lo, g_hi = gap(beta_lo), gap(beta_hi)
    if np.sign(g_lo) == np.sign(g_hi):
        raise ValueError(f"balanced peaks not bracketed by beta in [{beta_lo}, {beta_hi}]")
    # imported here, not with the module: scipy.optimize costs ~0.4 s to import
    from scipy.optimize import brentq

    return float(brentq(gap, beta_lo, beta_hi, xtol=1e-12))


def smoothed_distribution(energies: Array, log_g: Array, beta: float, smooth: int = 1) -> np.ndarray:
    """:math:`P_\beta(E)` (float64, sums to 1) after a moving average over ``smooth`` levels."""
    e = np.asarray(energies, np.float64)
    lg = np.asarray(log_g, np.float64)
    x = np.where(np.isfinite(lg), lg, -np.inf) - beta * e
    p = np.convolve(np.exp(x - np.max(x)), np.ones(smooth) / smooth, mode="same")
    return p / p.sum()


def _two_peaks(logp: np.ndarray, dip: float = 0.05) -> tuple[int, int]:
    """The highest local maximum of ``logp`` and the highest one separated from it by a dip
    of at least ``dip`` (in ln P) below the lower of the two; indices ascending."""
    x = np.where(np.isfinite(logp), logp, -np.inf)
    pad = np.concatenate([[-np.inf], x, [-np.inf]])
    peaks = np.where((pad[1:-1] >= pad[:-2]) & (pad[1:-1] >= pad[2:]) & np.isfinite(x))[0]
    first = int(peaks[np.argmax(x[peaks])])
    best = None
    for p in peaks:
        lo, hi = sorted((first, int(p)))
        if p == first or np.min(x[lo : hi + 1]) > min(x[first], x[p]) - dip:
            continue
        if best is None or x[p] > x[best]:
            best = int(p)
    if best is None:
        raise ValueError("P_beta(E) is not double-peaked at the bracket midpoint; give split=")
    return min(first, best), max(first, best)
