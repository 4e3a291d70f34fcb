r"""Binary soft-sphere mixture in a periodic 2-D (or 3-D) box: energy and pair correlation g(r).

``num_particles`` particles, the first half of species A and the rest of species B, in a
periodic box of side :math:`L = (N/\rho)^{1/d}`, interacting by the shifted inverse-12 pair
potential of the Bernu-Hansen soft-sphere glass former (diameters
:math:`\sigma_{AA} = 1`, :math:`\sigma_{BB} = 1.4`, :math:`\sigma_{AB} = 1.2`):

.. math::
    u_{ab}(r) = \varepsilon\Big[\Big(\frac{\sigma_{ab}}{r}\Big)^{12}
                - \Big(\frac{\sigma_{ab}}{r_{c,ab}}\Big)^{12}\Big]\,[r < r_{c,ab}],
    \qquad r_{c,ab} = c\,\sigma_{ab}, \qquad
    \log p(x) = -\beta \sum_{i<j} u_{s_i s_j}(|x_i - x_j|_{\rm min.image}) .

A configuration is the flat vector ``(N * d,)``; positions need not be wrapped (minimum-image
distances). ``energy(x)`` is :math:`U/N` (in :math:`\varepsilon`); ``pair_histogram(x, edges)``
counts pairs per distance bin and ``pair_correlation`` turns a mean histogram into
:math:`g(r)` (ideal-gas normalisation on the torus, exact for :math:`r \le L/2`).

References: Bernu, Hansen, Hiwatari & Pastore, Phys. Rev. A 36, 4891 (1987); Jung, Biroli et
al. arXiv (equivariant Riemannian flow matching for glass formers on the torus).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, check_positive
from flowsamp.types import Array

__all__ = ["SoftSphereMixture", "soft_sphere_mixture", "pair_correlation"]

_SIGMA = np.array([[1.0, 1.2], [1.2, 1.4]])


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class SoftSphereMixture(Target):
    """See the module docstring; ``species`` is the tuple of labels (0 = A, 1 = B)."""

    num_particles: int
    spatial_dim: int
    box_length: float
    beta: float
    species: tuple
    cutoff: float = 2.0

    def positions(self, x: Array) -> Array:
        return jnp.reshape(x, (self.num_particles, self.spatial_dim))

    def _pair_terms(self, x: Array) -> tuple[Array, Array]:
        """``(r2, sigma2)`` over the upper triangle of pairs ``i < j``."""
        p = self.positions(x)
        L = jnp.asarray(self.box_length, p.dtype)
        d = p[:, None, :] - p[None, :, :]
        d = d - L * jnp.round(d / L)
        iu = np.triu_indices(self.num_particles, 1)
        s = np.asarray(self.species)
        sig2 = jnp.asarray(_SIGMA[s[iu[0]], s[iu[1]]] ** 2, p.dtype)
        return jnp.sum(d * d, -1)[iu], sig2

    def pair_energies(self, x: Array) -> Array:
        r"""The shifted :math:`u_{ab}(r)` of every pair ``i < j`` (in :math:`\varepsilon`)."""
        r2, sig2 = self._pair_terms(x)
        rc2 = sig2 * self.cutoff**2
        u = (sig2 / r2) ** 6 - (sig2 / rc2) ** 6
        return jnp.where(r2 < rc2, u, 0.0)

    def energy(self, x: Array) -> Array:
        """Potential energy per particle :math:`U/N` of one configuration."""
        return jnp.sum(self.pair_energies(x)) / self.num_particles

    def log_prob(self, x: Array) -> Array:
        return -self.beta * self.num_particles * self.energy(x)

    def pair_histogram(self, x: Array, edges: Array) -> Array:
        """Number of pairs ``i < j`` (all species) with minimum-image distance in each bin."""
        r2, _ = self._pair_terms(x)
        r = jnp.sqrt(r2)
        e = jnp.asarray(edges, r.dtype)
        return jnp.sum((r[:, None] >= e[:-1]) & (r[:, None] < e[1:]), axis=0).astype(r.dtype)

    def lattice(self) -> np.ndarray:
        """A square/cubic starting configuration, flat (species alternate along it)."""
        m = math.ceil(self.num_particles ** (1.0 / self.spatial_dim) - 1e-9)
        g = (np.arange(m) + 0.5) * self.box_length / m
        pts = np.stack(np.meshgrid(*([g] * self.spatial_dim), indexing="ij"), -1).reshape(-1, self.spatial_dim)
        return pts[: self.num_particles].reshape(-1).astype(jnp.result_type(float))

    def __repr__(self) -> str:
        return (f"SoftSphereMixture(N={self.num_particles}, d={self.spatial_dim}, L={self.box_length:.4g}, "
                f"beta={self.beta:g})")


def pair_correlation(target: SoftSphereMixture, mean_histogram: Array, edges: Array) -> np.ndarray:
    r""":math:`g(r)` per bin from the mean pair histogram :math:`\bar h_k`:
    :math:`g_k = \bar h_k / [\tfrac{N(N-1)}{2} V_k / L^d]` with :math:`V_k` the shell volume
    (2-D: :math:`\pi(r_{k+1}^2 - r_k^2)`; bins must end at or below :math:`L/2`)."""
    e = np.asarray(edges, float)
    if e[-1] > target.box_length / 2 + 1e-12:
        raise ValueError(f"pair_correlation: edges must end at or below L/2 = {target.box_length / 2:.4g}")
    d = target.spatial_dim
    shell = (math.pi if d == 2 else 4.0 * math.pi / 3.0) * (e[1:] ** d - e[:-1] ** d)
    n = target.num_particles
    ideal = 0.5 * n * (n - 1) * shell / target.box_length**d
    return np.asarray(mean_histogram) / ideal


def soft_sphere_mixture(
    num_particles: int = 16,
    density: float = 0.5,
    temperature: float = 1.0,
    *,
    spatial_dim: int = 2,
    cutoff: float = 2.0,
) -> SoftSphereMixture:
    r"""50:50 binary soft-sphere mixture at number density ``density`` (in :math:`\sigma_{AA}^{-d}`).

    Parameters
    ----------
    num_particles
        ``N`` (even; the first ``N/2`` are A).
    density, temperature
        :math:`\rho = N/L^d` and :math:`T = 1/\beta` (:math:`\varepsilon = k_B = 1`).
    spatial_dim
        2 or 3.
    cutoff
        :math:`r_{c,ab}/\sigma_{ab}`; must satisfy :math:`1.4\,c \le L/2` (one image per pair).
    """
    if isinstance(num_particles, bool) or not isinstance(num_particles, (int, np.integer)) or num_particles < 2 \
            or num_particles % 2:
        raise ValueError(f"num_particles must be an even int >= 2, got {num_particles!r}")
    if spatial_dim not in (2, 3):
        raise ValueError(f"spatial_dim must be 2 or 3, got {spatial_dim!r}")
    n = int(num_particles)
    rho = check_positive("density", density)
    T = check_positive("temperature", temperature)
    c = check_positive("cutoff", cutoff)
    L = (n / rho) ** (1.0 / spatial_dim)
    if 1.4 * c > L / 2:
        raise ValueError(f"cutoff {c} sigma_BB = {1.4 * c:.3g} exceeds half the box L/2 = {L / 2:.3g}: "
                         "use more particles, a lower density or a smaller cutoff")
    species = tuple([0] * (n // 2) + [1] * (n // 2))
    return SoftSphereMixture(dim=n * spatial_dim, num_particles=n, spatial_dim=int(spatial_dim), box_length=L,
                             beta=1.0 / T, species=species, cutoff=c)
