"""Example numpyro models with their data: eight schools and The Joker's radial-velocity toy.

Data are literal published values (sources in the comments), never read from files.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import numpyro
import numpyro.distributions as dist

from flowsamp.targets.radial_velocity import (
    E_ALPHA as _E_ALPHA,
    E_BETA as _E_BETA,
    PERIOD_MODE_EDGES,
    RV_P_MAX,
    RV_P_MIN,
    RV_SIGMA,
    RV_T,
    RV_Y,
    SIGMA_K0 as _SIGMA_K0,
    SIGMA_V0 as _SIGMA_V0,
    kepler_solve,
    rv_curve,
)
from flowsamp.types import Array

__all__ = [
    "EIGHT_SCHOOLS_Y",
    "EIGHT_SCHOOLS_SIGMA",
    "eight_schools",
    "eight_schools_centered",
    "RV_T",
    "RV_Y",
    "RV_SIGMA",
    "RV_P_MIN",
    "RV_P_MAX",
    "PERIOD_MODE_EDGES",
    "period_mode_of",
    "kepler_eccentric_anomaly",
    "rv_curve",
    "radial_velocity",
    "rv_log_marginal_likelihood",
    "radial_velocity_marginal",
]

# Rubin (1981), J. Educ. Stat. 6, 377; Gelman et al., Bayesian Data Analysis, Table 5.2.
EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma: Array, y: Array | None = None) -> None:
    """Non-centred eight schools: ``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``,
    ``theta = mu + tau * theta_t`` with ``theta_t ~ N(0, 1)``, ``y ~ N(theta, sigma)``."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta_t = numpyro.sample("theta_t", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_t)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_centered(sigma: Array, y: Array | None = None) -> None:
    """Centred eight schools: ``mu ~ N(0, 5)``, ``tau ~ HalfCauchy(5)``, ``theta ~ N(mu, tau)``,
    ``y ~ N(theta, sigma)``; the funnel between ``tau`` and ``theta`` makes HMC diverge."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(sigma)):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


# The Joker's toy data, prior constants, Kepler solver and velocity curve have one definition,
# in flowsamp.targets.radial_velocity; the numpyro models below are built from it.
#: alias of :func:`flowsamp.targets.radial_velocity.kepler_solve`
kepler_eccentric_anomaly = kepler_solve


def _uniform_angle(name: str) -> Array:
    # A uniform angle without boundaries: (x, y) ~ N(0, I_2) and angle = atan2(y, x), which is
    # exactly Uniform(-pi, pi) a priori; the sampler moves on the plane, not on an interval.
    xy = numpyro.sample(f"{name}_xy", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    return numpyro.deterministic(name, jnp.arctan2(xy[1], xy[0]))


def radial_velocity(t: Array = RV_T, sigma: Array = RV_SIGMA, y: Array | None = RV_Y) -> None:
    """The Joker's Keplerian orbit model (Price-Whelan et al. 2017) for radial velocities.

    Priors: :math:`\\ln P \\sim U(\\ln 2, \\ln 256)` (so :math:`p(P) \\propto 1/P` on
    [2, 256] d); :math:`e \\sim \\mathrm{Beta}(0.867, 3.03)`; :math:`\\omega, M_0` uniform
    angles; :math:`K \\sim N(0, \\sigma_K^2)` with
    :math:`\\sigma_K = 30\\,(P / 365.25)^{-1/3} (1 - e^2)^{-1/2}` km/s;
    :math:`v_0 \\sim N(0, 100^2)`; :math:`y_n \\sim N(v(t_n), \\sigma_n^2)`.
    Sites: ``ln_P``, ``e``, ``omega_xy``, ``M0_xy``, ``K``, ``v0`` (latent) and the
    deterministic ``P``, ``omega``, ``M0``.
    """
    ln_P = numpyro.sample("ln_P", dist.Uniform(math.log(RV_P_MIN), math.log(RV_P_MAX)))
    P = numpyro.deterministic("P", jnp.exp(ln_P))
    e = numpyro.sample("e", dist.Beta(_E_ALPHA, _E_BETA))
    omega = _uniform_angle("omega")
    M0 = _uniform_angle("M0")
    sigma_K = _SIGMA_K0 * (P / 365.25) ** (-1.0 / 3.0) / jnp.sqrt(1.0 - e**2)
    K = numpyro.sample("K", dist.Normal(0.0, sigma_K))
    v0 = numpyro.sample("v0", dist.Normal(0.0, _SIGMA_V0))
    with numpyro.plate("epoch", len(t)):
        numpyro.sample("y", dist.Normal(rv_curve(t, P, e, omega, M0, K, v0), sigma), obs=y)


def period_mode_of(P: Array) -> Array:
    """Index of the :data:`PERIOD_MODE_EDGES` interval that contains each period ``P`` [d]."""
    edges = jnp.asarray(PERIOD_MODE_EDGES[1:-1], dtype=jnp.result_type(float))
    return jnp.searchsorted(edges, jnp.asarray(P), side="right")


def rv_log_marginal_likelihood(
    t: Array, y: Array, sigma: Array, P: Array, e: Array, omega: Array, M0: Array
) -> Array:
    r""":math:`\ln p(y \mid P, e, \omega, M_0)` with :math:`(v_0, K)` integrated out.

    Given the non-linear parameters the model is linear-Gaussian, :math:`y = A\beta + \varepsilon`
    with :math:`A = [1, g]`, :math:`g = \cos(\omega + f) + e\cos\omega`,
    :math:`\beta = (v_0, K) \sim N(0, \Lambda)`, :math:`\Lambda = \mathrm{diag}(100^2, \sigma_K^2)`,
    so :math:`p(y \mid \cdot) = N(y; 0, \Sigma + A\Lambda A^\top)`, evaluated with the 2x2
    matrix :math:`S = \Lambda^{-1} + A^\top\Sigma^{-1}A` (Woodbury). Parameters broadcast
    over leading axes; ``t, y, sigma`` are the last axis.
    """
    s2 = sigma**2
    g = rv_curve(t, P[..., None], e[..., None], omega[..., None], M0[..., None], 1.0, 0.0)
    var_v0 = _SIGMA_V0**2
    var_K = (_SIGMA_K0 * (P / 365.25) ** (-1.0 / 3.0)) ** 2 / (1.0 - e**2)
    # Centred form: with W = sum 1/s2 and weighted means y_bar, g_bar, the textbook
    # s00 s11 - s01^2 and y'Sigma^-1 y - b'S^-1 b cancel catastrophically in float32 (v0 is
    # nearly free and y_bar ~ 38 km/s); written with centred sums every term is positive.
    lam0, lamK = 1.0 / var_v0, 1.0 / var_K
    W = jnp.sum(1.0 / s2)
    y_bar = jnp.sum(y / s2) / W
    g_bar = jnp.sum(g / s2, axis=-1) / W
    y_c, g_c = y - y_bar, g - g_bar[..., None]
    Y_c = jnp.sum(y_c * y_c / s2)
    G_c = jnp.sum(g_c * g_c / s2, axis=-1)
    B_c = jnp.sum(g_c * y_c / s2, axis=-1)
    E = lamK + G_c
    det = W * E + lam0 * (E + W * g_bar**2)  # det S, a sum of positive terms
    # y'Sigma^-1 y - b'S^-1 b, expanded in centred sums (exact algebra, no cancellation of
    # the O(W y_bar^2) terms)
    quad_resid = Y_c - ((W + lam0) * B_c**2 + 2.0 * lam0 * W * g_bar * y_bar * B_c - lam0 * W * y_bar**2 * E) / det
    logdet = jnp.sum(jnp.log(s2)) + jnp.log(var_v0) + jnp.log(var_K) + jnp.log(det)
    n = y.shape[-1]
    return -0.5 * (n * math.log(2.0 * math.pi) + logdet + quad_resid)


def radial_velocity_marginal(t: Array = RV_T, sigma: Array = RV_SIGMA, y: Array = RV_Y) -> None:
    r""":func:`radial_velocity` with :math:`(v_0, K)` marginalised analytically (The Joker's trick).

    Latent sites ``ln_P``, ``e``, ``omega_xy``, ``M0_xy`` (6 unconstrained dimensions) with the
    same priors; the likelihood is :func:`rv_log_marginal_likelihood` added as a factor. The
    posterior of :math:`(P, e, \omega, M_0)` is exactly that of :func:`radial_velocity`.
    """
    ln_P = numpyro.sample("ln_P", dist.Uniform(math.log(RV_P_MIN), math.log(RV_P_MAX)))
    P = numpyro.deterministic("P", jnp.exp(ln_P))
    e = numpyro.sample("e", dist.Beta(_E_ALPHA, _E_BETA))
    omega = _uniform_angle("omega")
    M0 = _uniform_angle("M0")
    t, y, sigma = (jnp.asarray(a) for a in (t, y, sigma))
    numpyro.factor("marginal_likelihood", rv_log_marginal_likelihood(t, y, sigma, P, e, omega, M0))
