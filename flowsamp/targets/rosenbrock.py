"""pocoMC's Rosenbrock example: paired Rosenbrock likelihood with a uniform prior box."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, special

from flowsamp.targets.base import Target, as_points, check_positive, float_dtype, rejection_sample

__all__ = ["Rosenbrock", "rosenbrock"]


@functools.lru_cache(maxsize=8)
def _log_z_pair(bound: float) -> float:
    r"""ln of :math:`\int_{[-B,B]^2} e^{-10(a^2-b)^2-(a-1)^2}\,da\,db / (2B)^2`.

    The b-integral is closed form (erf); the a-integral is adaptive quadrature.
    """
    def inner(a):
        s = np.sqrt(10.0)
        return np.exp(-((a - 1.0) ** 2)) * np.sqrt(np.pi / 10.0) * 0.5 * (
            special.erf(s * (bound - a * a)) + special.erf(s * (bound + a * a))
        )

    z, _ = integrate.quad(inner, -bound, bound, points=[1.0], epsabs=0.0, epsrel=1e-13, limit=200)
    return float(np.log(z) - 2.0 * np.log(2.0 * bound))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Rosenbrock(Target):
    r"""pocoMC's Rosenbrock posterior on the box :math:`[-B, B]^d` (``d`` even, pairs ``(x[2i], x[2i+1])``).

    .. math::

        \log\tilde p(x) = -\sum_{i} \big[10\,(x_{2i}^2 - x_{2i+1})^2 + (x_{2i} - 1)^2\big]
          - d\ln(2B) \quad\text{inside the box, } -\infty \text{ outside}

    (likelihood times the uniform prior density). ``log_Z`` is the evidence, exact:
    per pair the ``x_{2i+1}`` integral is an erf and the ``x_{2i}`` integral 1-D quadrature.
    Exact ``sample``: ``x_{2i}`` by rejection from :math:`\mathcal N(1, 1/2)`,
    ``x_{2i+1} | x_{2i}`` a truncated normal. One mode (label 0).
    """

    bound: float

    def log_prob(self, x):
        x = as_points(x, self.dim)
        a, b = x[..., 0::2], x[..., 1::2]
        log_like = -jnp.sum(10.0 * (a * a - b) ** 2 + (a - 1.0) ** 2, axis=-1)
        inside = jnp.all(jnp.abs(x) <= self.bound, axis=-1)
        log_prior = -self.dim * np.log(2.0 * self.bound)
        return jnp.where(inside, log_like + log_prior, -jnp.inf)

    def _sample(self, key, n):
        dt = float_dtype()
        m = n * (self.dim // 2)
        ka, kb = jax.random.split(key)
        B, s = self.bound, np.sqrt(10.0)

        def propose(key, size):
            return 1.0 + np.sqrt(0.5) * jax.random.normal(key, (size,), dtype=dt)

        def log_accept(a):
            # marginal of a / N(1, 1/2) is proportional to P(|b| <= B | a) <= 1
            c = 0.5 * (jax.scipy.special.erf(s * (B - a * a)) + jax.scipy.special.erf(s * (B + a * a)))
            return jnp.where(jnp.abs(a) <= B, jnp.log(jnp.maximum(c, 0.0)), -jnp.inf)

        a = rejection_sample(ka, m, propose, log_accept)
        sd = 1.0 / np.sqrt(20.0)
        z = jax.random.truncated_normal(kb, (-B - a * a) / sd, (B - a * a) / sd, (m,), dtype=dt)
        b = a * a + sd * z
        return jnp.stack([a, b], axis=-1).reshape(n, self.dim)

    def mode_of(self, x):
        x = as_points(x, self.dim)
        return jnp.zeros(x.shape[:-1], jnp.int32)


def rosenbrock(dim: int = 10, bound: float = 10.0) -> Rosenbrock:
    """pocoMC's ``dim``-D Rosenbrock example (default 10-D) with uniform prior ``U(-bound, bound)``.

    Returns
    -------
    Rosenbrock
        ``log_prob`` = log-likelihood + log prior density; exact ``log_Z`` (the evidence)
        and exact ``sample``.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even int >= 2, got {dim!r}")
    bound = check_positive("bound", bound)
    log_Z = (dim // 2) * _log_z_pair(bound)
    return Rosenbrock(dim=int(dim), log_Z=log_Z, mode_weights=np.ones(1), num_modes=1, bound=bound)
