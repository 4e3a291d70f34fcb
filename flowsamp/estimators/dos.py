r"""Density of states from draws of a normalised proposal: :math:`\Omega(E) \propto \sum_{s \in S_E} 1/q(s)`.

For independent draws :math:`s_k \sim q` of a distribution with exact, normalised
:math:`q(s)` (an autoregressive net),

.. math::

    \hat g(E) = \frac1n \sum_{k=1}^n \frac{\mathbb 1[E(s_k) = E]}{q(s_k)}, \qquad
    \mathbb E_q[\hat g(E)] = \sum_{s:\,E(s)=E} 1 = g(E),

an unbiased estimate of the absolute count (Weigel, Riedel & Zierenberg, NTZ 2024).  It is the
importance-sampling evidence of the level set, so its log and standard error come from
:func:`flowsamp.estimators.log_evidence` with log-weights :math:`-\ln q(s_k)` on the level and
:math:`-\infty` off it (delta method: :math:`\operatorname{se}(\ln\hat g) = \operatorname{se}(\hat g)/\hat g`).
Batches drawn from different (already fixed) nets may be pooled: each term stays unbiased.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.estimators.evidence import log_evidence
from flowsamp.estimators.weights import ess as kish_ess
from flowsamp.types import Array

__all__ = ["DOSEstimate", "dos_from_samples"]


class DOSEstimate(NamedTuple):
    """``energies`` (K,), ``log_g`` (K,) ln ĝ(E) (-inf where no draw fell), ``log_g_se`` (K,)
    delta-method SE of ln ĝ (inf where fewer than two draws), ``counts`` (K,) draws per level,
    ``ess`` (K,) Kish ESS of each level's weights 1/q (the SE is trustworthy only where it is
    large: a level hit by a few huge weights has an underestimated SE)."""

    energies: np.ndarray
    log_g: np.ndarray
    log_g_se: np.ndarray
    counts: np.ndarray
    ess: np.ndarray


def dos_from_samples(
    energies: Array, log_q: Array, levels: Array | None = None, rtol: float = 1e-6
) -> DOSEstimate:
    """Estimate ln g(E) from draws with energies ``energies`` (n,) and exact ``log_q`` (n,).

    Parameters
    ----------
    energies, log_q : array (n,)
        Energy and :math:`\\ln q(s_k)` of each independent draw (q normalised).
    levels : array (K,), optional
        Energy levels to report (default: the distinct values of ``energies``, ascending).
    rtol : float
        Relative tolerance for matching an energy to a level.

    Returns
    -------
    DOSEstimate
    """
    e = np.asarray(energies, np.float64).reshape(-1)
    lq = np.asarray(log_q, np.float64).reshape(-1)
    if e.shape != lq.shape:
        raise ValueError(f"energies and log_q must have the same length, got {e.shape} and {lq.shape}")
    if e.size < 2:
        raise ValueError("need at least two draws")
    if not np.all(np.isfinite(lq)):
        raise ValueError("log_q has non-finite entries (a draw of q has q > 0)")
    if levels is None:
        levels = np.unique(e)
    levels = np.asarray(levels, np.float64).reshape(-1)
    scale = max(float(np.max(np.abs(levels))), 1.0)
    order = np.argsort(levels)
    pos = np.clip(np.searchsorted(levels[order], e), 0, levels.size - 1)
    near = np.where((pos > 0) & (np.abs(levels[order][pos - 1] - e) < np.abs(levels[order][pos] - e)),
                    pos - 1, pos)
    level_of = order[near]
    bad = np.abs(levels[level_of] - e) > rtol * scale
    if bad.any():
        raise ValueError(f"{int(bad.sum())} draws have energies not among the {levels.size} levels")
    counts = np.bincount(level_of, minlength=levels.size)
    log_g = np.full(levels.size, -np.inf)
    se = np.full(levels.size, np.inf)
    level_ess = np.zeros(levels.size)
    neg_lq = jnp.asarray(-lq)
    for k in np.nonzero(counts)[0]:
        lw = jnp.where(jnp.asarray(level_of == k), neg_lq, -jnp.inf)
        lg, sk = log_evidence(lw)
        log_g[k] = float(lg)
        level_ess[k] = float(kish_ess(lw))
        if counts[k] > 1:
            se[k] = float(sk)
    return DOSEstimate(levels, log_g, se, counts, level_ess)
