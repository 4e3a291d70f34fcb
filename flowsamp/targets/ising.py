r"""Ising model on a periodic L x L square lattice, with Kaufman's exact ln Z.

.. math::

    E(s) = -J \sum_{\langle ij \rangle} s_i s_j, \quad s_i \in \{-1, +1\}, \qquad
    \tilde p(s) = e^{-\beta E(s)}, \qquad K = \beta J .

Exact references: ``log_Z`` from Kaufman's finite-lattice formula (Phys. Rev. 76, 1232
(1949)), the density of states g(E) as exact integers from the transfer matrix
(``exact_dos`` / ``exact_log_dos``), exact sampling by enumeration for N <= 20, and the
critical coupling :math:`K_c = \tfrac12 \ln(1 + \sqrt 2)`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import logsumexp

from flowsamp.targets.lattice import SpinTarget, check_lattice_args

__all__ = ["Ising", "ising", "kaufman_log_Z", "K_C"]

#: Critical coupling of the square-lattice Ising model, K_c = ln(1 + sqrt 2) / 2.
K_C = 0.5 * np.log1p(np.sqrt(2.0))


def _log_abs_2cosh(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ax + np.log1p(np.exp(-2.0 * ax))


def _log_abs_2sinh(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ax = np.abs(x)
    with np.errstate(divide="ignore"):
        return ax + np.log(-np.expm1(-2.0 * ax)), np.sign(x)


def kaufman_log_Z(L: int, K: float) -> float:
    r"""Exact ln Z of the periodic L x L Ising model at coupling ``K = beta J`` (float64).

    .. math::

        Z = \tfrac12 (2\sinh 2K)^{N/2} \Big[\prod_r 2\cosh\tfrac{L\gamma_{2r+1}}{2}
            + \prod_r 2\sinh\tfrac{L\gamma_{2r+1}}{2} + \prod_r 2\cosh\tfrac{L\gamma_{2r}}{2}
            + \prod_r 2\sinh\tfrac{L\gamma_{2r}}{2}\Big],

    ``r = 0..L-1``, :math:`\cosh\gamma_k = \cosh 2K \coth 2K - \cos(\pi k / L)` for
    ``k >= 1`` and :math:`\gamma_0 = 2K + \ln\tanh K` (signed).  Products are summed in
    log space with their signs.
    """
    L = int(L)
    K = float(K)
    n = L * L
    if K == 0.0:
        return n * np.log(2.0)
    k = np.arange(2 * L, dtype=np.float64)
    c = np.cosh(2 * K) / np.tanh(2 * K) - np.cos(np.pi * k / L)
    gamma = np.arccosh(np.maximum(c, 1.0))
    gamma[0] = 2 * K + np.log(np.tanh(K))
    odd, even = gamma[1::2], gamma[0::2]
    logs, signs = [], []
    for g in (odd, even):
        logs.append(np.sum(_log_abs_2cosh(L * g / 2)))
        signs.append(1.0)
        la, sg = _log_abs_2sinh(L * g / 2)
        logs.append(np.sum(la))
        signs.append(float(np.prod(sg)))
    logs = np.array(logs)
    signs = np.array(signs)
    keep = signs != 0
    total = logsumexp(logs[keep], b=signs[keep])
    return float(-np.log(2.0) + 0.5 * n * np.log(2 * np.sinh(2 * K)) + total)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Ising(SpinTarget):
    """Ferromagnetic Ising model; see :func:`ising`."""

    def _reachable_unequal_counts_formula(self) -> np.ndarray:
        if self.L % 2:
            raise NotImplementedError(f"energy levels of odd L = {self.L} > 6 are not tabulated")
        # even L >= 4: u = 0, 4, 6, ..., 2N - 4, 2N  (u = 2 and 2N - 2 are unreachable)
        n2 = 2 * self.num_sites
        return np.concatenate([[0], np.arange(4, n2 - 3, 2), [n2]])


def ising(L: int, beta: float, J: float = 1.0) -> Ising:
    """Ising model :math:`E = -J\\sum s_i s_j` on a periodic ``L x L`` lattice at inverse temperature ``beta``.

    Parameters
    ----------
    L : int
        Linear size (``N = L**2`` spins, ``2N`` bonds); ``L >= 2``.
    beta : float
        Inverse temperature; ``log_prob(s) = -beta * energy(s)``.
    J : float
        Ferromagnetic coupling (> 0).

    Returns
    -------
    Ising
        Frozen target with ``log_prob``, ``energy``, ``energy_levels``, ``log_Z``
        (Kaufman, float64), ``exact_log_dos()``, ``sample`` (N <= 20), ``mode_of``
        (sign of the magnetisation, ties to the first site) and ``mode_weights = [1/2, 1/2]``.
    """
    L, beta, J = check_lattice_args(L, beta, J)
    return Ising(
        dim=L * L,
        log_Z=kaufman_log_Z(L, beta * J),
        mode_weights=np.array([0.5, 0.5]),
        num_modes=2,
        L=L,
        beta=beta,
        J=J,
        spin_values=np.array([-1, 1]),
        bond_a=2,
        bond_b=-1,
    )

