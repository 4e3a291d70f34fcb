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
from scipy.optimize import brentq

from flowsamp.types import Array

__all__ = [
    "CanonicalAverages",
    "canonical_averages",
    "canonical_distribution",
    "equal_height_beta",
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
    energies: Array, log_g: Array, beta_lo: float, beta_hi: float, split: float | None = None
) -> float:
    r"""Inverse temperature at which the two peaks of :math:`P_\beta(E)` have equal height.

    The ordered peak is the maximum of :math:`\ln P_\beta` below ``split``, the disordered
    one above it (default: the energy of the minimum of :math:`P_\beta` between the two
    peaks at the midpoint beta).  The root of the log height ratio is bracketed by
    ``[beta_lo, beta_hi]`` (``ValueError`` otherwise) and found by Brent's method in
    float64.  This is the finite-size transition point :math:`\beta_c(L)`.
    """
    e = np.asarray(energies, np.float64)
    lg = np.asarray(log_g, np.float64)
    lg = np.where(np.isfinite(lg), lg, -np.inf)
    if split is None:
        mid = 0.5 * (beta_lo + beta_hi)
        logp = lg - mid * e
        i1, i2 = _two_peaks(logp)
        split = e[i1 + int(np.argmin(logp[i1 : i2 + 1]))]

    def gap(beta):
        logp = lg - beta * e
        return np.max(logp[e < split]) - np.max(logp[e >= split])

    g_lo, g_hi = gap(beta_lo), gap(beta_hi)
    if np.sign(g_lo) == np.sign(g_hi):
        raise ValueError(f"equal peak heights not bracketed by beta in [{beta_lo}, {beta_hi}]")
    return float(brentq(gap, beta_lo, beta_hi, xtol=1e-12))


def _two_peaks(logp: np.ndarray, dip: float = 1.0) -> tuple[int, int]:
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
