"""Many-well target (FAB, Midgley et al. 2023): independent 2-D double wells."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate
from scipy.special import logsumexp

from flowsamp.targets.base import Target, as_points, float_dtype, rejection_sample
from flowsamp.types import Array, PRNGKey

__all__ = ["ManyWell", "many_well"]

_MAX_LABEL_WELLS = 30  # int32 labels hold 2^30 modes
_MAX_WEIGHT_WELLS = 16  # mode_weights tabulated up to 2^16 modes


def _log_f(x):
    """Unnormalized log-density of the double-well coordinate x1."""
    return -(x**4) + 6.0 * x**2 + 0.5 * x


@functools.lru_cache(maxsize=1)
def _well_constants() -> dict:
    """ln Z1 and P(x1 > 0) by adaptive quadrature, and a rejection envelope for x1.

    The envelope g is a mixture of Gaussians at the two maxima of ``_log_f`` (widths
    1.2 x their Laplace widths) plus a broad N(0, 1.5^2) covering the barrier; the
    bound ``log M = max (log f - log Z1 - log g)`` is taken on a fine grid plus a margin.
    """
    f = lambda x: np.exp(_log_f(x))  # noqa: E731
    z_neg, _ = integrate.quad(f, -np.inf, 0.0, epsabs=0.0, epsrel=1e-13)
    z_pos, _ = integrate.quad(f, 0.0, np.inf, epsabs=0.0, epsrel=1e-13)
    z1 = z_neg + z_pos
    roots = np.sort(np.real(np.roots([-4.0, 0.0, 12.0, 0.5])))
    maxima = roots[[0, 2]]  # outer roots of f' are maxima
    widths = 1.2 / np.sqrt(12.0 * maxima**2 - 12.0)
    mass = np.array([z_neg, z_pos]) / z1
    means = np.array([maxima[0], maxima[1], 0.0])
    stds = np.array([widths[0], widths[1], 1.5])
    wts = np.array([0.95 * mass[0], 0.95 * mass[1], 0.05])
    grid = np.linspace(-10.0, 10.0, 400_001)
    log_g = logsumexp(
        np.log(wts) - 0.5 * ((grid[:, None] - means) / stds) ** 2 - np.log(stds * np.sqrt(2 * np.pi)), axis=1
    )
    log_M = float(np.max(_log_f(grid) - np.log(z1) - log_g)) + 0.01
    return dict(
        log_z1=float(np.log(z1)),
        p_pos=float(z_pos / z1),
        env_means=means,
        env_stds=stds,
        env_log_w=np.log(wts),
        log_M=log_M,
    )


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class ManyWell(Target):
    r"""``dim / 2`` independent double wells; coordinates are interleaved pairs.

    Well ``k`` is ``(x[2k], x[2k+1]) = (x_1, x_2)`` with

    .. math::

        \log \tilde p(x_1, x_2) = -x_1^4 + 6 x_1^2 + \tfrac12 x_1 - \tfrac12 x_2^2 ,

    ``log_prob`` is the (unnormalized) sum over wells, and
    :math:`\log Z = \tfrac d2 [\ln Z_1 + \tfrac12 \ln 2\pi]` with :math:`Z_1` the
    quadrature of the :math:`x_1` factor. Mode label: bit ``k`` is ``[x[2k] > 0]``
    (``label = sum_k 2^k [x[2k] > 0]``), ``2^(dim/2)`` modes. ``mode_of`` needs
    ``dim/2 <= 30`` (int32 labels); for more wells use :meth:`well_signs`.
    ``mode_weights`` are tabulated for ``dim/2 <= 16``.
    """

    p_positive: float  # P(x1 > 0) in one well
    log_z1: float
    env_means: np.ndarray
    env_stds: np.ndarray
    env_log_w: np.ndarray
    log_M: float

    @property
    def num_wells(self) -> int:
        return self.dim // 2

    def log_prob(self, x: Array) -> Array:
        x = as_points(x, self.dim)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return jnp.sum(-(x1**4) + 6.0 * x1**2 + 0.5 * x1 - 0.5 * x2**2, axis=-1)

    def well_signs(self, x: Array) -> Array:
        """Per-well labels ``[x[2k] > 0]`` as int32, shape ``x.shape[:-1] + (dim/2,)``."""
        x = as_points(x, self.dim)
        return (x[..., 0::2] > 0).astype(jnp.int32)

    def mode_of(self, x: Array) -> Array:
        if self.num_wells > _MAX_LABEL_WELLS:
            raise ValueError(
                f"{self.num_wells} wells give 2^{self.num_wells} modes: too many for int32 labels; "
                "use well_signs(x) for per-well labels"
            )
        bits = self.well_signs(x)
        powers = jnp.asarray(2 ** np.arange(self.num_wells), jnp.int32)
        return jnp.sum(bits * powers, axis=-1)

    def _log_envelope(self, y: Array) -> Array:
        dt = y.dtype
        m, s = jnp.asarray(self.env_means, dt), jnp.asarray(self.env_stds, dt)
        comp = jnp.asarray(self.env_log_w, dt) - 0.5 * ((y[..., None] - m) / s) ** 2 - jnp.log(s * np.sqrt(2 * np.pi))
        return jax.nn.logsumexp(comp, axis=-1)

    def _sample(self, key: PRNGKey, n: int) -> Array:
        """Exact draws: x1 by rejection from a Gaussian-mixture envelope, x2 ~ N(0, 1)."""
        dt = float_dtype()
        k1, k2 = jax.random.split(key)
        m = n * self.num_wells

        def propose(key, size):
            kc, kz = jax.random.split(key)
            c = jax.random.categorical(kc, jnp.asarray(self.env_log_w, dt), shape=(size,))
            z = jax.random.normal(kz, (size,), dtype=dt)
            return jnp.asarray(self.env_means, dt)[c] + jnp.asarray(self.env_stds, dt)[c] * z

        def log_accept(y):
            return _log_f(y) - self.log_z1 - self._log_envelope(y) - self.log_M

        x1 = rejection_sample(k1, m, propose, log_accept).reshape(n, self.num_wells)
        x2 = jax.random.normal(k2, (n, self.num_wells), dtype=dt)
        return jnp.stack([x1, x2], axis=-1).reshape(n, self.dim)


def many_well(dim: int = 32) -> ManyWell:
    """Many-well target of even dimension ``dim`` (default 32: 16 wells, 2^16 modes).

    Returns
    -------
    ManyWell
        unnormalized ``log_prob``; ``log_Z`` from 1-D quadrature (32-D: 164.695675);
        exact ``sample``; ``mode_of`` binary code of the signs of the ``x1`` coordinates;
        ``mode_weights`` the product of per-well weights ``P(x1 > 0) = 0.844307``
        (``None`` beyond 16 wells).
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even int >= 2, got {dim!r}")
    dim = int(dim)
    c = _well_constants()
    wells = dim // 2
    log_Z = wells * (c["log_z1"] + 0.5 * np.log(2 * np.pi))
    weights = None
    if wells <= _MAX_WEIGHT_WELLS:
        bits = (np.arange(2**wells)[:, None] >> np.arange(wells)) & 1
        p = c["p_pos"]
        weights = np.prod(np.where(bits == 1, p, 1.0 - p), axis=1)
    return ManyWell(
        dim=dim,
        log_Z=float(log_Z),
        mode_weights=weights,
        num_modes=2**wells if wells <= _MAX_LABEL_WELLS else None,
        p_positive=c["p_pos"],
        log_z1=c["log_z1"],
        env_means=c["env_means"],
        env_stds=c["env_stds"],
        env_log_w=c["env_log_w"],
        log_M=c["log_M"],
    )
