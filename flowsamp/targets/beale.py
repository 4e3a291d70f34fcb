r"""Exact density of states of the 2-D Ising model on an L x L torus (Beale 1996), for any even L.

Kaufman's finite-lattice partition function (Phys. Rev. 76, 1232 (1949)) is, with
:math:`x = e^{-2K}`, :math:`a_l = (1+x^2)^2 - b\cos(\pi l/L)`, :math:`b = 2x(1-x^2)`,
:math:`r_l = \sqrt{a_l^2 - b^2}`, :math:`j = L/2`,

.. math::

    \sum_u G(u)\, x^u = x^N Z = 2^{-1-N/2}\Big[\prod_{k<L} C_{2k+1} + \prod_{k<L} S_{2k+1}
        + \prod_{k<L} C_{2k} + \prod_{k<L} S_{2k}\Big],
    \quad C_l = (a_l + r_l)^j + (a_l - r_l)^j,\; S_l = (a_l + r_l)^j - (a_l - r_l)^j,

where ``G(u)`` counts configurations with ``u`` unequal bonds (E = J(2u - 2N)).  Every factor is a
polynomial in x: :math:`C_l` is even in :math:`r_l`; the :math:`S_l` pair up
(:math:`\cos(\pi l/L) = \cos(\pi(2L - l)/L)`) into squares, except :math:`l = 0` and
:math:`l = L`, where :math:`r_0 = (1 - 2x - x^2)(1 + x^2)` (Kaufman's sign of
:math:`\gamma_0`, which changes at :math:`T_c`) and :math:`r_L = (1 + x^2)(1 + 2x - x^2)`.
Following Beale (PRL 76, 78 (1996)) the polynomial's coefficients are recovered exactly: it is
evaluated at the M-th roots of unity in :math:`y = x^2` (M a power of two > N), transformed back by an FFT with ``mpmath`` at a precision that
resolves :math:`G(0) = 2` next to :math:`\max G \approx 2^N`, transformed back and rounded to
integers (the largest distance to an integer is returned as a check).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["beale_dos", "beale_log_dos"]


def beale_dos(L: int, J: float = 1.0) -> tuple[np.ndarray, list[int], float]:
    """Exact ``(energies, counts, max_rounding)`` of the L x L Ising torus (L even, >= 2).

    ``counts`` are Python ints (g(E) up to 2**N); ``max_rounding`` is the largest distance of a
    recovered coefficient from an integer (a correct run gives < 1e-6).
    """
    try:
        import mpmath as mp
    except ImportError as err:  # pragma: no cover
        raise ImportError("beale_dos needs mpmath (pip install mpmath)") from err
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2 or L % 2:
        raise ValueError(f"L must be an even int >= 2, got {L!r}")
    L = int(L)
    N, j = L * L, L // 2
    old = mp.mp.dps
    mp.mp.dps = int(0.46 * N) + 60  # resolve 2 next to 2**N, plus the 2**(N/2) cancellation
    try:
        cos = [mp.cos(mp.pi * l / L) for l in range(2 * L)]
        M = 1 << (N + 1 - 1).bit_length()  # a power of two > N (no aliasing of degree N)

        def value(y):
            x = mp.sqrt(y)
            x2 = x * x
            b = 2 * x * (1 - x2)
            base = (1 + x2) ** 2

            def pieces(l, r=None):
                a = base - b * cos[l]
                if r is None:
                    r = mp.sqrt(a * a - b * b)
                p, m = (a + r) ** j, (a - r) ** j
                return p + m, p - m

            z1 = z2 = z3 = z4 = mp.mpf(1)
            for k in range(L):
                c, s = pieces(2 * k + 1)
                z1 *= c
                if k < L // 2:
                    z2 *= s * s
                c, s = pieces(2 * k)
                z3 *= c
                if 0 < k < L // 2:
                    z4 *= s * s
            z4 *= pieces(0, (1 - 2 * x - x2) * (1 + x2))[1]
            z4 *= pieces(L, (1 + 2 * x - x2) * (1 + x2))[1]
            return (z1 + z2 + z3 + z4) / 2 ** (1 + N // 2)

        roots = [mp.expjpi(mp.mpf(2 * k) / M) for k in range(M)]
        vals = [None] * M
        for k in range(M // 2 + 1):
            vals[k] = value(roots[k])
            if k:
                vals[M - k] = mp.conj(vals[k])
        coef = _fft(vals, [mp.conj(r) for r in roots[: M // 2]])  # sum_k Q(y_k) y_k^-v
        counts, worst = [], 0.0
        for v in range(N + 1):
            c = mp.re(coef[v]) / M
            n = int(mp.nint(c))
            worst = max(worst, float(abs(c - n)))
            counts.append(n)
    finally:
        mp.mp.dps = old
    if sum(counts) != 2**N:
        raise ArithmeticError("Beale's polynomial does not sum to 2**N (precision too low)")
    u = 2 * np.arange(N + 1)
    keep = [i for i, c in enumerate(counts) if c > 0]
    energies = J * (2.0 * u[keep] - 2.0 * N)
    return energies, [counts[i] for i in keep], worst


def _fft(a: list, twiddle: list) -> list:
    """Radix-2 DFT :math:`A_v = \sum_k a_k w^{kv}` with ``twiddle[k] = w**k`` (k < len(a) / 2)."""
    n = len(a)
    if n == 1:
        return list(a)
    even, odd = _fft(a[0::2], twiddle[0::2]), _fft(a[1::2], twiddle[0::2])
    out = [None] * n
    for k in range(n // 2):
        t = twiddle[k] * odd[k]
        out[k], out[k + n // 2] = even[k] + t, even[k] - t
    return out


def beale_log_dos(L: int, J: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(energies, ln g)`` (float64) of the L x L Ising torus, as ``Ising.exact_log_dos``."""
    e, g, _ = beale_dos(L, J)
    return e, np.array([math.log(c) for c in g])
