r"""Affine preconditioning: a fixed map :math:`x = \mu + L\,y` fitted to samples, wrapped around any flow.

On near-Gaussian posteriors in 30-500 dimensions most of what a flow must learn is the
mean and the covariance; a coupling flow learns a strongly correlated, ill-conditioned
covariance slowly and badly (each layer sees half the coordinates). Fitting
:math:`\mu` and a Cholesky factor :math:`L` of the regularised sample covariance first, and
letting the nonlinear layers work in the whitened coordinates :math:`y = L^{-1}(x - \mu)`,
is the classical preconditioning of adaptive MCMC (Haario et al. 2001; Stan's dense metric)
applied to the flow (as NeuTra-style samplers do, Hoffman et al. 2019, arXiv:1903.03704):

.. math::
    x = \mu + L\,f_\theta(z), \qquad
    \log q(x) = \log q_\theta\big(L^{-1}(x - \mu)\big) - \sum_i \log L_{ii} .

:math:`L` is lower triangular (full covariance) up to ``max_full_dim`` dimensions
(default :data:`MAX_FULL_DIM` = 300; a full factor then costs :math:`O(d^2)` per point and
needs at least :math:`2d` samples), and diagonal above, or when there are fewer samples.
The map is fixed (not trained); the wrapped flow keeps the inner flow's ``params``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from flowsamp.base import Flow
from flowsamp.types import Array, Params, PRNGKey

__all__ = ["MAX_FULL_DIM", "Affine", "PreconditionedFlow", "affine_wrapped", "fit_affine", "preconditioned"]

MAX_FULL_DIM = 300
"""Largest dimension for which :func:`fit_affine` fits a full (dense) covariance by default."""

_HIGHEST = jax.lax.Precision.HIGHEST


class Affine(NamedTuple):
    r"""A fixed affine map :math:`x = \text{loc} + \text{scale}\cdot y` (float64 numpy arrays).

    ``loc`` (d,); ``scale`` either a lower-triangular (d, d) Cholesky factor or a (d,)
    vector of standard deviations (diagonal map).
    """

    loc: np.ndarray
    scale: np.ndarray

    @property
    def is_full(self) -> bool:
        return self.scale.ndim == 2

    @property
    def log_det(self) -> float:
        """:math:`\\log|\\det L| = \\sum_i \\log L_{ii}`."""
        diag = np.diag(self.scale) if self.is_full else self.scale
        return float(np.sum(np.log(diag)))


def fit_affine(samples: Array, *, max_full_dim: int = MAX_FULL_DIM, full: bool | None = None) -> Affine:
    r"""Fit :math:`\mu` and :math:`L` to ``samples`` (n, d), in float64.

    :math:`\mu` is the sample mean. With :math:`S` the sample covariance, the full fit
    regularises it as Stan's warm-up does (Stan Reference Manual, "HMC algorithm
    parameters"), here relative to each coordinate's own variance so that it is
    scale-free,

    .. math:: \Sigma = \frac{n}{n+5}\,S + \frac{5}{n+5}\,10^{-3}\,\mathrm{diag}(S),
              \qquad L = \mathrm{chol}(\Sigma),

    and the diagonal fit takes :math:`L = \mathrm{diag}(\sqrt{S_{ii}})`. Coordinates with
    zero sample variance get scale 1.

    Parameters
    ----------
    samples
        ``(n, d)`` draws, n >= 2, all finite.
    max_full_dim
        Full covariance when ``d <= max_full_dim`` and ``n >= 2 d``; diagonal otherwise.
    full
        Force the full (``True``) or diagonal (``False``) fit; ``None`` applies the rule above.

    Returns
    -------
    Affine
        ``loc`` (d,) and ``scale`` ((d, d) lower triangular, or (d,) standard deviations).
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"samples must have shape (n >= 2, dim), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain non-finite values")
    n, d = x.shape
    if full is None:
        full = d <= max_full_dim and n >= 2 * d
    loc = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)
    var = np.where(var > 0, var, 1.0)
    if not full:
        return Affine(loc, np.sqrt(var))
    cov = np.cov(x, rowvar=False).reshape(d, d)
    cov = (n / (n + 5.0)) * cov + (5.0 / (n + 5.0)) * 1e-3 * np.diag(var)
    cov[np.diag_indices(d)] = np.where(np.diag(cov) > 0, np.diag(cov), 1.0)
    return Affine(loc, np.linalg.cholesky(cov))


