r"""Common pieces of the lattice spin targets (Ising, Potts) on a periodic L x L lattice.

A configuration ``s`` is an integer array of shape ``(L, L)`` (or ``(..., L, L)``) whose
entries are the model's spin values (``spin_values``: -1/+1 for Ising, 0..q-1 for
Potts).  Both models are written with the number of *equal* nearest-neighbour bonds,

.. math::

    E(s) = -J \sum_{\langle ij \rangle} \left[a\,\delta(s_i, s_j) + b\right], \qquad
    \log \tilde p(s) = -\beta E(s),

(Ising: a = 2, b = -1, i.e. :math:`-J s_i s_j`; Potts: a = 1, b = 0), so that the exact
density of states of both follows from one bond-count polynomial
(:mod:`flowsamp.targets.lattice_dos`), and the local kernels and flat-histogram samplers
need only :meth:`SpinTarget.site_energies`: the energy of a site's four bonds for every
candidate value, given its neighbours.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.targets.base import Target, check_n, float_dtype
from flowsamp.targets.lattice_dos import (
    MAX_ROW_STATES,
    enumerate_configurations,
    unequal_bond_counts,
)
from flowsamp.types import Array, PRNGKey

__all__ = ["SpinTarget", "neighbours", "ENUMERATION_LIMIT"]

#: Largest number of configurations ``q**N`` a spin target enumerates exactly.
ENUMERATION_LIMIT = 1 << 20


def neighbours(s: Array) -> Array:
    """The four nearest neighbours of every site, shape ``(..., L, L, 4)`` (periodic)."""
    return jnp.stack(
        [
            jnp.roll(s, 1, axis=-2),
            jnp.roll(s, -1, axis=-2),
            jnp.roll(s, 1, axis=-1),
            jnp.roll(s, -1, axis=-1),
        ],
        axis=-1,
    )


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True, repr=False)
class SpinTarget(Target):
    """Base class of q-state spin models on a periodic L x L square lattice.

    Subclasses set ``spin_values`` (numpy int array, ascending), ``bond_a``/``bond_b``
    (the coefficients above) and the exact references they have.
    """

    L: int
    beta: float
    J: float
    spin_values: np.ndarray
    bond_a: int
    bond_b: int

    # ------------------------------------------------------------------ basic sizes
    @property
    def num_states(self) -> int:
        """Number of spin states q (2 for Ising)."""
        return int(len(self.spin_values))

    @property
    def num_sites(self) -> int:
        """Number of sites N = L**2."""
        return self.L * self.L

    @property
    def bond_gap(self) -> float:
        """Energy of an unequal bond minus that of an equal one, ``a J`` (Wolff: p = 1 - e^{-beta a J})."""
        return float(self.bond_a * self.J)

    # ------------------------------------------------------------------ energies
    def _check(self, s: Array) -> Array:
        s = jnp.asarray(s)
        if s.ndim < 2 or s.shape[-2:] != (self.L, self.L):
            raise ValueError(f"expected spins of shape (..., {self.L}, {self.L}), got {s.shape}")
        if not jnp.issubdtype(s.dtype, jnp.integer):
            raise TypeError(f"spin configurations must be integer arrays, got {s.dtype}")
        return s

    def num_equal_bonds(self, s: Array) -> Array:
        """Number of equal nearest-neighbour bonds (int32), over the last two axes."""
        s = self._check(s)
        eq = (s == jnp.roll(s, 1, axis=-1)).astype(jnp.int32)
        eq = eq + (s == jnp.roll(s, 1, axis=-2)).astype(jnp.int32)
        return jnp.sum(eq, axis=(-2, -1))

    def energy(self, s: Array) -> Array:
        r""":math:`E(s) = -J \sum_{\langle ij\rangle}[a\,\delta(s_i,s_j) + b]` in the default float dtype."""
        eq = self.num_equal_bonds(s)
        raw = self.bond_a * eq + self.bond_b * 2 * self.num_sites
        return -jnp.asarray(self.J, float_dtype()) * raw.astype(float_dtype())

    def log_prob(self, s: Array) -> Array:
        r""":math:`\log \tilde p(s) = -\beta E(s)` (unnormalized)."""
        return -jnp.asarray(self.beta, float_dtype()) * self.energy(s)

    def site_energies(self, nb: Array) -> Array:
        """Energy of a site's four bonds for each candidate value, given neighbour values.

        ``nb`` has shape ``(..., 4)``; returns ``(..., q)`` in the default float dtype:
        :math:`e_v = -J \\sum_{k=1}^4 [a\\,\\delta(v, nb_k) + b]`.
        """
        values = jnp.asarray(self.spin_values, nb.dtype)
        eq = jnp.sum(nb[..., None, :] == values[:, None], axis=-1)  # (..., q)
        raw = self.bond_a * eq + 4 * self.bond_b
        return -jnp.asarray(self.J, float_dtype()) * raw.astype(float_dtype())

    def local_energies(self, s: Array) -> Array:
        """:meth:`site_energies` of every site, shape ``(..., L, L, q)``."""
        return self.site_energies(neighbours(self._check(s)))

    def state_index(self, s: Array) -> Array:
        """Map spin values to state indices 0..q-1 (int32)."""
        values = jnp.asarray(self.spin_values, s.dtype)
        return jnp.sum((s[..., None] == values) * jnp.arange(self.num_states), axis=-1).astype(
            jnp.int32
        )

    def spin_value(self, index: Array, dtype=jnp.int32) -> Array:
        """Map state indices 0..q-1 back to spin values."""
        return jnp.asarray(self.spin_values, dtype)[index]

    def ground_state(self, dtype=jnp.int32) -> Array:
        """A ground-state configuration (all spins equal to ``spin_values[0]``)."""
        return jnp.full((self.L, self.L), int(self.spin_values[0]), dtype)

    def random_state(self, key: PRNGKey, shape: tuple[int, ...] = (), dtype=jnp.int32) -> Array:
        """Uniformly random configurations of shape ``shape + (L, L)`` (infinite temperature)."""
        idx = jax.random.randint(key, shape + (self.L, self.L), 0, self.num_states)
        return self.spin_value(idx, dtype)

    # ------------------------------------------------------------------ modes
    def mode_of(self, s: Array) -> Array:
        """Majority state index; ties go to the tied state met first in raster order.

        The rule commutes with every permutation of the spin values, so each of the q
        labels has exact probability 1/q (``mode_weights``).
        """
        s = self._check(s)
        idx = self.state_index(s).reshape(s.shape[:-2] + (-1,))
        counts = jnp.sum(idx[..., None] == jnp.arange(self.num_states), axis=-2)
        tied = counts == jnp.max(counts, axis=-1, keepdims=True)
        first = jnp.argmax(jnp.take_along_axis(tied, idx, axis=-1), axis=-1)
        return jnp.take_along_axis(idx, first[..., None], axis=-1)[..., 0]

    # ------------------------------------------------------------------ exact references
    def energies_of_bond_counts(self, u: np.ndarray) -> np.ndarray:
        """Energies (float64) of configurations with ``u`` unequal bonds."""
        u = np.asarray(u)
        equal = 2 * self.num_sites - u
        return 0.0 - self.J * (self.bond_a * equal + self.bond_b * 2 * self.num_sites).astype(np.float64)

    def _reachable_unequal_counts(self) -> np.ndarray:
        """Reachable numbers of unequal bonds (sorted)."""
        if self.num_states ** self.L <= MAX_ROW_STATES and self.L <= 6:
            g = unequal_bond_counts(self.L, self.num_states)
            return np.array([u for u, c in enumerate(g) if c > 0])
        return self._reachable_unequal_counts_formula()

    def _reachable_unequal_counts_formula(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @functools.cached_property
    def energy_levels(self) -> np.ndarray:
        """All reachable energies, ascending (numpy float64)."""
        return np.sort(self.energies_of_bond_counts(self._reachable_unequal_counts()))

    def exact_dos(self) -> tuple[np.ndarray, list[int]]:
        """Exact density of states: ``(energies, g)`` with ``g`` exact Python integers.

        Energies are the reachable levels, ascending; ``sum(g) == q**N``.  Uses the
        transfer matrix of :mod:`flowsamp.targets.lattice_dos` (q**L <= 1024).
        """
        g = unequal_bond_counts(self.L, self.num_states)
        u = np.array([k for k, c in enumerate(g) if c > 0])
        energies = self.energies_of_bond_counts(u)
        order = np.argsort(energies)
        return energies[order], [g[int(u[i])] for i in order]

    def exact_log_dos(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(energies, log_g)`` (float64), ln g(E) over the reachable levels.

        ``log_g`` is the natural log of the exact count; at the ground state it is
        ln 2 for Ising and ln q for Potts.
        """
        energies, g = self.exact_dos()
        return energies, np.array([math.log(c) for c in g])

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        """All configurations (spin values, int8, ``(q**N, L, L)``) and their energies (float64)."""
        idx = enumerate_configurations(self.L, self.num_states, ENUMERATION_LIMIT)
        s = np.asarray(self.spin_values, np.int8)[idx]
        eq = (s == np.roll(s, 1, axis=-1)).sum(axis=(-2, -1)) + (s == np.roll(s, 1, axis=-2)).sum(
            axis=(-2, -1)
        )
        energy = -self.J * (self.bond_a * eq + self.bond_b * 2 * self.num_sites).astype(np.float64)
        return s, energy

    def _sample(self, key: PRNGKey, n: int) -> Array:
        configs, energy = self._enumerated
        logits = jnp.asarray(-self.beta * (energy - energy.min()), float_dtype())
        choice = jax.random.categorical(key, logits, shape=(n,))
        return jnp.asarray(configs, jnp.int32)[choice]

    @functools.cached_property
    def _enumerated(self) -> tuple[np.ndarray, np.ndarray]:
        return self.enumerate()

    def sample(self, key: PRNGKey, n: int) -> Array:
        """``n`` exact draws ``(n, L, L)`` (int32) by enumeration (q**N <= 2**20 only)."""
        check_n(n)
        if self.num_states**self.num_sites > ENUMERATION_LIMIT:
            raise NotImplementedError(
                f"exact sampling needs enumeration; {self.num_states}**{self.num_sites} "
                f"configurations exceed {ENUMERATION_LIMIT}"
            )
        return super().sample(key, n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(L={self.L}, beta={self.beta}, J={self.J}, q={self.num_states})"


def check_lattice_args(L: int, beta: float, J: float) -> tuple[int, float, float]:
    """Validate ``L`` (int >= 2), ``beta`` (finite, >= 0) and ``J`` (finite, > 0)."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"L must be an int >= 2, got {L!r}")
    beta = float(beta)
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
    J = float(J)
    if not np.isfinite(J) or J <= 0:
        raise ValueError(f"J must be finite and > 0 (ferromagnetic), got {J!r}")
    return int(L), beta, J
