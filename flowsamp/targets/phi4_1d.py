"""1-D phi^4 chain with Dirichlet boundaries (Gabrié, Rotskoff & Vanden-Eijnden, PNAS 2022)."""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, as_points, check_positive

__all__ = ["Phi4Chain", "phi4_1d"]

_TAIL = 80.0  # grid ends where the site weight is below e^-80
_MAX_GRID = 12_001


def _grid(N: int, a: float, b: float, beta: float) -> np.ndarray:
    """Symmetric uniform grid (odd length, 0 included) holding all mass of one site.

    Half-width: smallest L >= 2 with beta/(aN) [(1 - L^2)^2/4 - |b| L] >= 80 (standard
    point: L = 4). Spacing: at most 0.005 and 1/8 of the coupling width 1/sqrt(beta aN).
    """
    c = beta / (a * N)
    L = 2.0
    while c * ((1 - L * L) ** 2 / 4 - abs(b) * L) < _TAIL:
        L += 0.25
    h = min(0.005, 0.125 / np.sqrt(beta * a * N))
    half = int(np.ceil(L / h))
    if 2 * half + 1 > _MAX_GRID:
        raise ValueError(f"phi4_1d transfer grid would need {2 * half + 1} points (max {_MAX_GRID})")
    return h * np.arange(-half, half + 1)


@functools.lru_cache(maxsize=16)
def _transfer(N: int, a: float, b: float, beta: float) -> tuple[float, float]:
    r"""ln Z and P(phi_mid > 0) by the transfer operator on a uniform grid.

    .. math::

        Z = \int \prod_{i=1}^N d\phi_i\; \prod_{i=0}^{N} e^{-\beta \frac{aN}{2}(\phi_{i+1}-\phi_i)^2}
            \prod_{i=1}^{N} e^{-\frac{\beta}{aN}[(1-\phi_i^2)^2/4 + b\phi_i]},

    each integral a trapezoid sum (spectrally accurate: the integrand is smooth and
    negligible at the grid ends). Vectors are rescaled at every step and the scales summed in
    logs. The mid-site probability splits the chain at site ``N // 2`` (0-based over free sites).
    """
    g = _grid(N, a, b, beta)
    h = g[1] - g[0]
    k = beta * a * N / 2.0
    T = np.exp(-k * (g[:, None] - g[None, :]) ** 2)  # coupling between neighbours
    w = h * np.exp(-beta / (a * N) * ((1.0 - g**2) ** 2 / 4.0 + b * g))  # site weight x dphi
    edge = np.exp(-k * g**2)  # coupling to the fixed phi = 0 ends

    def propagate(v, steps):
        """Apply (w T) ``steps`` times after v; returns the vector and the log of its scales."""
        log_s = 0.0
        for _ in range(steps):
            v = T @ (w * v)
            s = v.max()
            v, log_s = v / s, log_s + np.log(s)
        return v, log_s

    m = N // 2  # 0-based index of the middle free site = phi_{m+1}
    left, log_l = propagate(edge, m)  # density of phi_{m+1} from the left, before its weight
    right, log_r = propagate(edge, N - 1 - m)  # from the right
    dens = left * w * right
    log_Z = log_l + log_r + np.log(dens.sum())
    idx = np.arange(len(g)) - len(g) // 2  # g = idx * h
    p_pos = (dens[idx > 0].sum() + 0.5 * dens[idx == 0].sum()) / dens.sum()
    return float(log_Z), float(p_pos)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Phi4Chain(Target):
    r"""Discretised 1-D :math:`\phi^4` field on ``N`` free sites with :math:`\phi_0 = \phi_{N+1} = 0`.

    .. math::

        U(\phi) = \frac{aN}{2}\sum_{i=0}^{N} (\phi_{i+1}-\phi_i)^2
          + \frac{1}{aN}\sum_{i=1}^{N}\Big[\frac{(1-\phi_i^2)^2}{4} + b\,\phi_i\Big],
        \qquad \log\tilde p(\phi) = -\beta\, U(\phi),

    with ``x[i] = phi_{i+1}`` (``dim = N``). ``log_Z`` by a transfer-operator quadrature.
    Mode label: 1 if the middle site ``x[N // 2] > 0``, else 0; ``mode_weights`` are the
    exact probabilities (transfer operator; ``[0.5, 0.5]`` when ``b = 0``).
    """

    a: float
    b: float
    beta: float

    def log_prob(self, x):
        x = as_points(x, self.dim)
        zero = jnp.zeros(x.shape[:-1] + (1,), x.dtype)
        full = jnp.concatenate([zero, x, zero], axis=-1)
        aN = self.a * self.dim
        kinetic = 0.5 * aN * jnp.sum(jnp.diff(full, axis=-1) ** 2, axis=-1)
        local = jnp.sum((1.0 - x**2) ** 2 / 4.0 + self.b * x, axis=-1) / aN
        return -self.beta * (kinetic + local)

    def mode_of(self, x):
        x = as_points(x, self.dim)
        return (x[..., self.dim // 2] > 0).astype(jnp.int32)

    def informed_precision(self) -> np.ndarray:
        r"""Precision matrix of the informed Gaussian base (zero mean), numpy float64 ``(N, N)``.

        .. math::

            \Lambda = \beta\Big[\big(2aN + \tfrac{1}{aN}\big) I - aN\,(\delta_{i,j+1} + \delta_{i+1,j})\Big].
        """
        N, aN = self.dim, self.a * self.dim
        off = np.eye(N, k=1) + np.eye(N, k=-1)
        return self.beta * ((2 * aN + 1 / aN) * np.eye(N) - aN * off)


def phi4_1d(N: int = 100, a: float = 0.1, b: float = 0.0, beta: float = 20.0) -> Phi4Chain:
    """1-D phi^4 chain target (standard point ``N = 100, a = 0.1, b = 0, beta = 20``).

    Returns
    -------
    Phi4Chain
        ``log_prob = -beta U``; ``log_Z`` by the transfer operator (standard point:
        -196.912221); mode label = sign of the middle site, exact ``mode_weights``;
        ``informed_precision()`` for the informed Gaussian base; no exact sampler.
    """
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"N must be a positive int, got {N!r}")
    a = check_positive("a", a)
    beta = check_positive("beta", beta)
    b = float(b)
    if not np.isfinite(b):
        raise ValueError(f"b must be finite, got {b!r}")
    log_Z, p_pos = _transfer(int(N), a, b, beta)
    return Phi4Chain(
        dim=int(N),
        log_Z=log_Z,
        mode_weights=np.array([1.0 - p_pos, p_pos]),
        num_modes=2,
        a=a,
        b=b,
        beta=beta,
    )
