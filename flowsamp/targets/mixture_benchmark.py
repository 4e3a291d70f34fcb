r"""Seeded Gaussian-mixture benchmark targets with exact mode weights.

:func:`mixture_benchmark` builds a mixture of unit-covariance Gaussians

.. math:: p(x) = \sum_{k=1}^K w_k\, \mathcal N(x; m_k, I_d),

whose centres :math:`m_k` are placed reproducibly from a seed so that every pair is at least
``separation`` apart (in units of the component standard deviation, here 1), and whose weights
are given, balanced or Dirichlet(1). It is a :class:`~flowsamp.targets.GaussianMixture`
(same normalised ``log_prob``, ``mode_of``, exact ``sample``), so ``log_Z = 0``.

Modes and their weights
-----------------------
``mode_of(x)`` is the most responsible component,
:math:`\arg\max_k [\log w_k + \log\mathcal N(x; m_k, I)]`. Its cells :math:`C_j` are convex
polytopes (the power diagram of the centres), and ``mode_weights[j]`` is the exact probability
mass :math:`P_p(C_j) = \sum_k w_k\,P_{\mathcal N(m_k, I)}(C_j)`. This equals :math:`w_j` only
when the modes are well separated; overlapping components leak mass into each other's cells.

How ``mode_weights`` is computed (stored in ``mode_weights_method``):

* ``"closed form"`` for ``K = 2``: the cells are half-spaces. With :math:`d = |m_1 - m_0|` and
  :math:`t = d/2 + \ln(w_0/w_1)/d` the boundary's distance from :math:`m_0`,
  :math:`P(C_0) = w_0\,\Phi(t) + w_1\,\Phi(t - d)` (``mode_weights_se = 0``).
* ``"separated"``: when the exact pairwise half-space masses bound every leak below ``1e-12``
  (:math:`P_{\mathcal N(m_k,I)}(\text{score}_j > \text{score}_k) = \Phi(-d_{kj}/2 - \ln(w_k/w_j)/d_{kj})`,
  summed over pairs: a union bound), ``mode_weights = w`` to within that bound
  (``mode_weights_se = 0``).
* ``"monte carlo"`` otherwise: exact draws stratified by component, ``mc_samples`` per
  component, :math:`\hat P(C_j) = \sum_k w_k \hat f_{kj}` with binomial standard error
  :math:`\sqrt{\sum_k w_k^2 \hat f_{kj}(1-\hat f_{kj}) / N}` in ``mode_weights_se``
  (at most ``1e-3`` at the default ``N = 2**18``). The cell of :math:`x = m_k + z` depends on
  :math:`z` only through its projection on the span of the centre differences (rank
  :math:`\le K - 1`), so the draws live in that subspace and cost :math:`O(N K^2)`, not
  :math:`O(N K d)`. The draws use their own stream of ``seed``, so the numbers are reproducible.

Compare an estimate with ``mode_weights`` using the quadrature sum of its own SE and
``mode_weights_se``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from flowsamp.targets.base import as_points, float_dtype
from flowsamp.targets.gaussian_mixture import GaussianMixture, gaussian_mixture
from flowsamp.types import Array, PRNGKey

__all__ = ["MixtureBenchmark", "mixture_benchmark"]

#: leak bound under which the cell masses are the component weights ("separated").
SEPARATED_TOL = 1e-12
_STREAM_CENTRES, _STREAM_WEIGHTS, _STREAM_MC = 0, 1, 2


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class MixtureBenchmark(GaussianMixture):
    r"""A seeded unit-covariance Gaussian mixture (see :func:`mixture_benchmark`).

    Fields beyond :class:`GaussianMixture`: ``separation`` (the minimum pairwise centre distance,
    attained exactly), ``seed``, ``weights_kind`` (``"balanced"``, ``"dirichlet"`` or
    ``"given"``), ``mode_weights_se`` (standard error of ``mode_weights``; 0 where exact) and
    ``mode_weights_method``. ``weights`` are the component weights :math:`w_k`;
    ``mode_weights`` the masses of the ``mode_of`` cells.
    """

    separation: float
    seed: int
    weights_kind: str
    mode_weights_se: np.ndarray
    mode_weights_method: str

    def component_log_probs(self, x: Array) -> Array:
        r""":math:`\log w_k - \tfrac d2\log 2\pi - \tfrac12|x - m_k|^2`, shape ``x.shape[:-1] + (K,)``."""
        x = as_points(x, self.dim)
        dt = x.dtype
        r = x[..., None, :] - jnp.asarray(self.means, dt)
        return jnp.asarray(self.log_norm, dt) - 0.5 * jnp.sum(r * r, axis=-1)

    def _sample(self, key: PRNGKey, n: int) -> Array:
        dt = float_dtype()
        kc, kz = jax.random.split(key)
        comp = jax.random.categorical(kc, jnp.log(jnp.asarray(self.weights, dt)), shape=(n,))
        return jnp.asarray(self.means, dt)[comp] + jax.random.normal(kz, (n, self.dim), dtype=dt)

    def __repr__(self) -> str:
        return (f"MixtureBenchmark(dim={self.dim}, num_modes={self.num_modes}, separation={self.separation}, "
                f"weights={self.weights_kind}, seed={self.seed})")


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(v)


def _pairwise(m: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(np.sum((m[:, None, :] - m[None, :, :]) ** 2, axis=-1), 0.0))
    return d


def _place_centres(rng: np.random.Generator, K: int, d: int, separation: float) -> np.ndarray:
    """Random sequential addition of standard-normal points at least ``rho`` apart, then a rescale.

    ``rho`` starts at 0.8 of the typical distance :math:`\\sqrt{2d}` of two standard-normal
    points and shrinks by 10 % after 200 consecutive rejections; the accepted configuration is
    centred on its mean and scaled so that its minimum pairwise distance is ``separation``.
    """
    if K == 1:
        return np.zeros((1, d))
    rho = 0.8 * np.sqrt(2.0 * d)
    pts = [rng.standard_normal(d)]
    fails = 0
    while len(pts) < K:
        c = rng.standard_normal(d)
        if np.min(np.linalg.norm(np.asarray(pts) - c, axis=1)) >= rho:
            pts.append(c)
            fails = 0
        else:
            fails += 1
            if fails >= 200:
                rho *= 0.9
                fails = 0
    m = np.asarray(pts)
    m = m - m.mean(axis=0)
    dist = _pairwise(m)
    dmin = np.min(dist[np.triu_indices(K, 1)])
    return m * (separation / dmin)


def _weights(rng: np.random.Generator, weights, K: int) -> tuple[np.ndarray, str]:
    if isinstance(weights, str):
        if weights == "balanced":
            return np.full(K, 1.0 / K), "balanced"
        if weights == "dirichlet":
            return rng.dirichlet(np.ones(K)), "dirichlet"
        raise ValueError(f"weights must be an array of {K} weights, 'balanced' or 'dirichlet', got {weights!r}")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (K,):
        raise ValueError(f"weights must have shape ({K},) (one per mode), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be finite and > 0 (a mode of weight 0 is not a mode)")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1, got sum {w.sum()!r}")
    return w / w.sum(), "given"


def _leak_bound(means: np.ndarray, w: np.ndarray) -> float:
    """Union bound on the total mass outside the own cell: sum_k w_k sum_j Phi(-d/2 - ln(w_k/w_j)/d)."""
    K = len(w)
    dist = _pairwise(means)
    tot = 0.0
    for k in range(K):
        for j in range(K):
            if j != k:
                t = dist[k, j] / 2 + np.log(w[k] / w[j]) / dist[k, j]
                tot += w[k] * ndtr(-t)
    return float(tot)


def _cell_masses_mc(rng: np.random.Generator, means: np.ndarray, w: np.ndarray, n: int, chunk: int = 1 << 16):
    """Stratified Monte Carlo cell masses and SEs in the span of the centre differences."""
    K = len(w)
    q, r = np.linalg.qr((means[1:] - means[0]).T)  # (d, K-1)
    keep = np.abs(np.diag(r)) > 1e-10 * max(1.0, np.abs(r).max())
    q = q[:, keep]
    c = (means - means[0]) @ q  # (K, rank) centres in the subspace (exact: differences lie in it)
    # log w_j - |u - c_j|^2 / 2 up to the j-independent -|u|^2 / 2
    offset = np.log(w) - 0.5 * np.sum(c * c, axis=1)
    counts = np.zeros((K, K))
    for k in range(K):
        done = 0
        while done < n:
            m = min(chunk, n - done)
            u = c[k] + rng.standard_normal((m, c.shape[1]))
            score = offset + u @ c.T
            counts[k] += np.bincount(np.argmax(score, axis=1), minlength=K)
            done += m
    f = counts / n  # f[k, j] = fraction of component k's draws in cell j
    est = w @ f
    se = np.sqrt((w**2) @ (f * (1 - f)) / n)
    return est, se


def mixture_benchmark(
    dim: int,
    num_modes: int,
    separation: float,
    weights="balanced",
    seed: int = 0,
    *,
    mc_samples: int = 1 << 18,
) -> MixtureBenchmark:
    r"""A seeded mixture of ``num_modes`` unit-covariance Gaussians in ``dim`` dimensions.

    Parameters
    ----------
    dim : int
        Dimension ``d >= 1``.
    num_modes : int
        Number of components ``K >= 1``.
    separation : float
        Minimum pairwise distance of the centres in standard deviations (> 0); attained exactly
        by the closest pair. About 2 means overlapping components, 8 and beyond well separated.
    weights : array_like of shape ``(K,)``, ``"balanced"`` or ``"dirichlet"``
        Component weights :math:`w_k > 0` summing to 1; ``"balanced"`` is :math:`1/K`;
        ``"dirichlet"`` draws :math:`w \sim \mathrm{Dirichlet}(1,\dots,1)` from ``seed``.
    seed : int
        Seeds the centres, the Dirichlet weights and the Monte Carlo of ``mode_weights``
        (independent streams); the same arguments give the same target.
    mc_samples : int
        Exact draws per component for ``mode_weights`` when no closed form applies (module docs).

    Returns
    -------
    MixtureBenchmark
        ``log_prob`` normalised (``log_Z = 0``), ``sample`` exact, ``means`` ``(K, d)``,
        ``weights`` :math:`w_k`, ``mode_of`` the most responsible component, ``mode_weights``
        the exact (or Monte Carlo, with ``mode_weights_se``) mass of each ``mode_of`` cell.

    Examples
    --------
    >>> t = mixture_benchmark(8, 4, 10.0, "dirichlet", seed=3)
    >>> t.means.shape, t.log_Z
    ((4, 8), 0.0)
    """
    d = _check_int("dim", dim, 1)
    K = _check_int("num_modes", num_modes, 1)
    seed = _check_int("seed", seed, 0)
    n_mc = _check_int("mc_samples", mc_samples, 1)
    sep = float(separation)
    if not np.isfinite(sep) or sep <= 0:
        raise ValueError(f"separation must be finite and > 0, got {separation!r}")
    w, kind = _weights(np.random.default_rng([seed, _STREAM_WEIGHTS]), weights, K)
    means = _place_centres(np.random.default_rng([seed, _STREAM_CENTRES]), K, d, sep)
    if K == 1:
        cells, se, method = np.ones(1), np.zeros(1), "closed form"
    elif K == 2:
        dist = float(np.linalg.norm(means[1] - means[0]))
        t = dist / 2 + np.log(w[0] / w[1]) / dist
        p0 = w[0] * ndtr(t) + w[1] * ndtr(t - dist)
        cells, se, method = np.array([p0, 1.0 - p0]), np.zeros(2), "closed form"
    elif _leak_bound(means, w) < SEPARATED_TOL:
        cells, se, method = w.copy(), np.zeros(K), "separated"
    else:
        cells, se = _cell_masses_mc(np.random.default_rng([seed, _STREAM_MC]), means, w, n_mc)
        method = "monte carlo"
    gm = gaussian_mixture(means, 1.0, w)
    fields = {f.name: getattr(gm, f.name) for f in dataclasses.fields(gm)}
    fields["mode_weights"] = np.asarray(cells, np.float64)
    return MixtureBenchmark(
        **fields,
        separation=sep,
        seed=seed,
        weights_kind=kind,
        mode_weights_se=np.asarray(se, np.float64),
        mode_weights_method=method,
    )
