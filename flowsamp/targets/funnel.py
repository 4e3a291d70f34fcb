"""Neal's funnel (Neal, Ann. Statist. 31, 705 (2003))."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, as_points, check_positive, float_dtype

__all__ = ["Funnel", "funnel"]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Funnel(Target):
    r"""Neal's funnel: :math:`v = x_0 \sim \mathcal N(0, \sigma_v^2)`, :math:`x_{1..d-1} \mid v \sim \mathcal N(0, e^{v})`.

    .. math::

        \log p(x) = -\frac{v^2}{2\sigma_v^2} - \tfrac12\ln(2\pi\sigma_v^2)
          - \sum_{i\ge1}\Big[\frac{x_i^2}{2 e^{v}} + \frac v2 + \tfrac12\ln 2\pi\Big],

    normalized (``log_Z = 0``); exact ``sample``; one mode (label 0).
    """

    scale: float  # sigma_v

    def log_prob(self, x):
        x = as_points(x, self.dim)
        v, rest = x[..., 0], x[..., 1:]
        k = self.dim - 1
        lp_v = -0.5 * (v / self.scale) ** 2 - 0.5 * np.log(2 * np.pi * self.scale**2)
        lp_x = -0.5 * jnp.sum(rest**2, axis=-1) * jnp.exp(-v) - 0.5 * k * v - 0.5 * k * np.log(2 * np.pi)
        return lp_v + lp_x

    def _sample(self, key, n):
        dt = float_dtype()
        kv, kx = jax.random.split(key)
        v = self.scale * jax.random.normal(kv, (n, 1), dtype=dt)
        x = jnp.exp(0.5 * v) * jax.random.normal(kx, (n, self.dim - 1), dtype=dt)
        return jnp.concatenate([v, x], axis=-1)

    def mode_of(self, x):
        x = as_points(x, self.dim)
        return jnp.zeros(x.shape[:-1], jnp.int32)


def funnel(dim: int = 10, scale: float = 3.0) -> Funnel:
    """Neal's funnel in ``dim`` dimensions (default 10; ``x[0]`` is v with std ``scale`` = 3).

    Returns
    -------
    Funnel
        normalized ``log_prob`` (``log_Z = 0``), exact ``sample``.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    scale = check_positive("scale", scale)
    return Funnel(dim=int(dim), log_Z=0.0, mode_weights=np.ones(1), num_modes=1, scale=scale)
