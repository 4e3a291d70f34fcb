"""Exact bond-count polynomials of q-state spins on a periodic L x L lattice.

The count ``G(u)`` of configurations with exactly ``u`` unequal nearest-neighbour bonds
determines the density of states of both the Ising model (q = 2, E = J (2u - 2N)) and the
q-state Potts model (E = -J (2N - u)):

.. math::

    Z(z) = \\sum_{\\text{configs}} z^{u(s)} = \\sum_u G(u)\\, z^u .

``G`` is computed exactly (Python integers) by a site-by-site ("broken-line") transfer
matrix over polynomials in ``z``: the first row is fixed to one representative of each
orbit under column rotations/reflections and colour relabelling (weighted by the orbit
size), rows 1..L-1 are added one site at a time, and the periodic bonds back to row 0 close
the torus.  Arithmetic is done modulo 2**64 (uint64 wrap-around) and, when q**N needs more
bits, also modulo the Mersenne prime 2**61 - 1, joined by the Chinese remainder theorem.
This is an exact enumeration in disguise; it plays the role of Beale's polynomial
(Beale, PRL 76, 78 (1996)) for lattices with up to ~1000 row states (Ising L <= 10).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["MAX_ROW_STATES", "enumerate_configurations", "unequal_bond_counts"]

#: Largest number of row states ``q**L`` the transfer matrix accepts.
MAX_ROW_STATES = 1024


_MERSENNE_61 = (1 << 61) - 1


def _canonical_row(row: tuple[int, ...]) -> tuple[int, ...]:
    """Smallest image of ``row`` under column rotations/reflections and colour relabelling."""
    L = len(row)
    best = None
    for seq in (row, row[::-1]):
        for shift in range(L):
            img = seq[shift:] + seq[:shift]
            relabel: dict[int, int] = {}
            canon = tuple(relabel.setdefault(x, len(relabel)) for x in img)
            if best is None or canon < best:
                best = canon
    return best


def _first_row_orbits(L: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Representatives of first rows up to symmetry, and their orbit sizes."""
    counts: dict[tuple[int, ...], int] = {}
    for idx in range(q**L):
        row = tuple(int(d) for d in np.unravel_index(idx, (q,) * L))
        c = _canonical_row(row)
        counts[c] = counts.get(c, 0) + 1
    reps = np.array(list(counts.keys()), dtype=np.int64)
    return reps, np.array(list(counts.values()), dtype=object)


