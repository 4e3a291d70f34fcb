"""Base distributions p_0(z) of a normalizing flow.

A base is a :class:`Base` NamedTuple of pure functions over its own ``params`` (a plain dict,
possibly empty), stored under ``params["base"]`` in the flow's params pytree:

* ``init(key) -> params``;
* ``sample_and_log_prob(params, key, n) -> (z, log_p0)`` with shapes ``(n, dim)``, ``(n,)``;
* ``log_prob(params, z) -> log_p0`` for ``z`` of shape ``(..., dim)``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.types import Array, Params, PRNGKey

_HIGHEST = jax.lax.Precision.HIGHEST

_LOG_2PI = float(np.log(2.0 * np.pi))


class Base(NamedTuple):
    """A base distribution p_0 as pure functions over ``params`` (see the module docstring)."""

    init: Callable[[PRNGKey], Params]
    sample_and_log_prob: Callable[[Params, PRNGKey, int], tuple[Array, Array]]
    log_prob: Callable[[Params, Array], Array]
    dim: int


def _float_dtype() -> Any:
    """The default float dtype (float64 under ``jax_enable_x64``, else float32)."""
    return jnp.zeros(()).dtype


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return int(dim)


def _check_event(z: Array, dim: int) -> None:
    if z.ndim < 1 or z.shape[-1] != dim:
        raise ValueError(f"expected an array of shape (..., {dim}), got shape {z.shape}")


def standard_normal(dim: int) -> Base:
    r"""Standard normal base, no parameters.

    .. math:: \log p_0(z) = -\tfrac12 \lVert z\rVert^2 - \tfrac{d}{2}\log 2\pi .
    """
    dim = _check_dim(dim)

    def init(key: PRNGKey) -> Params:
        del key
        return {}

    def log_prob(params: Params, z: Array) -> Array:
        del params
        z = jnp.asarray(z)
        _check_event(z, dim)
        return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * dim * _LOG_2PI

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        z = jax.random.normal(key, (n, dim), dtype=_float_dtype())
        return z, log_prob(params, z)

    return Base(init, sample_and_log_prob, log_prob, dim)


def diagonal_gaussian(dim: int) -> Base:
    r"""Diagonal Gaussian base with learnable mean and log-scale (both zero at init).

    ``params = {"loc": (dim,), "log_scale": (dim,)}``, :math:`\sigma = e^{\text{log\_scale}}`:

    .. math:: \log p_0(z) = -\tfrac12 \sum_i \Big(\frac{z_i-\mu_i}{\sigma_i}\Big)^2
              - \sum_i \log\sigma_i - \tfrac{d}{2}\log 2\pi .
    """
    dim = _check_dim(dim)

    def init(key: PRNGKey) -> Params:
        del key
        zeros = jnp.zeros((dim,), _float_dtype())
        return {"loc": zeros, "log_scale": zeros}

    def log_prob(params: Params, z: Array) -> Array:
        z = jnp.asarray(z)
        _check_event(z, dim)
        u = (z - params["loc"]) * jnp.exp(-params["log_scale"])
        return (
            -0.5 * jnp.sum(u * u, axis=-1)
            - jnp.sum(params["log_scale"])
            - 0.5 * dim * _LOG_2PI
        )

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        eps = jax.random.normal(key, (n, dim), dtype=_float_dtype())
        z = params["loc"] + jnp.exp(params["log_scale"]) * eps
        return z, log_prob(params, z)

    return Base(init, sample_and_log_prob, log_prob, dim)


def informed_gaussian(precision: Any, mean: Any = None) -> Base:
    r"""Fixed Gaussian base with a given precision matrix P (no learnable parameters).

    .. math:: \log p_0(z) = -\tfrac12 (z-m)^\top P (z-m) + \tfrac12 \log\det P
              - \tfrac{d}{2}\log 2\pi ,

    sampled as :math:`z = m + L^{-\top}\varepsilon` with :math:`P = L L^\top` (Cholesky,
    computed once in float64) and :math:`\varepsilon \sim \mathcal N(0, I)`. For the 1-D
    phi^4 chain, :func:`phi4_1d_precision` builds the "coupled" precision of the lecture
    slides.

    Raises
    ------
    ValueError
        If ``precision`` is not a square, symmetric, positive-definite matrix, or ``mean``
        does not have shape ``(dim,)``.
    """
    p = np.asarray(precision, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] < 1:
        raise ValueError(f"precision must be a square (dim, dim) matrix, got shape {p.shape}")
    if not np.allclose(p, p.T, rtol=1e-10, atol=1e-12 * np.abs(p).max()):
        raise ValueError("precision must be symmetric")
    try:
        chol = np.linalg.cholesky(p)
    except np.linalg.LinAlgError as err:
        raise ValueError("precision must be positive definite") from err
    dim = p.shape[0]
    m = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
    if m.shape != (dim,):
        raise ValueError(f"mean must have shape ({dim},), got {m.shape}")
    # z - m = eps @ inv(L)  (row vectors)  has covariance inv(L)^T inv(L) = inv(P).
    inv_chol = np.linalg.inv(chol)
    half_log_det = float(np.sum(np.log(np.diag(chol))))

    def init(key: PRNGKey) -> Params:
        del key
        return {}

    def log_prob(params: Params, z: Array) -> Array:
        del params
        z = jnp.asarray(z)
        _check_event(z, dim)
        dt = z.dtype
        # HIGHEST: on GPUs the default float32 matmul is TF32 (10-bit mantissa), which moved
        # log q by up to 1e-2 and made log_prob(x) disagree with sample_and_log_prob's log q
        u = jnp.matmul(z - jnp.asarray(m, dt), jnp.asarray(chol, dt), precision=_HIGHEST)  # L^T (z - m)
        return -0.5 * jnp.sum(u * u, axis=-1) + half_log_det - 0.5 * dim * _LOG_2PI

    def sample_and_log_prob(params: Params, key: PRNGKey, n: int) -> tuple[Array, Array]:
        dt = _float_dtype()
        eps = jax.random.normal(key, (n, dim), dtype=dt)
        z = jnp.asarray(m, dt) + jnp.matmul(eps, jnp.asarray(inv_chol, dt), precision=_HIGHEST)
        log_p = -0.5 * jnp.sum(eps * eps, axis=-1) + half_log_det - 0.5 * dim * _LOG_2PI
        return z, log_p

    return Base(init, sample_and_log_prob, log_prob, dim)


def phi4_1d_precision(
    num_sites: int, a: float = 0.1, beta: float = 20.0, mass: float | None = None
) -> np.ndarray:
    r"""Precision of the "coupled" Gaussian base for the 1-D phi^4 chain (Dirichlet ends).

    The Dirichlet-Laplacian part of :math:`\beta U` plus a positive mass term
    (Gabrié, Rotskoff & Vanden-Eijnden, PNAS 2022):

    .. math:: P = \beta\,\big[a N\,(2 I - A) + \mu I\big],\qquad \mu = 1/(aN)\ \text{by default},

    with ``N = num_sites`` and A the nearest-neighbour adjacency of the open chain. Returns a
    float64 numpy array of shape ``(N, N)`` for :func:`informed_gaussian`.
    """
    n = _check_dim(num_sites)
    if not a > 0 or not beta > 0:
        raise ValueError(f"a and beta must be positive, got a={a}, beta={beta}")
    mu = 1.0 / (a * n) if mass is None else float(mass)
    if not mu > 0:
        raise ValueError(f"mass must be positive, got {mu}")
    adj = np.eye(n, k=1) + np.eye(n, k=-1)
    return beta * (a * n * (2.0 * np.eye(n) - adj) + mu * np.eye(n))