def preconditioned(flow: Flow, affine: Affine) -> Flow:
    r"""The flow :math:`x = \mu + L\, f_\theta(z)` with ``flow`` as :math:`f_\theta`.

    ``params`` are the inner flow's (``init`` is ``flow.init``); the affine map is fixed.
    ``forward`` returns :math:`\log|\det \partial x/\partial z| = \log|\det \partial f_\theta|
    + \sum_i \log L_{ii}`, ``inverse`` its negative at the inverse point, and
    ``log_prob(params, x) = flow.log_prob(params, L^{-1}(x-\mu)) - \sum_i \log L_{ii}``.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a flowsamp Flow, got {type(flow).__name__}")
    if not isinstance(affine, Affine):
        raise TypeError(f"affine must be an Affine (see fit_affine), got {type(affine).__name__}")
    dim = flow.dim
    loc, scale = np.asarray(affine.loc, np.float64), np.asarray(affine.scale, np.float64)
    if loc.shape != (dim,) or scale.shape not in ((dim,), (dim, dim)):
        raise ValueError(f"affine does not match the flow's dim {dim}: loc {loc.shape}, scale {scale.shape}")
    full = scale.ndim == 2
    if full and not np.allclose(scale, np.tril(scale)):
        raise ValueError("affine.scale must be lower triangular")
    if not np.all((np.diag(scale) if full else scale) > 0):
        raise ValueError("affine.scale must have a positive diagonal")
    out = affine_wrapped(flow, (loc, scale, affine.log_det))
    out.inner, out.affine = flow, Affine(loc, scale)  # what a program that takes the map as data needs
    return out


class PreconditionedFlow(Flow):
    """The :class:`~flowsamp.base.Flow` :func:`preconditioned` returns, with the wrapped flow
    (``inner``) and the map (``affine``) kept as attributes (``None`` when built by
    :func:`affine_wrapped`)."""

    inner = None
    affine = None


def affine_wrapped(flow: Flow, data: tuple) -> PreconditionedFlow:
    r"""The flow :math:`x = \mu + L\, f_\theta(z)` with the map given as ``data = (loc, scale,
    log_det)`` arrays (``scale`` (d, d) lower triangular or (d,); ``log_det`` =
    :math:`\sum_i \log L_{ii}`), unchecked: they may be traced, so that one jitted program
    serves every fitted map of one shape (:func:`preconditioned` checks an :class:`Affine`
    and calls this with its arrays; the functions are the same, so are the numbers)."""
    dim = flow.dim
    loc, scale, log_det = data
    full = scale.ndim == 2

    def _apply(y: Array) -> Array:
        dt = y.dtype
        if full:
            out = jnp.matmul(y, jnp.asarray(scale, dt).T, precision=_HIGHEST)
        else:
            out = y * jnp.asarray(scale, dt)
        return out + jnp.asarray(loc, dt)

    def _whiten(x: Array) -> Array:
        dt = x.dtype
        r = x - jnp.asarray(loc, dt)
        if not full:
            return r / jnp.asarray(scale, dt)
        flat = r.reshape(-1, dim)
        y = solve_triangular(jnp.asarray(scale, dt), flat.T, lower=True).T
        return y.reshape(r.shape)

    def _check(x: Array, name: str) -> Array:
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != dim:
            raise ValueError(f"{name} must have shape (..., {dim}), got {x.shape}")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.zeros(()).dtype)
        return x

    def forward(params: Params, z: Array) -> tuple[Array, Array]:
        y, ld = flow.forward(params, _check(z, "z"))
        return _apply(y), ld + jnp.asarray(log_det, ld.dtype)

    def inverse(params: Params, x: Array) -> tuple[Array, Array]:
        z, ld = flow.inverse(params, _whiten(_check(x, "x")))
        return z, ld - jnp.asarray(log_det, ld.dtype)

    def log_prob(params: Params, x: Array) -> Array:
        lq = flow.log_prob(params, _whiten(_check(x, "x")))
        return lq - jnp.asarray(log_det, lq.dtype)

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        y, lq = flow.sample_and_log_prob(params, key, n)
        return _apply(y), lq - jnp.asarray(log_det, lq.dtype)

    return PreconditionedFlow(flow.init, sample_and_log_prob, log_prob, forward, inverse, dim)
