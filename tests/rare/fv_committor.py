r"""Finite-volume reference committor for 2-D potentials (tests and benchmarks only).

Solves the backward Kolmogorov equation :math:`\nabla\cdot(\pi\nabla q) = 0` with
:math:`q = 0` on :math:`A`, :math:`q = 1` on :math:`B` and no flux through the box edges, on a
uniform grid of spacing ``h``: the flux between neighbouring nodes :math:`i, j` is
:math:`\pi_{ij}(q_j - q_i)` with :math:`\pi_{ij}` the density at the edge midpoint, so node
:math:`i` outside :math:`A \cup B` satisfies :math:`\sum_j \pi_{ij}(q_j - q_i) = 0` (a
symmetric M-matrix system, solved by sparse LU). The Dirichlet energy is the edge sum

.. math:: \nu = \frac{\sum_{\langle ij\rangle} \pi_{ij} (q_j - q_i)^2}{h^2 \sum_i \pi_i}.

Nodes belong to A or B when they lie inside; the staircase boundary gives an O(h) error,
measured by comparing h with h/2 (``grid_convergence``).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


class FVCommittor(NamedTuple):
    x: np.ndarray  # (nx,)
    y: np.ndarray  # (ny,)
    q: np.ndarray  # (nx, ny)
    pi: np.ndarray  # (nx, ny) normalised so sum(pi) = 1
    nu: float
    inside: np.ndarray  # (nx, ny) bool: in A or B

    def interpolate(self, pts: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of q at points (n, 2)."""
        from scipy.interpolate import RegularGridInterpolator

        return RegularGridInterpolator((self.x, self.y), self.q, bounds_error=False, fill_value=None)(pts)


def solve(log_prob: Callable[[np.ndarray], np.ndarray], in_A, in_B, box, h: float) -> FVCommittor:
    """``log_prob``, ``in_A``, ``in_B`` act on numpy arrays (..., 2); ``box = (x0, x1, y0, y1)``."""
    x0, x1, y0, y1 = box
    x = np.arange(x0, x1 + 0.5 * h, h)
    y = np.arange(y0, y1 + 0.5 * h, h)
    nx, ny = len(x), len(y)
    X, Y = np.meshgrid(x, y, indexing="ij")
    P = np.stack([X, Y], -1)
    lp = log_prob(P)
    shift = np.max(lp)
    # floor at e^-80 of the peak: regions with no mass stay coupled (a non-singular system) and
    # contribute nothing measurable
    dens = lambda pts: np.exp(np.maximum(log_prob(pts) - shift, -80.0))  # noqa: E731
    pi = dens(P)
    pe_x = dens(np.stack([0.5 * (X[1:] + X[:-1]), Y[:-1]], -1))  # (nx-1, ny)
    pe_y = dens(np.stack([X[:, 1:], 0.5 * (Y[:, 1:] + Y[:, :-1])], -1))  # (nx, ny-1)
    a, b = in_A(P), in_B(P)
    fixed = a | b
    idx = np.arange(nx * ny).reshape(nx, ny)
    rows, cols, vals = [], [], []
    for c, i, j in ((pe_x, idx[:-1], idx[1:]), (pe_y, idx[:, :-1], idx[:, 1:])):
        i, j, c = i.ravel(), j.ravel(), c.ravel()
        rows += [i, j, i, j]
        cols += [j, i, i, j]
        vals += [-c, -c, c, c]
    K = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nx * ny,) * 2)
    qf = np.zeros(nx * ny)
    qf[b.ravel()] = 1.0
    free = ~fixed.ravel()
    rhs = -K[free][:, ~free] @ qf[~free]
    qf[free] = spla.spsolve(K[free][:, free].tocsc(), rhs)
    q = qf.reshape(nx, ny)
    num = np.sum(pe_x * np.diff(q, axis=0) ** 2) + np.sum(pe_y * np.diff(q, axis=1) ** 2)
    nu = float(num / (h**2 * pi.sum()))
    return FVCommittor(x, y, q, pi / pi.sum(), nu, fixed)


def grid_convergence(log_prob, in_A, in_B, box, h: float) -> tuple[FVCommittor, FVCommittor, dict]:
    """Solve at ``h`` and ``h/2``; report |nu_h/nu_{h/2} - 1| and the max |q_h - q_{h/2}| on common nodes."""
    coarse = solve(log_prob, in_A, in_B, box, h)
    fine = solve(log_prob, in_A, in_B, box, h / 2)
    dq = np.abs(coarse.q - fine.q[::2, ::2][: coarse.q.shape[0], : coarse.q.shape[1]])
    w = coarse.pi
    return coarse, fine, {
        "nu_rel_change": abs(coarse.nu / fine.nu - 1.0),
        "q_pi_rmse_change": float(np.sqrt(np.sum(w * dq**2))),
        "q_max_change_weighted": float(np.max(dq * (w > 1e-6 * w.max()))),
    }


# --- Müller-Brown in Rotskoff's setting: V scaled by 0.1 at beta = 1 (log pi = -0.1 V) ---
MB_A, MB_B, MB_RADIUS, MB_BETA = np.array([-0.5, 1.5]), np.array([0.5, 0.0]), 0.2, 0.1
MB_BOX = (-1.8, 1.3, -0.6, 2.2)
# the two saddles and the intermediate minimum C (Müller & Brown 1979)
MB_SADDLES = np.array([[-0.82200156, 0.6243128], [0.21248658, 0.29298833]])
MB_MIN_C = np.array([-0.05001082, 0.46669410])


def mb_problem():
    from flowsamp.targets.muller_brown import muller_brown_potential

    lp = lambda p: -MB_BETA * muller_brown_potential(p)  # noqa: E731
    in_A = lambda p: np.sum((p - MB_A) ** 2, -1) < MB_RADIUS**2  # noqa: E731
    in_B = lambda p: np.sum((p - MB_B) ** 2, -1) < MB_RADIUS**2  # noqa: E731
    return lp, in_A, in_B, MB_BOX
