"""Mixtures of Gaussians, and the benchmark mixtures built from them."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, as_points, float_dtype
from flowsamp.targets.gaussian import check_covariance
from flowsamp.types import Array, PRNGKey

__all__ = ["GaussianMixture", "gaussian_mixture", "four_mode_mixture", "tutorial_mixture"]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class GaussianMixture(Target):
    r"""Normalized mixture :math:`p(x) = \sum_k w_k\, \mathcal N(x; \mu_k, \Sigma_k)`.

    ``log_prob`` is the normalized log-density (so ``log_Z = 0``). ``mode_of`` returns
    the most responsible component :math:`\arg\max_k w_k \mathcal N(x;\mu_k,\Sigma_k)`;
    ``mode_weights`` are the :math:`w_k`.
    """

    means: np.ndarray  # (K, d)
    covs: np.ndarray  # (K, d, d)
    weights: np.ndarray  # (K,)
    chol: np.ndarray  # (K, d, d) lower Cholesky factors
    chol_inv: np.ndarray  # (K, d, d)
    log_norm: np.ndarray  # (K,)  log w_k - d/2 log 2pi - 1/2 log det Sigma_k

    def component_log_probs(self, x: Array) -> Array:
        r""":math:`\log w_k + \log \mathcal N(x; \mu_k, \Sigma_k)`, shape ``x.shape[:-1] + (K,)``."""
        x = as_points(x, self.dim)
        dt = x.dtype
        r = x[..., None, :] - jnp.asarray(self.means, dt)
        z = jnp.einsum("kij,...kj->...ki", jnp.asarray(self.chol_inv, dt), r)
        return jnp.asarray(self.log_norm, dt) - 0.5 * jnp.sum(z * z, axis=-1)

    def log_prob(self, x: Array) -> Array:
        return jax.nn.logsumexp(self.component_log_probs(x), axis=-1)

    def mode_of(self, x: Array) -> Array:
        return jnp.argmax(self.component_log_probs(x), axis=-1).astype(jnp.int32)

    def _sample(self, key: PRNGKey, n: int) -> Array:
        dt = float_dtype()
        kc, kz = jax.random.split(key)
        comp = jax.random.categorical(kc, jnp.log(jnp.asarray(self.weights, dt)), shape=(n,))
        eps = jax.random.normal(kz, (n, self.dim), dtype=dt)
        # every component's affine map on the same noise, then pick one: O(n K d) memory
        y = jnp.asarray(self.means, dt) + jnp.einsum("kij,nj->nki", jnp.asarray(self.chol, dt), eps)
        return jnp.take_along_axis(y, comp[:, None, None], axis=1)[:, 0]


def _expand_covs(covs, K: int, d: int) -> np.ndarray:
    covs = np.asarray(covs, dtype=np.float64)
    if covs.ndim == 0:
        covs = np.broadcast_to(covs, (K,))
    if covs.ndim == 1:
        if covs.shape != (K,):
            raise ValueError(f"per-component variances must have shape ({K},), got {covs.shape}")
        if not np.all(covs > 0):
            raise ValueError("component variances must be > 0")
        return covs[:, None, None] * np.eye(d)
    if covs.ndim == 2:
        if covs.shape != (K, d):
            raise ValueError(f"diagonal covariances must have shape ({K}, {d}), got {covs.shape}")
        if not np.all(covs > 0):
            raise ValueError("component variances must be > 0")
        return np.stack([np.diag(c) for c in covs])
    if covs.shape != (K, d, d):
        raise ValueError(f"full covariances must have shape ({K}, {d}, {d}), got {covs.shape}")
    return covs.copy()


def gaussian_mixture(means, covs=1.0, weights=None) -> GaussianMixture:
    """Mixture of ``K`` Gaussians in ``d`` dimensions.

    Parameters
    ----------
    means : array_like, shape ``(K, d)``
    covs : float or array_like
        One scalar variance shared by all components, per-component scalar variances
        ``(K,)``, per-component diagonal variances ``(K, d)``, or full SPD matrices
        ``(K, d, d)``.
    weights : array_like, shape ``(K,)``, optional
        Non-negative, summing to 1 (within 1e-6; renormalized). Default uniform.

    Returns
    -------
    GaussianMixture
        normalized ``log_prob`` (``log_Z = 0``), exact ``sample``, ``mode_of`` =
        most responsible component, ``mode_weights`` = ``weights``.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
        raise ValueError(f"means must have shape (K, d), got {means.shape}")
    if not np.all(np.isfinite(means)):
        raise ValueError("means have non-finite entries")
    K, d = means.shape
    if weights is None:
        weights = np.full(K, 1.0 / K)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (K,):
        raise ValueError(f"weights must have shape ({K},), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("weights must be finite and non-negative")
    if abs(weights.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1, got sum {weights.sum()!r}")
    weights = weights / weights.sum()
    covs = _expand_covs(covs, K, d)
    chol = np.stack([check_covariance(c, d, what=f"covs[{k}]") for k, c in enumerate(covs)])
    chol_inv = np.linalg.inv(chol)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    log_norm = log_w - 0.5 * d * np.log(2 * np.pi) - np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    return GaussianMixture(
        dim=d,
        log_Z=0.0,
        mode_weights=weights.copy(),
        num_modes=K,
        means=means,
        covs=covs,
        weights=weights,
        chol=chol,
        chol_inv=chol_inv,
        log_norm=log_norm,
    )


def four_mode_mixture(dim: int = 2, shift: float | None = None) -> GaussianMixture:
    """The benchmark mixture of four unit-variance Gaussians with weights 0.1, 0.2, 0.3, 0.4.

    Means, in label order 0..3: ``(-s, -s, 0, ...)``, ``(-s, +s, 0, ...)``,
    ``(+s, -s, 0, ...)``, ``(+s, +s, 0, ...)`` with ``s = 5`` in 2-D and ``s = 4`` otherwise
    (flowMC-style benchmark: (±5, ±5) in 2-D, (±4, ±4, 0, …) in 10-D).

    Returns
    -------
    GaussianMixture with ``mode_weights = [0.1, 0.2, 0.3, 0.4]`` and ``log_Z = 0``.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    s = (5.0 if dim == 2 else 4.0) if shift is None else float(shift)
    means = np.zeros((4, int(dim)))
    means[:, :2] = [[-s, -s], [-s, s], [s, -s], [s, s]]
    return gaussian_mixture(means, 1.0, [0.1, 0.2, 0.3, 0.4])


def tutorial_mixture() -> GaussianMixture:
    """2-D tutorial mixture ``0.25 N((-1,-1), 0.1 I) + 0.75 N((1,1), 0.1 I)``.

    Its exact mass in the quadrant ``x > 0, y > 0`` is
    ``0.25 Phi(-1/sqrt(0.1))^2 + 0.75 Phi(1/sqrt(0.1))^2 = 0.748827``.
    """
    return gaussian_mixture([[-1.0, -1.0], [1.0, 1.0]], 0.1, [0.25, 0.75])