def _shift_up(x: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Multiply the polynomial on the last axis by ``z**k`` (``k`` broadcast, 0..3)."""
    if np.isscalar(k):
        if k == 0:
            return x
        out = np.zeros_like(x)
        out[..., k:] = x[..., :-k]
        return out
    out = np.zeros_like(x)
    for kk in np.unique(k):
        mask = (k == kk)[..., None]
        out += np.where(mask, _shift_up(x, int(kk)), 0).astype(x.dtype)
    return out


def _counts_modulo(L: int, q: int, reps: np.ndarray, modulus: int | None) -> np.ndarray:
    """Per-representative counts ``(R, 2N+1)`` modulo 2**64 (``None``) or a Mersenne prime."""
    n = L * L
    degree = 2 * n
    num_reps = reps.shape[0]
    dtype = np.uint64 if modulus is None else np.int64

    def red(x):
        return x if modulus is None else np.where(x >= modulus, x - modulus, x)

    # V[r, x_0, ..., x_{L-1}, u]; start: row 0 equals representative r
    v = np.zeros((num_reps,) + (q,) * L + (degree + 1,), dtype=dtype)
    u_h = np.sum(reps != np.roll(reps, -1, axis=1), axis=1)
    v[(np.arange(num_reps),) + tuple(reps.T) + (u_h,)] = 1
    digit = [
        np.arange(q).reshape((1,) * (1 + c) + (q,) + (1,) * (L - 1 - c)) for c in range(L)
    ]
    for _ in range(1, L):
        for c in range(L):
            ax = 1 + c
            total = np.take(v, [0], axis=ax)
            for val in range(1, q):
                total = red(total + np.take(v, [val], axis=ax))
            new = np.empty_like(v)
            for val in range(q):
                same = np.take(v, [val], axis=ax)
                other = total - same if modulus is None else np.mod(total - same, modulus)
                inner = red(same + _shift_up(other, 1))
                # horizontal bond to the left neighbour (already in the new row), and the
                # periodic bond to column 0 when closing the row
                k = np.zeros((1,) * (L + 1), dtype=np.int64)
                if c >= 1:
                    k = k + (digit[c - 1] != val)
                if c == L - 1 and L >= 2:
                    k = k + (digit[0] != val)
                k = np.take(np.broadcast_to(k, (1,) + (q,) * L), [0], axis=ax)
                shifted = _shift_up(inner, k)
                idx = [slice(None)] * v.ndim
                idx[ax] = slice(val, val + 1)
                new[tuple(idx)] = shifted if modulus is None else np.mod(shifted, modulus)
            v = new
    # close the torus: vertical bonds between the last row (the state) and row 0
    out = np.zeros((num_reps, degree + 1), dtype=object)
    for r in range(num_reps):
        k = sum(digit[c][0] != reps[r, c] for c in range(L))  # shape (1, q, ..., q)
        k = np.broadcast_to(k, (1,) + (q,) * L)
        shifted = _shift_up(v[r : r + 1], k.astype(np.int64))
        flat = shifted.reshape(-1, degree + 1)
        if modulus is None:
            col = flat.sum(axis=0, dtype=np.uint64)
            out[r] = [int(x) for x in col]
        else:
            out[r] = [int(x) % modulus for x in np.mod(flat, modulus).astype(object).sum(axis=0)]
    return out


@functools.lru_cache(maxsize=32)
def unequal_bond_counts(L: int, q: int) -> tuple[int, ...]:
    """Exact number of configurations with ``u`` unequal bonds, ``u = 0 .. 2 L**2``.

    Parameters
    ----------
    L : int
        Linear size of the periodic square lattice (``N = L**2`` sites, ``2N`` bonds).
    q : int
        Number of spin states (2 for Ising).

    Returns
    -------
    tuple of int
        ``G(u)`` for ``u = 0, ..., 2N`` as exact Python integers; ``sum(G) == q**N``.
    """
    if L < 2 or q < 2:
        raise ValueError(f"need L >= 2 and q >= 2, got L={L}, q={q}")
    if q**L > MAX_ROW_STATES:
        raise ValueError(
            f"transfer matrix with q**L = {q**L} row states is too large (limit {MAX_ROW_STATES})"
        )
    n = L * L
    reps, sizes = _first_row_orbits(L, q)
    total = q**n
    # counts modulo 2**64 (uint64 wrap-around), then modulo 2**61 - 1 if that is not enough
    res64 = _counts_modulo(L, q, reps, None)
    counts64 = [
        sum(int(s) * int(c) for s, c in zip(sizes, res64[:, u])) % (1 << 64)
        for u in range(2 * n + 1)
    ]
    if total < (1 << 64):
        counts = counts64
    else:
        if total >= (1 << 64) * _MERSENNE_61:
            raise ValueError(f"q**N = {q}**{n} too large for the exact counter")
        resm = _counts_modulo(L, q, reps, _MERSENNE_61)
        m64 = 1 << 64
        inv = pow(m64, -1, _MERSENNE_61)
        counts = []
        for u in range(2 * n + 1):
            a = counts64[u]
            b = sum(int(s) * int(c) for s, c in zip(sizes, resm[:, u])) % _MERSENNE_61
            counts.append(a + m64 * (((b - a) * inv) % _MERSENNE_61))
    if sum(counts) != total:  # pragma: no cover - guards the arithmetic
        raise RuntimeError("transfer-matrix counts do not sum to q**N")
    return tuple(counts)


def enumerate_configurations(L: int, q: int, limit: int = 1 << 22) -> np.ndarray:
    """All ``q**(L*L)`` configurations as state indices, shape ``(q**N, L, L)`` (int8).

    Raises ``ValueError`` when there are more than ``limit`` configurations.
    """
    n = L * L
    if q**n > limit:
        raise ValueError(f"{q}**{n} configurations exceed the enumeration limit {limit}")
    idx = np.arange(q**n)
    digits = np.array(np.unravel_index(idx, (q,) * n)).T.astype(np.int8)
    return digits.reshape(-1, L, L)
