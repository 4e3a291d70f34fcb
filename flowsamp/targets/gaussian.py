"""Multivariate Gaussian target with any (positive-definite) covariance."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, as_points, float_dtype
from flowsamp.types import Array, PRNGKey

__all__ = ["Gaussian", "gaussian", "check_covariance"]


def check_covariance(cov: np.ndarray, dim: int, what: str = "cov") -> np.ndarray:
    """Return the Cholesky factor of ``cov`` (shape ``(dim, dim)``), raising if it is not SPD."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (dim, dim):
        raise ValueError(f"{what} must have shape ({dim}, {dim}), got {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError(f"{what} has non-finite entries")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * np.abs(cov).max()):
        raise ValueError(f"{what} must be symmetric")
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what} must be positive definite") from None


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Gaussian(Target):
    r"""Gaussian target :math:`\mathcal N(\mu, \Sigma)` with an *unnormalized* ``log_prob``.

    .. math::

        \log \tilde p(x) = -\tfrac12 (x-\mu)^\top \Sigma^{-1} (x-\mu), \qquad
        \log Z = \tfrac d2 \ln 2\pi + \tfrac12 \ln\det\Sigma .

    One mode (label 0, weight 1).
    """

    mean: np.ndarray
    cov: np.ndarray
    chol: np.ndarray  # lower Cholesky factor L, Sigma = L L^T
    chol_inv: np.ndarray  # L^{-1}

    def log_prob(self, x: Array) -> Array:
        x = as_points(x, self.dim)
        r = x - jnp.asarray(self.mean, x.dtype)
        z = r @ jnp.asarray(self.chol_inv, x.dtype).T  # z = L^{-1} (x - mu)
        return -0.5 * jnp.sum(z * z, axis=-1)

    def _sample(self, key: PRNGKey, n: int) -> Array:
        dt = float_dtype()
        eps = jax.random.normal(key, (n, self.dim), dtype=dt)
        return jnp.asarray(self.mean, dt) + eps @ jnp.asarray(self.chol, dt).T

    def mode_of(self, x: Array) -> Array:
        x = as_points(x, self.dim)
        return jnp.zeros(x.shape[:-1], jnp.int32)


def gaussian(mean, cov) -> Gaussian:
    """Gaussian target :math:`\\mathcal N(\\text{mean}, \\text{cov})`.

    Parameters
    ----------
    mean : array_like, shape ``(d,)``
    cov : float or array_like
        A scalar variance (isotropic), a ``(d,)`` vector of variances (diagonal),
        or a full symmetric positive-definite ``(d, d)`` matrix.

    Returns
    -------
    Gaussian
        ``log_prob`` is unnormalized (the quadratic form only); ``log_Z`` is
        :math:`\\tfrac d2\\ln 2\\pi + \\tfrac12\\ln\\det\\Sigma`; ``sample`` is exact.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> t = gaussian(jnp.zeros(2), jnp.eye(2))
    >>> float(t.log_prob(jnp.ones(2))), round(t.log_Z, 4)  # unnormalised; ln Z = ln 2 pi
    (-1.0, 1.8379)
    """
    mean = np.asarray(mean, dtype=np.float64)
    if mean.ndim != 1 or mean.shape[0] < 1:
        raise ValueError(f"mean must be a non-empty vector, got shape {mean.shape}")
    if not np.all(np.isfinite(mean)):
        raise ValueError("mean has non-finite entries")
    d = mean.shape[0]
    cov = as_covariance(cov, d)
    chol = check_covariance(cov, d)
    log_Z = 0.5 * d * np.log(2 * np.pi) + np.sum(np.log(np.diag(chol)))
    return Gaussian(
        dim=d,
        log_Z=float(log_Z),
        mode_weights=np.ones(1),
        num_modes=1,
        mean=mean,
        cov=cov,
        chol=chol,
        chol_inv=np.linalg.inv(chol),
    )


def as_covariance(cov, d: int, what: str = "cov") -> np.ndarray:
    """Expand a scalar variance, a vector of variances or a matrix into a ``(d, d)`` matrix."""
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim == 0:
        if not cov > 0:
            raise ValueError(f"{what} variance must be > 0, got {float(cov)}")
        return float(cov) * np.eye(d)
    if cov.ndim == 1:
        if cov.shape != (d,):
            raise ValueError(f"{what} as a vector of variances must have shape ({d},), got {cov.shape}")
        if not np.all(cov > 0):
            raise ValueError(f"{what} variances must be > 0")
        return np.diag(cov)
    return cov
