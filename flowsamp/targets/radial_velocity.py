"""The Joker's 5-epoch radial-velocity toy (Price-Whelan et al., ApJ 837, 20 (2017)) as a flat target."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betaln

from flowsamp.base import as_key
from flowsamp.targets.base import Target, as_points, check_n, float_dtype

__all__ = [
    "RadialVelocity",
    "radial_velocity",
    "kepler_solve",
    "rv_curve",
    "RV_T",
    "RV_Y",
    "RV_SIGMA",
    "RV_P_MIN",
    "RV_P_MAX",
    "PERIOD_MODE_EDGES",
    "PERIOD_EDGES",
]

# The one definition of The Joker's toy model (Price-Whelan et al. 2017): data, prior constants,
# Kepler solver and velocity curve. ``fs.numpyro.models`` builds its numpyro models from these.
# Data: times [d], velocities [km/s], uncertainties [km/s] (The Joker's 5-epoch toy data set).
RV_T = np.array([0.0, 49.452, 95.393, 127.587, 190.408])
RV_Y = np.array([38.77, 39.70, 37.45, 38.31, 38.31])
RV_SIGMA = np.array([0.184, 0.261, 0.112, 0.155, 0.223])
RV_P_MIN, RV_P_MAX = 2.0, 256.0  # prior range of the period [d]
E_ALPHA, E_BETA = 0.867, 3.03  # Kipping (2013) eccentricity prior
SIGMA_K0 = 30.0  # km/s at P = 365.25 d, e = 0
SIGMA_V0 = 100.0  # km/s
#: Period intervals [d] whose posterior masses are compared with the brute-force reference:
#: the many short-period peaks (P < 40 d), the main peak near 61 d and the one near 130 d
#: (edges in the empty gaps of the reference ln P histogram).
PERIOD_MODE_EDGES = (RV_P_MIN, 40.0, 90.0, RV_P_MAX)
#: interior edges [d] of the period modes used by ``mode_of``: P < 40, 40 <= P < 90, P >= 90
PERIOD_EDGES = PERIOD_MODE_EDGES[1:-1]
#: Newton steps of :func:`kepler_solve` (quadratic convergence from Danby's start; 25 leaves
#: the residual at rounding level for every e < 1 tested, see the tests)
KEPLER_ITERS = 25

_NAMES = ("u_lnP", "u_e", "omega_x", "omega_y", "M0_x", "M0_y", "K", "v0")


def _newton(M, e, num_iter: int):
    M = jnp.mod(M, 2.0 * jnp.pi)
    E0 = M + 0.85 * e * jnp.sign(jnp.sin(M))  # Danby's start: Newton converges for all e < 1

    def body(_, E):
        return E - (E - e * jnp.sin(E) - M) / (1.0 - e * jnp.cos(E))

    return jax.lax.fori_loop(0, num_iter, body, E0)


@jax.custom_jvp
def kepler_solve(M, e):
    r"""Eccentric anomaly E with :math:`E - e\sin E = M` (``M`` reduced to :math:`[0, 2\pi)`).

    Newton's method (:data:`KEPLER_ITERS` steps) from :math:`E_0 = M + 0.85\,e\,\mathrm{sign}(\sin M)`
    (Danby 1987), which converges for :math:`0 \le e < 1`. Derivatives by the implicit function
    theorem, :math:`dE = (dM + \sin E\, de) / (1 - e\cos E)`, so gradients cost one solve.
    """
    return _newton(M, e, KEPLER_ITERS)


@kepler_solve.defjvp
def _kepler_solve_jvp(primals, tangents):
    M, e = primals
    dM, de = tangents
    E = kepler_solve(M, e)
    return E, (dM + jnp.sin(E) * de) / (1.0 - e * jnp.cos(E))


def rv_curve(t, P, e, omega, M0, K, v0):
    r"""Keplerian radial velocity :math:`v(t) = v_0 + K[\cos(\omega + f) + e\cos\omega]`,

    with mean anomaly :math:`M = 2\pi t / P - M_0`, eccentric anomaly from Kepler's equation
    (:func:`kepler_solve`) and true anomaly
    :math:`f = 2\,\mathrm{atan2}(\sqrt{1+e}\sin(E/2), \sqrt{1-e}\cos(E/2))`.
    Parameters broadcast against ``t``.
    """
    M = 2.0 * jnp.pi * t / P - M0
    E = kepler_solve(M, jnp.broadcast_to(e, jnp.shape(M)))
    f = 2.0 * jnp.arctan2(jnp.sqrt(1.0 + e) * jnp.sin(0.5 * E), jnp.sqrt(1.0 - e) * jnp.cos(0.5 * E))
    return v0 + K * (jnp.cos(omega + f) + e * jnp.cos(omega))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class RadialVelocity(Target):
    r"""Posterior of a Keplerian orbit given five radial velocities, on an unconstrained space (dim 8).

    Coordinates ``x = (u_lnP, u_e, omega_x, omega_y, M0_x, M0_y, K, v0)``:

    * :math:`\ln P = \ln 2 + (\ln 256 - \ln 2)\,\mathrm{sigmoid}(u_{\ln P})`, so
      :math:`p(P) \propto 1/P` on [2, 256] d;
    * :math:`e = \mathrm{sigmoid}(u_e)`, :math:`e \sim \mathrm{Beta}(0.867, 3.03)`;
    * :math:`\omega = \mathrm{atan2}(\omega_y, \omega_x)` with :math:`(\omega_x, \omega_y) \sim N(0, I_2)`,
      hence :math:`\omega \sim U(-\pi, \pi)` (same for :math:`M_0`), with no boundary;
    * :math:`K \sim N(0, \sigma_K^2)`, :math:`\sigma_K = 30 (P/365.25)^{-1/3}(1-e^2)^{-1/2}` km/s;
      :math:`v_0 \sim N(0, 100^2)`.

    ``log_prob(x) = log_prior(x) + log_likelihood(x)`` where ``log_prior`` is the prior
    pushed forward to ``x`` (Jacobians included; it integrates to 1) and the likelihood is
    :math:`\prod_n N(y_n; v(t_n), \sigma_n^2)`. Kepler's equation is solved by a fixed
    number of Newton steps. ``log_Z`` is unknown (``None``). ``mode_of`` labels the period
    interval: 0 for P < 40 d, 1 for 40 <= P < 90 d, 2 for P >= 90 d.
    """

    t: np.ndarray
    y: np.ndarray
    sigma: np.ndarray

    names = _NAMES

    def _unpack(self, x):
        ln_lo, ln_hi = np.log(RV_P_MIN), np.log(RV_P_MAX)
        u_p, u_e = x[..., 0], x[..., 1]
        P = jnp.exp(ln_lo + (ln_hi - ln_lo) * jax.nn.sigmoid(u_p))
        e = jax.nn.sigmoid(u_e)
        omega = jnp.arctan2(x[..., 3], x[..., 2])
        M0 = jnp.arctan2(x[..., 5], x[..., 4])
        return P, e, omega, M0, x[..., 6], x[..., 7]

    def log_prior(self, x):
        """Log density of the prior pushed forward to the unconstrained ``x`` (normalized)."""
        x = as_points(x, self.dim)
        u_p, u_e = x[..., 0], x[..., 1]
        P, e, _, _, K, v0 = self._unpack(x)
        log_sig = jax.nn.log_sigmoid
        # ln P uniform on [ln 2, ln 256]: density of u is sigmoid'(u) = s (1 - s)
        lp_p = log_sig(u_p) + log_sig(-u_p)
        # e ~ Beta(a, b): density of u is Beta(e) e (1 - e)
        lp_e = E_ALPHA * log_sig(u_e) + E_BETA * log_sig(-u_e) - betaln(E_ALPHA, E_BETA)
        lp_planes = -0.5 * jnp.sum(x[..., 2:6] ** 2, axis=-1) - 2.0 * np.log(2.0 * np.pi)
        log_sk = np.log(SIGMA_K0) - (jnp.log(P) - np.log(365.25)) / 3.0 - 0.5 * jnp.log1p(-(e**2))
        lp_k = -0.5 * (K * jnp.exp(-log_sk)) ** 2 - log_sk - 0.5 * np.log(2.0 * np.pi)
        lp_v0 = -0.5 * (v0 / SIGMA_V0) ** 2 - np.log(SIGMA_V0) - 0.5 * np.log(2.0 * np.pi)
        return lp_p + lp_e + lp_planes + lp_k + lp_v0

    def log_likelihood(self, x):
        """:math:`\\sum_n \\log N(y_n; v(t_n), \\sigma_n^2)`."""
        x = as_points(x, self.dim)
        dt = x.dtype
        P, e, omega, M0, K, v0 = (p[..., None] for p in self._unpack(x))
        v = rv_curve(jnp.asarray(self.t, dt), P, e, omega, M0, K, v0)
        s = jnp.asarray(self.sigma, dt)
        r = (jnp.asarray(self.y, dt) - v) / s
        return jnp.sum(-0.5 * r * r - jnp.log(s) - 0.5 * np.log(2 * np.pi), axis=-1)

    def log_prob(self, x):
        return self.log_prior(x) + self.log_likelihood(x)

    def to_physical(self, x) -> dict:
        """Physical parameters ``{"P", "e", "omega", "M0", "K", "v0"}`` (angles in (-pi, pi])."""
        x = as_points(x, self.dim)
        return dict(zip(("P", "e", "omega", "M0", "K", "v0"), self._unpack(x)))

    def mode_of(self, x):
        P = self.to_physical(x)["P"]
        return jnp.searchsorted(jnp.asarray(PERIOD_EDGES, P.dtype), P, side="right").astype(jnp.int32)

    def sample_prior(self, key, n: int):
        """``n`` exact draws of ``x`` from the (pushed-forward) prior, shape ``(n, 8)``."""
        return _jit_sample_prior(as_key(key), check_n(n))


@functools.partial(jax.jit, static_argnums=1)
def _jit_sample_prior(key, n):
    dt = float_dtype()
    k = jax.random.split(key, 5)
    u_p = jax.random.logistic(k[0], (n,), dtype=dt)
    e = jax.random.beta(k[1], E_ALPHA, E_BETA, (n,), dtype=dt)
    planes = jax.random.normal(k[2], (n, 4), dtype=dt)
    ln_lo, ln_hi = np.log(RV_P_MIN), np.log(RV_P_MAX)
    P = jnp.exp(ln_lo + (ln_hi - ln_lo) * jax.nn.sigmoid(u_p))
    sk = SIGMA_K0 * (P / 365.25) ** (-1.0 / 3.0) / jnp.sqrt(1.0 - e**2)
    K = sk * jax.random.normal(k[3], (n,), dtype=dt)
    v0 = SIGMA_V0 * jax.random.normal(k[4], (n,), dtype=dt)
    u_e = jnp.log(e) - jnp.log1p(-e)
    return jnp.concatenate([u_p[:, None], u_e[:, None], planes, K[:, None], v0[:, None]], axis=-1)


def radial_velocity(t=None, y=None, sigma=None) -> RadialVelocity:
    """The Joker's radial-velocity posterior (default: its 5-epoch toy data set).

    Parameters
    ----------
    t, y, sigma : array_like, optional
        Observation times [d], velocities and uncertainties [km/s] (same length).

    Returns
    -------
    RadialVelocity
        8-D unconstrained target; ``to_physical(x)``, ``log_prior``, ``log_likelihood``,
        ``sample_prior``; ``mode_of`` = period interval (3 labels); ``log_Z = None``.
    """
    t = RV_T if t is None else np.asarray(t, np.float64)
    y = RV_Y if y is None else np.asarray(y, np.float64)
    sigma = RV_SIGMA if sigma is None else np.asarray(sigma, np.float64)
    if not (t.ndim == y.ndim == sigma.ndim == 1 and t.shape == y.shape == sigma.shape and len(t) > 0):
        raise ValueError(f"t, y, sigma must be 1-D of equal length, got {t.shape}, {y.shape}, {sigma.shape}")
    if not np.all(sigma > 0):
        raise ValueError("sigma must be > 0")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(y))):
        raise ValueError("t and y must be finite")
    return RadialVelocity(dim=8, log_Z=None, mode_weights=None, num_modes=3, t=t, y=y, sigma=sigma)
