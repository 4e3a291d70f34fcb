r"""Parallel-tempering ladder: schedule adaptation (Syed et al.), barrier, ln Z estimators.

The inverse temperatures :math:`0 = \beta_0 < \beta_1 < \dots < \beta_{N-1} = 1` index the path
:math:`\pi_\beta(x) \propto r(x)^{1-\beta} p(x)^{\beta}` from a normalised reference :math:`r`
to the target :math:`p`. With :math:`V(x) = \log p(x) - \log r(x)` the swap between rungs
:math:`k, k+1` is accepted with :math:`\min(1, e^{(\beta_{k+1}-\beta_k)(V(x_k) - V(x_{k+1}))})`
and its rejection rate is :math:`\rho_k`.

Schedule update (Syed, Bouchard-Côté, Deligiannidis, Doucet, JRSS B 84, 321 (2022),
arXiv:1905.02939, Algorithm 4): the cumulative barrier
:math:`\Lambda(\beta_k) = \sum_{j<k} \rho_j` is interpolated (piecewise linear, monotone) and
the new ladder equalises the rejection rates,

.. math:: \beta'_k = \Lambda^{-1}\!\big(k \Lambda / (N - 1)\big), \qquad \Lambda = \Lambda(1).

The round-trip rate of non-reversible PT with equal rejections is :math:`1/(2 + 2\Lambda)`,
so :math:`N \approx 2\Lambda` rungs reach most of it (the paper's recommendation).

Evidence, with :math:`\Delta_k = \beta_{k+1} - \beta_k` and :math:`S` draws per rung:

.. math::

    \ln \hat Z_{\rm SS} &= \ln Z_r + \sum_{k=0}^{N-2} \ln \frac1S \sum_s e^{\Delta_k V(x_k^{(s)})}
    \quad \text{(stepping stone; Xie et al. 2011, Syst. Biol. 60, 150)},\\
    \ln \hat Z_{\rm TI} &= \ln Z_r + \sum_{k=0}^{N-2} \Delta_k \tfrac12
    \big(\bar V_k + \bar V_{k+1}\big) \quad \text{(thermodynamic integration, trapezoid)}.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from flowsamp.types import Array

__all__ = ["LadderState", "LadderAdaptation", "ladder_adaptation", "initial_ladder", "log_evidence_ladder"]


class LadderState(NamedTuple):
    """``betas`` :math:`\\beta_0..\\beta_{N-1}`; ``barrier`` :math:`\\hat\\Lambda` of the last update."""

    betas: Array
    barrier: Array


class LadderAdaptation(NamedTuple):
    """``init(betas) -> state``; ``update(state, rejection_rates, num_temperatures=None) -> state``."""

    init: Callable[[Array], LadderState]
    update: Callable[..., LadderState]


def initial_ladder(num_temperatures: int, beta_min: float | None = None, dtype=np.float64) -> np.ndarray:
    r""":math:`\beta_0 = 0` and a geometric ladder :math:`\beta_k = \beta_{\min}^{(N-1-k)/(N-2)}`, k >= 1.

    ``beta_min`` defaults to :math:`2^{-(N-2)}` (each rung halves the temperature of the last, the
    classic geometric ladder); it is only a starting point for :func:`ladder_adaptation`.
    """
    n = int(num_temperatures)
    if n < 2:
        raise ValueError(f"num_temperatures must be >= 2, got {num_temperatures!r}")
    if n == 2:
        return np.array([0.0, 1.0], dtype)
    bmin = 2.0 ** (-(n - 2)) if beta_min is None else float(beta_min)
    if not 0.0 < bmin < 1.0:
        raise ValueError(f"beta_min must be in (0, 1), got {beta_min!r}")
    k = np.arange(1, n)
    return np.concatenate([[0.0], bmin ** ((n - 1 - k) / (n - 2))]).astype(dtype)


def _barrier_curve(betas: np.ndarray, rejection: np.ndarray) -> np.ndarray:
    """Cumulative barrier :math:`\\Lambda(\\beta_k)` at the rungs (strictly increasing)."""
    rho = np.clip(np.nan_to_num(np.asarray(rejection, np.float64), nan=1.0), 1e-6, 1.0)
    return np.concatenate([[0.0], np.cumsum(rho)])


def ladder_adaptation() -> LadderAdaptation:
    """Return the (init, update) pair of the non-reversible PT schedule update (module docs).

    ``update(state, rejection_rates, num_temperatures=None)`` takes the mean swap rejection
    rate of each adjacent pair over the last round (shape ``(N-1,)``) and returns the ladder
    that equalises them, with ``num_temperatures`` rungs (default: unchanged). Host-side
    (numpy): it runs between rounds.
    """

    def init(betas: Array) -> LadderState:
        b = np.asarray(betas, np.float64)
        if b.ndim != 1 or b.shape[0] < 2 or b[0] != 0.0 or b[-1] != 1.0 or np.any(np.diff(b) <= 0):
            raise ValueError(f"betas must increase strictly from 0 to 1, got {b}")
        return LadderState(b, np.nan)

    def update(state: LadderState, rejection_rates: Array, num_temperatures: int | None = None) -> LadderState:
        b = np.asarray(state.betas, np.float64)
        cum = _barrier_curve(b, rejection_rates)
        n = b.shape[0] if num_temperatures is None else int(num_temperatures)
        levels = np.linspace(0.0, cum[-1], n)
        new = np.interp(levels, cum, b)
        new[0], new[-1] = 0.0, 1.0
        # keep the ladder strictly increasing even when some rejection rates were ~0
        new = np.maximum.accumulate(np.maximum(new, np.arange(n) * 1e-12))
        raw_barrier = float(np.sum(np.nan_to_num(np.asarray(rejection_rates, np.float64), nan=1.0)))
        return LadderState(new, raw_barrier)

    return LadderAdaptation(init, update)


def log_evidence_ladder(betas: Array, V: Array, num_blocks: int) -> dict:
    r"""Stepping-stone and TI estimates of :math:`\ln Z - \ln Z_r` with batch-means standard errors.

    ``V`` holds :math:`V(x)` of the production draws, shape ``(chains, steps, N)``. The point
    estimates pool every draw; the standard error is the spread of the estimates over
    ``num_blocks`` contiguous blocks of steps in each chain (``chains * num_blocks`` blocks,
    taken as independent: valid when a block is much longer than the autocorrelation time),
    :math:`\mathrm{SE} = \mathrm{sd}_{\rm blocks}/\sqrt{B}`.
    """
    V = jnp.asarray(V)
    betas = jnp.asarray(betas, V.dtype)
    c, s, n = V.shape
    delta = jnp.diff(betas)

    def ss(v):  # v: (draws, N)
        m = v.shape[0]
        terms = logsumexp(delta[None, :] * v[:, :-1], axis=0) - jnp.log(jnp.asarray(m, v.dtype))
        return jnp.sum(terms)

    def ti(v):
        mean = jnp.mean(v, axis=0)
        return jnp.sum(delta * 0.5 * (mean[:-1] + mean[1:]))

    pooled = V.reshape(c * s, n)
    nb = max(1, min(int(num_blocks), s))
    length = s // nb
    blocks = V[:, : nb * length].reshape(c * nb, length, n)
    ss_b = jax.vmap(ss)(blocks)
    ti_b = jax.vmap(ti)(blocks)
    B = ss_b.shape[0]
    se = lambda a: jnp.std(a, ddof=1) / jnp.sqrt(B) if B > 1 else jnp.asarray(jnp.nan, V.dtype)  # noqa: E731
    return {"ss": ss(pooled), "ss_se": se(ss_b), "ti": ti(pooled), "ti_se": se(ti_b), "num_blocks": B}
