r"""Particle fluids in a periodic box: ideal gas, hard rods on a ring (Tonks gas), hard spheres, Lennard-Jones.

A configuration is the flat vector of ``num_particles`` positions in ``spatial_dim`` dimensions,
shape ``(num_particles * spatial_dim,)``, in a periodic box of side ``box_length`` (minimum-image
distances; positions need not be wrapped). ``log_prob(x) = -beta U(x)``. For Widom insertion
(:func:`flowsamp.rare.widom`) every system gives

* ``insertion_energy(x, r)``: :math:`\beta\Delta U` of a test particle at ``r`` (``inf`` on overlap);
* ``neighbour_distances(x, r, k)``: the ``k`` smallest distances from ``r`` to the particles;
* ``provably_negligible(x, r)``: True when a bound from the nearest distance alone proves
  :math:`\beta\Delta U > 40` (the classical exact pre-filter; :math:`e^{-40}` is below any
  standard error here, and for hard cores it is exactly zero);
* ``beta_mu_ex_reference``: the reference excess chemical potential (exact for the Tonks gas at
  finite N, Carnahan-Starling for hard spheres, Johnson-Zollweg-Gubbins 1993 for Lennard-Jones)
  and ``finite_size_correction``.

Finite-size correction (Siepmann, McDonald & Frenkel 1992, J. Phys.: Condens. Matter 4, 679):
Widom in the canonical ensemble at :math:`N` differs from the thermodynamic limit by

.. math::

    \beta\mu^{ex}_N - \beta\mu^{ex}_\infty = \frac{1}{2N}\Big[\frac{\partial\beta P}{\partial\rho}
    - 1 - \rho\,\frac{\partial^2\beta P/\partial\rho^2}{\partial\beta P/\partial\rho}\Big]
    + O(N^{-2}),

which reproduces the exact Tonks-gas difference (0.050 vs 0.054 at N = 10, rho = 0.5).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, check_positive, float_dtype

__all__ = [
    "ParticleSystem",
    "ideal_gas",
    "hard_rods",
    "hard_spheres",
    "lennard_jones",
    "carnahan_starling_beta_mu_ex",
    "jzg_beta_mu_ex",
    "finite_size_correction",
]

_NEGLIGIBLE = 40.0  # beta Delta U above this counts as provably negligible (e^-40)


def finite_size_correction(beta_pressure, rho: float, n: int, h: float = 1e-4) -> float:
    """The :math:`O(1/N)` canonical-Widom correction above from :math:`\\beta P(\\rho)` (numerical derivatives)."""
    p1 = (beta_pressure(rho + h) - beta_pressure(rho - h)) / (2 * h)
    p2 = (beta_pressure(rho + h) - 2 * beta_pressure(rho) + beta_pressure(rho - h)) / h**2
    return (p1 - 1.0 - rho * p2 / p1) / (2.0 * n)


def carnahan_starling_beta_mu_ex(eta: float) -> float:
    r""":math:`\beta\mu^{ex} = (8\eta - 9\eta^2 + 3\eta^3)/(1 - \eta)^3` (Carnahan & Starling 1969)."""
    return (8 * eta - 9 * eta**2 + 3 * eta**3) / (1 - eta) ** 3


def _cs_beta_pressure(rho: float) -> float:
    eta = math.pi * rho / 6.0
    return rho * (1 + eta + eta**2 - eta**3) / (1 - eta) ** 3


# Johnson, Zollweg & Gubbins, Mol. Phys. 78, 591 (1993), Table 10: the 32 parameters x_1..x_32 of
# their modified Benedict-Webb-Rubin equation for the full (untruncated) Lennard-Jones fluid, gamma = 3.
_JZG_X = np.array([
    0.8623085097507421, 2.976218765822098, -8.402230115796038, 0.1054136629203555,
    -0.8564583828174598, 1.582759470107601, 0.7639421948305453, 1.753173414312048,
    2.798291772190376e3, -4.8394220260857657e-2, 0.9963265197721935, -3.698000291272493e1,
    2.084012299434647e1, 8.305402124717285e1, -9.574799715203068e2, -1.477746229234994e2,
    6.398607852471505e1, 1.603993673294834e1, 6.805916615864377e1, -2.791293578795945e3,
    -6.245128304568454, -8.116836104958410e3, 1.488735559561229e1, -1.059346754655084e4,
    -1.131607632802822e2, -8.867771540418822e3, -3.986982844450543e1, -4.689270299917261e3,
    2.593535277438717e2, -2.694523589434903e3, -7.218487631550215e2, 1.721802063863269e2,
])
_JZG_GAMMA = 3.0


def _jzg_ab(T: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([[0.0], _JZG_X])  # 1-based like the paper
    a = np.array([
        x[1] * T + x[2] * np.sqrt(T) + x[3] + x[4] / T + x[5] / T**2,
        x[6] * T + x[7] + x[8] / T + x[9] / T**2,
        x[10] * T + x[11] + x[12] / T,
        x[13],
        x[14] / T + x[15] / T**2,
        x[16] / T,
        x[17] / T + x[18] / T**2,
        x[19] / T**2,
    ])
    b = np.array([
        x[20] / T**2 + x[21] / T**3,
        x[22] / T**2 + x[23] / T**4,
        x[24] / T**2 + x[25] / T**3,
        x[26] / T**2 + x[27] / T**4,
        x[28] / T**2 + x[29] / T**3,
        x[30] / T**2 + x[31] / T**3 + x[32] / T**4,
    ])
    return a, b


def jzg_beta_pressure(rho: float, T: float) -> float:
    r""":math:`\beta P = \rho + \beta[\sum_{i=1}^8 a_i\rho^{i+1} + F\sum_{i=1}^6 b_i\rho^{2i+1}]`, :math:`F = e^{-\gamma\rho^2}`."""
    a, b = _jzg_ab(T)
    F = np.exp(-_JZG_GAMMA * rho**2)
    pa = sum(a[i] * rho ** (i + 2) for i in range(8))
    pb = sum(b[i] * rho ** (2 * i + 3) for i in range(6))
    return (rho * T + pa + F * pb) / T


def jzg_beta_mu_ex(rho: float, T: float) -> float:
    r"""Excess chemical potential of the full LJ fluid from the JZG 1993 equation of state.

    :math:`\mu^{ex} = A^{res}/N + P/\rho - T` with
    :math:`A^{res}/N = \sum_i a_i\rho^i/i + \sum_i b_i G_i`,
    :math:`G_1 = (1 - F)/(2\gamma)`, :math:`G_i = -(F\rho^{2(i-1)} - 2(i-1)G_{i-1})/(2\gamma)`.
    """
    a, b = _jzg_ab(T)
    F = np.exp(-_JZG_GAMMA * rho**2)
    G = [(1 - F) / (2 * _JZG_GAMMA)]
    for i in range(1, 6):
        G.append(-(F * rho ** (2 * i) - 2 * i * G[-1]) / (2 * _JZG_GAMMA))
    a_res = sum(a[i] * rho ** (i + 1) / (i + 1) for i in range(8)) + sum(b[i] * G[i] for i in range(6))
    p = jzg_beta_pressure(rho, T) * T
    return (a_res + p / rho - T) / T


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class ParticleSystem(Target):
    """``num_particles`` particles in a periodic cube of side ``box_length`` (see the module doc)."""

    num_particles: int
    spatial_dim: int
    box_length: float
    beta: float
    kind: str
    sigma: float = 1.0
    cutoff: float = math.inf
    beta_mu_ex_reference: float = math.nan
    finite_size_correction: float = 0.0
    tail_correction: float = 0.0

    # --- geometry -------------------------------------------------------------------------------
    def positions(self, x):
        return jnp.reshape(x, (self.num_particles, self.spatial_dim))

    def _sq_dist(self, d):
        L = jnp.asarray(self.box_length, d.dtype)
        d = d - L * jnp.round(d / L)
        return jnp.sum(d * d, axis=-1)

    def _pair(self, r2):
        """beta u(r) of squared distances."""
        s2 = jnp.asarray(self.sigma**2, r2.dtype)
        if self.kind == "hard":
            return jnp.where(r2 < s2, jnp.inf, 0.0).astype(r2.dtype)
        if self.kind == "ideal":
            return jnp.zeros_like(r2)
        inv6 = (s2 / r2) ** 3
        u = 4.0 * (inv6 * inv6 - inv6)
        return jnp.where(r2 < self.cutoff**2, self.beta * u, 0.0)

    def log_prob(self, x):
        p = self.positions(x)
        r2 = self._sq_dist(p[:, None, :] - p[None, :, :])
        n = self.num_particles
        iu = jnp.triu_indices(n, 1)
        return -jnp.sum(self._pair(r2[iu]))

    def insertion_energy(self, x, r):
        r""":math:`\beta\Delta U` of a test particle at ``r`` (``(spatial_dim,)``) in configuration ``x``."""
        r2 = self._sq_dist(self.positions(x) - r)
        return jnp.sum(self._pair(r2))

    def neighbour_distances(self, x, r, k: int):
        """The ``k`` smallest distances from ``r`` to the particles, ascending."""
        r2 = self._sq_dist(self.positions(x) - r)
        return jnp.sqrt(-jax.lax.top_k(-r2, k)[0])

    def provably_negligible(self, x, r):
        r"""True when :math:`\beta\Delta U > 40` follows from the nearest distance :math:`r_1` alone.

        Hard cores: :math:`r_1 < \sigma` (exact). Lennard-Jones: every other pair is at least
        :math:`-\beta\varepsilon`, so :math:`\beta\Delta U \ge \beta u(r_1) - (N - 1)\beta\varepsilon`;
        negligible when that exceeds 40.
        """
        r1 = self.neighbour_distances(x, r, 1)[0]
        if self.kind == "hard":
            return r1 < self.sigma
        if self.kind == "ideal":
            return jnp.zeros((), bool)
        return self._pair(r1**2) - (self.num_particles - 1) * self.beta > _NEGLIGIBLE

    def lattice(self) -> np.ndarray:
        """A simple-cubic (or, in 1-D, evenly spaced) starting configuration, flat."""
        m = math.ceil(self.num_particles ** (1.0 / self.spatial_dim) - 1e-9)
        g = (np.arange(m) + 0.5) * self.box_length / m
        pts = np.stack(np.meshgrid(*([g] * self.spatial_dim), indexing="ij"), -1).reshape(-1, self.spatial_dim)
        return pts[: self.num_particles].reshape(-1).astype(float_dtype())

    def _sample(self, key, n):
        if self.kind != "hard" or self.spatial_dim != 1:
            raise NotImplementedError
        # Tonks gas: N-1 sorted gaps' uniforms on [0, L - N sigma], offsets i sigma, a random shift
        N, L, s = self.num_particles, self.box_length, self.sigma
        k1, k2 = jax.random.split(key)
        dtype = float_dtype()
        u = jnp.sort(jax.random.uniform(k1, (n, N - 1), dtype, 0.0, L - N * s), axis=1)
        pos = jnp.concatenate([jnp.zeros((n, 1), dtype), u + s * jnp.arange(1, N, dtype=dtype)], axis=1)
        return (pos + jax.random.uniform(k2, (n, 1), dtype, 0.0, L)) % L

    def sample(self, key, n):
        if self.kind != "hard" or self.spatial_dim != 1:
            raise NotImplementedError(f"{self.kind} particles in {self.spatial_dim}-D have no exact sampler")
        return super().sample(key, n)

    def __repr__(self) -> str:
        return (f"ParticleSystem({self.kind}, N={self.num_particles}, d={self.spatial_dim}, "
                f"L={self.box_length:.4g}, beta={self.beta:g})")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"num_particles must be a positive int, got {n!r}")
    return int(n)


def ideal_gas(num_particles: int, box_length: float, spatial_dim: int = 3) -> ParticleSystem:
    """Non-interacting particles: :math:`\Delta U = 0`, so :math:`\beta\mu^{ex} = 0` exactly."""
    n = _check_n(num_particles)
    return ParticleSystem(dim=spatial_dim * n, num_particles=n, spatial_dim=int(spatial_dim),
                          box_length=check_positive("box_length", box_length), beta=1.0, kind="ideal",
                          beta_mu_ex_reference=0.0)


def hard_rods(num_particles: int, length: float, sigma: float = 1.0) -> ParticleSystem:
    r"""Tonks gas: ``num_particles`` rods of length ``sigma`` on a ring of circumference ``length``.

    Exact insertion probability at finite N (Widom; REFERENCE.md):
    :math:`e^{-\beta\mu^{ex}} = (L - (N+1)\sigma)^N / [L (L - N\sigma)^{N-1}]`.
    ``sample`` is exact.
    """
    n = _check_n(num_particles)
    L, s = check_positive("length", length), check_positive("sigma", sigma)
    if L <= (n + 1) * s:
        raise ValueError(f"length {L} leaves no room to insert a rod: need > (N + 1) sigma = {(n + 1) * s}")
    p_ins = n * math.log(L - (n + 1) * s) - math.log(L) - (n - 1) * math.log(L - n * s)
    return ParticleSystem(dim=n, num_particles=n, spatial_dim=1, box_length=L, beta=1.0, kind="hard", sigma=s,
                          beta_mu_ex_reference=-p_ins)


def hard_spheres(num_particles: int, packing_fraction: float) -> ParticleSystem:
    r"""Hard spheres of diameter 1 in a periodic cube at packing fraction :math:`\eta = \pi\rho/6`.

    Reference :math:`\beta\mu^{ex}`: Carnahan-Starling at :math:`N \to \infty`;
    ``finite_size_correction`` from the module formula with the CS pressure (add it to the
    reference to compare with canonical Widom at this N).
    """
    n = _check_n(num_particles)
    eta = float(packing_fraction)
    if not 0.0 < eta < 0.5:
        raise ValueError(f"packing_fraction must be in (0, 0.5) (fluid), got {packing_fraction}")
    rho = 6.0 * eta / math.pi
    return ParticleSystem(dim=3 * n, num_particles=n, spatial_dim=3, box_length=(n / rho) ** (1 / 3), beta=1.0,
                          kind="hard", beta_mu_ex_reference=carnahan_starling_beta_mu_ex(eta),
                          finite_size_correction=finite_size_correction(_cs_beta_pressure, rho, n))


def lennard_jones(num_particles: int, density: float, temperature: float, cutoff: float = 2.5) -> ParticleSystem:
    r"""Lennard-Jones fluid (:math:`\varepsilon = \sigma = 1`), truncated (not shifted) at ``cutoff``.

    :math:`\beta\Delta U` of an insertion is the truncated sum; the full-potential chemical
    potential adds the standard tail correction (Frenkel & Smit, eq. 3.2.10)

    .. math:: \beta\mu_{tail} = \beta\,\tfrac{16}{3}\pi\rho\,[\tfrac13 r_c^{-9} - r_c^{-3}],

    stored in ``tail_correction``. Reference: JZG 1993 (full potential) plus the finite-size
    correction with the JZG pressure.
    """
    n = _check_n(num_particles)
    rho, T = check_positive("density", density), check_positive("temperature", temperature)
    L = (n / rho) ** (1 / 3)
    if cutoff > L / 2:
        raise ValueError(f"cutoff {cutoff} exceeds half the box ({L / 2:.3f}): use more particles")
    tail = 16.0 / 3.0 * math.pi * rho * (cutoff**-9 / 3 - cutoff**-3) / T
    return ParticleSystem(dim=3 * n, num_particles=n, spatial_dim=3, box_length=L, beta=1.0 / T, kind="lj",
                          cutoff=float(cutoff), beta_mu_ex_reference=jzg_beta_mu_ex(rho, T),
                          finite_size_correction=finite_size_correction(lambda r: jzg_beta_pressure(r, T), rho, n),
                          tail_correction=tail)
