"""2-D lattice phi^4 on an L x L torus in the form of Albergo, Kanwar & Shanahan (PRD 100, 034515, 2019)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, as_points, float_dtype

__all__ = ["Phi4Lattice", "phi4_2d", "free_field_log_Z", "magnetization", "two_point_function", "susceptibility"]


def _lattice_eigenvalues(L: int, m2: float) -> np.ndarray:
    r"""Eigenvalues :math:`2(m^2 + 4\sum_\mu \sin^2(\pi k_\mu / L))` of the free-field precision, shape (L, L)."""
    s = 4.0 * np.sin(np.pi * np.arange(L) / L) ** 2
    return 2.0 * (m2 + s[:, None] + s[None, :])


def free_field_log_Z(L: int, m2: float) -> float:
    r"""Exact ln Z of the free field (``lam = 0``, ``m2 > 0``) on the L x L torus.

    .. math::

        \ln Z = \frac{V}{2}\ln 2\pi - \frac12 \sum_k \ln\Big[2\big(m^2 + 4\sum_\mu \sin^2\frac{\pi k_\mu}{L}\big)\Big].
    """
    if m2 <= 0:
        raise ValueError(f"the free field needs m2 > 0, got {m2}")
    return float(0.5 * L * L * np.log(2 * np.pi) - 0.5 * np.sum(np.log(_lattice_eigenvalues(L, m2))))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Phi4Lattice(Target):
    r""":math:`\phi^4` theory on an ``L x L`` periodic lattice, ``dim = L*L``, row-major.

    ``x[i * L + j] = phi[i, j]``; :math:`\log\tilde p = -S` with

    .. math::

        S(\phi) = \sum_x \Big[\sum_{\mu} \phi_x (2\phi_x - \phi_{x+\hat\mu} - \phi_{x-\hat\mu})
           + m^2 \phi_x^2 + \lambda \phi_x^4\Big].

    ``log_Z`` exact for the free field (``lam = 0, m2 > 0``), else ``None``; exact
    sampling only for the free field (FFT). Mode label: 1 if the magnetisation
    :math:`M = \sum_x\phi_x > 0`, else 0, with ``mode_weights = [0.5, 0.5]`` (Z2 symmetry).
    """

    L: int
    m2: float
    lam: float

    def action(self, x):
        """S(phi) for ``x`` of shape ``(..., L*L)``."""
        x = as_points(x, self.dim)
        phi = x.reshape(x.shape[:-1] + (self.L, self.L))
        kinetic = 4.0 * phi**2 - phi * sum(
            jnp.roll(phi, s, axis=ax) for ax in (-2, -1) for s in (1, -1)
        )
        return jnp.sum(kinetic + self.m2 * phi**2 + self.lam * phi**4, axis=(-2, -1))

    def log_prob(self, x):
        return -self.action(x)

    def mode_of(self, x):
        x = as_points(x, self.dim)
        return (jnp.sum(x, axis=-1) > 0).astype(jnp.int32)

    def _sample(self, key, n):
        if self.lam != 0.0 or self.m2 <= 0.0:
            raise NotImplementedError("phi4_2d has exact samples only for the free field (lam = 0, m2 > 0)")
        dt = float_dtype()
        z = jax.random.normal(key, (n, self.L, self.L), dtype=dt)
        scale = jnp.asarray(1.0 / np.sqrt(_lattice_eigenvalues(self.L, self.m2)), dt)
        # circulant covariance Q^{-1}: y = F^{-1} diag(1/sqrt(eig)) F z is real with Cov(y) = Q^{-1}
        y = jnp.fft.ifft2(jnp.fft.fft2(z) * scale).real.astype(dt)
        return y.reshape(n, self.dim)

    def sample(self, key, n):
        if self.lam != 0.0 or self.m2 <= 0.0:
            raise NotImplementedError("phi4_2d has exact samples only for the free field (lam = 0, m2 > 0)")
        return super().sample(key, n)

    def precision(self) -> np.ndarray:
        r"""Free-field part of the action as a precision: :math:`S_0 = \tfrac12 \phi^\top Q \phi`, ``(V, V)``.

        :math:`Q = 2[(4 + m^2) I - A]` with ``A`` the torus adjacency (row-major sites).
        """
        L, V = self.L, self.dim
        idx = np.arange(V).reshape(L, L)
        A = np.zeros((V, V))
        for ax in (0, 1):
            for s in (1, -1):
                A[idx.ravel(), np.roll(idx, s, axis=ax).ravel()] += 1.0
        return 2.0 * ((4.0 + self.m2) * np.eye(V) - A)


def phi4_2d(L: int = 8, m2: float = -4.0, lam: float = 8.0) -> Phi4Lattice:
    """2-D phi^4 target on an ``L x L`` torus (tutorial point ``L = 8, m2 = -4, lam = 8``).

    Returns
    -------
    Phi4Lattice
        ``log_prob = -S``; ``log_Z`` exact for ``lam = 0, m2 > 0`` (``L = 8, m2 = 1``:
        -11.622885), else ``None``; mode = sign of the magnetisation.
    """
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"L must be an int >= 2, got {L!r}")
    m2, lam = float(m2), float(lam)
    if not (np.isfinite(m2) and np.isfinite(lam)):
        raise ValueError("m2 and lam must be finite")
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (the action is unbounded below otherwise), got {lam}")
    if lam == 0 and m2 <= 0:
        raise ValueError(f"lam = 0 needs m2 > 0 for a normalizable density, got m2 = {m2}")
    L = int(L)
    log_Z = free_field_log_Z(L, m2) if lam == 0 else None
    return Phi4Lattice(
        dim=L * L, log_Z=log_Z, mode_weights=np.array([0.5, 0.5]), num_modes=2, L=L, m2=m2, lam=lam
    )


def _lattice(x, L: int | None):
    x = jnp.asarray(x)
    if L is None:
        L = int(round(np.sqrt(x.shape[-1])))
    if L * L != x.shape[-1]:
        raise ValueError(f"last axis {x.shape[-1]} is not L*L for L={L}")
    return x.reshape(x.shape[:-1] + (L, L)), L


def magnetization(x) -> jax.Array:
    r"""Magnetisation :math:`M = \sum_x \phi_x` per configuration, shape ``x.shape[:-1]``."""
    return jnp.sum(jnp.asarray(x), axis=-1)


def two_point_function(x, L: int | None = None) -> jax.Array:
    r"""Connected two-point function estimated from configurations ``x`` of shape ``(n, L*L)``.

    .. math::

        G_c(y) = \frac1V\sum_{z}\big[\langle\phi_z\phi_{z+y}\rangle - \langle\phi_z\rangle\langle\phi_{z+y}\rangle\big],

    averaged over the sample (and over translations z); returns an ``(L, L)`` array.
    """
    phi, L = _lattice(x, L)
    if phi.ndim != 3:
        raise ValueError(f"expected configurations of shape (n, L*L), got {jnp.shape(x)}")
    f = jnp.fft.fft2(phi)
    corr = jnp.fft.ifft2(jnp.mean(f * jnp.conj(f), axis=0)).real / (L * L)  # <phi_z phi_{z+y}> averaged over z
    mbar = jnp.mean(phi, axis=0)
    fm = jnp.fft.fft2(mbar)
    disc = jnp.fft.ifft2(fm * jnp.conj(fm)).real / (L * L)
    return corr - disc


def susceptibility(x, L: int | None = None) -> jax.Array:
    r"""Two-point susceptibility :math:`\chi_2 = \sum_y G_c(y)` from configurations ``(n, L*L)``."""
    return jnp.sum(two_point_function(x, L))
