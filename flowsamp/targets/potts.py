r"""q-state Potts model on a periodic L x L square lattice.

.. math::

    E(s) = -J \sum_{\langle ij \rangle} \delta(s_i, s_j), \quad s_i \in \{0, \dots, q-1\},
    \qquad \tilde p(s) = e^{-\beta E(s)} .

The transition is at :math:`\beta_c = \ln(1 + \sqrt q)/J`, first order for q > 4, with
ordered / disordered energies per site :math:`e_o, e_d` known exactly in the infinite
lattice (Baxter 1973); :func:`potts_transition` returns them (q = 10:
e_o = -1.664252482, e_d = -0.968203050, latent heat 0.696049432).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from flowsamp.targets.lattice import SpinTarget, check_lattice_args
from flowsamp.targets.lattice_dos import MAX_ROW_STATES, unequal_bond_counts

__all__ = ["Potts", "potts", "potts_beta_c", "potts_transition", "PottsTransition"]


def potts_beta_c(q: int, J: float = 1.0) -> float:
    """Critical inverse temperature :math:`\\beta_c = \\ln(1 + \\sqrt q) / J` of the square lattice."""
    return float(np.log1p(np.sqrt(q)) / J)


@dataclasses.dataclass(frozen=True)
class PottsTransition:
    """Infinite-lattice transition data per site (units of J) for q > 4."""

    beta_c: float
    e_ordered: float
    e_disordered: float
    latent_heat: float


def potts_transition(q: int) -> PottsTransition:
    r"""Exact energies per site at :math:`\beta_c` on the infinite square lattice (q > 4, J = 1).

    Baxter (J. Phys. C 6, L445 (1973)):
    :math:`e_{o,d} = -(1 + 1/\sqrt q)\,[1 \pm \tanh(\theta/2) \prod_{n\ge1}\tanh^2(n\theta)]`
    with :math:`2\cosh\theta = \sqrt q`; the latent heat is :math:`e_d - e_o`.
    """
    if q <= 4:
        raise ValueError(f"the transition is first order only for q > 4, got q={q}")
    theta = np.arccosh(np.sqrt(q) / 2.0)
    n = np.arange(1, 200)
    prod = np.prod(np.tanh(n * theta) ** 2)
    half_latent = (1 + 1 / np.sqrt(q)) * np.tanh(theta / 2) * prod
    mid = -(1 + 1 / np.sqrt(q))
    return PottsTransition(
        beta_c=potts_beta_c(q),
        e_ordered=float(mid - half_latent),
        e_disordered=float(mid + half_latent),
        latent_heat=float(2 * half_latent),
    )


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class Potts(SpinTarget):
    """Ferromagnetic q-state Potts model; see :func:`potts`."""

    @property
    def q(self) -> int:
        return self.num_states

    @property
    def beta_c(self) -> float:
        """Infinite-lattice critical inverse temperature ln(1 + sqrt q) / J."""
        return potts_beta_c(self.q, self.J)

    def _reachable_unequal_counts_formula(self) -> np.ndarray:
        if self.L % 2 or self.L < 4:
            raise NotImplementedError(f"energy levels of L = {self.L} are not tabulated")
        # even L >= 4, q >= 3: every u in 0..2N except 1, 2, 3, 5 (a domain wall on the
        # dual lattice has no dangling ends: the smallest are 4 (one site), 6 (a domino),
        # 7 (a domino of two colours)); all u up to 2N (a proper colouring) are reachable.
        u = np.arange(2 * self.num_sites + 1)
        return u[~np.isin(u, [1, 2, 3, 5])]


def potts(L: int, q: int, beta: float, J: float = 1.0) -> Potts:
    """q-state Potts model :math:`E = -J\\sum\\delta(s_i,s_j)` on a periodic ``L x L`` lattice.

    Parameters
    ----------
    L : int
        Linear size, ``L >= 2``.
    q : int
        Number of states (``q >= 2``; q = 2 is Ising with J_Ising = J/2 up to a constant).
    beta : float
        Inverse temperature; ``log_prob(s) = -beta * energy(s)``.
    J : float
        Ferromagnetic coupling (> 0).

    Returns
    -------
    Potts
        Frozen target; ``log_Z`` exact (from the transfer-matrix density of states) when
        ``q**L <= 1024`` and ``L <= 4``, else None; ``mode_of`` the majority state,
        ``mode_weights`` uniform 1/q.
    """
    L, beta, J = check_lattice_args(L, beta, J)
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 2:
        raise ValueError(f"q must be an int >= 2, got {q!r}")
    q = int(q)
    log_Z = None
    if q**L <= MAX_ROW_STATES and L <= 4:
        g = unequal_bond_counts(L, q)
        n2 = 2 * L * L
        terms = [math.log(c) + beta * J * (n2 - u) for u, c in enumerate(g) if c > 0]
        m = max(terms)
        log_Z = m + math.log(sum(math.exp(t - m) for t in terms))
    return Potts(
        dim=L * L,
        log_Z=log_Z,
        mode_weights=np.full(q, 1.0 / q),
        num_modes=q,
        L=L,
        beta=beta,
        J=J,
        spin_values=np.arange(q),
        bond_a=1,
        bond_b=0,
    )
