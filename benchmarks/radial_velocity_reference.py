"""Brute-force reference for the period posterior of The Joker's 5-epoch radial-velocity toy.

Method (The Joker, Price-Whelan et al. 2017, with importance weights instead of rejection):
the model :func:`flowsamp.numpyro.models.radial_velocity` is linear in ``(v0, K)`` given the
non-linear parameters ``theta = (ln P, e, omega, M0)``,

.. math::

    y = A(\\theta) \\beta + \\varepsilon, \\quad A = [1, g(t)], \\quad
    g = \\cos(\\omega + f) + e\\cos\\omega, \\quad \\beta = (v_0, K)
    \\sim N(0, \\Lambda(\\theta)), \\quad \\varepsilon \\sim N(0, \\Sigma),

so :math:`p(y \\mid \\theta) = N(y; 0, \\Sigma + A \\Lambda A^\\top)` in closed form. We draw
:math:`\\theta` from its prior, with ``ln P`` stratified (one uniform draw per cell of a
regular grid of ``num_cells`` cells over [ln 2, ln 256], repeated ``draws_per_cell`` times;
unbiased, and the plain-IS standard errors below are conservative for it), and weight each
draw by :math:`w = p(y \\mid \\theta)`. The posterior mass of a period interval is the
self-normalised estimate :math:`\\hat m_k = \\sum_i w_i 1_k(P_i) / \\sum_i w_i` with the
delta-method standard error
:math:`\\mathrm{se}_k = \\sqrt{\\sum_i w_i^2 (1_k(P_i) - \\hat m_k)^2} / \\sum_i w_i`.

Run: ``python benchmarks/radial_velocity_reference.py [--draws-per-cell N] [--json PATH]``.
Prints the period-mode masses with standard errors, the weight ESS, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from flowsamp.numpyro.models import (
    RV_P_MAX,
    RV_P_MIN,
    RV_SIGMA,
    RV_T,
    RV_Y,
    rv_log_marginal_likelihood,
)

#: Period intervals [d] used to report mode masses (edges chosen between the posterior peaks
#: found by this script; see PERIOD_MODE_EDGES in flowsamp.numpyro.models).
from flowsamp.numpyro.models import PERIOD_MODE_EDGES

_E_A, _E_B = 0.867, 3.03


def log_marginal_likelihood(ln_P, e, omega, M0):
    """ln p(y | ln P, e, omega, M0) with (v0, K) integrated out against their Gaussian prior."""
    t, y, sigma = (jnp.asarray(a) for a in (RV_T, RV_Y, RV_SIGMA))
    return rv_log_marginal_likelihood(t, y, sigma, jnp.exp(ln_P), e, omega, M0)


@jax.jit
def _batch(key, cell_lo, cell_width):
    n = cell_lo.shape[0]
    k1, k2, k3, k4 = jax.random.split(key, 4)
    ln_P = cell_lo + cell_width * jax.random.uniform(k1, (n,), jnp.float64)
    e = jax.random.beta(k2, _E_A, _E_B, (n,), jnp.float64)
    omega = jax.random.uniform(k3, (n,), jnp.float64, 0.0, 2.0 * jnp.pi)
    M0 = jax.random.uniform(k4, (n,), jnp.float64, 0.0, 2.0 * jnp.pi)
    return ln_P, log_marginal_likelihood(ln_P, e, omega, M0)


def reference(key, num_cells: int = 2**20, draws_per_cell: int = 64, num_bins: int = 2000):
    """Return a dict with mode masses, standard errors, ESS and a ln P histogram of weights.

    Computed in float64 (``jax.enable_x64`` inside), whatever the caller's setting.
    """
    with jax.enable_x64(True):
        return _reference(key, num_cells, draws_per_cell, num_bins)


def _reference(key, num_cells, draws_per_cell, num_bins):
    lo, hi = math.log(RV_P_MIN), math.log(RV_P_MAX)
    width = (hi - lo) / num_cells
    cell_lo = jnp.asarray(lo + width * np.arange(num_cells))
    edges = np.log(np.asarray(PERIOD_MODE_EDGES))
    k = len(edges) - 1
    hist_edges = np.linspace(lo, hi, num_bins + 1)
    # running sums with a common log scale (log-sum-exp accumulation in float64)
    log_scale = -np.inf
    sw, sw2 = 0.0, 0.0
    swk, sw2k = np.zeros(k), np.zeros(k)
    hist = np.zeros(num_bins)
    for rep in range(draws_per_cell):
        ln_P, log_w = _batch(jax.random.fold_in(key, rep), cell_lo, width)
        ln_P, log_w = np.asarray(ln_P), np.asarray(log_w)
        new_scale = max(log_scale, float(np.max(log_w)))
        r = math.exp(log_scale - new_scale) if np.isfinite(log_scale) else 0.0
        sw, sw2, swk, sw2k, hist = sw * r, sw2 * r * r, swk * r, sw2k * r * r, hist * r
        log_scale = new_scale
        w = np.exp(log_w - log_scale)
        lab = np.clip(np.searchsorted(edges, ln_P, side="right") - 1, 0, k - 1)
        sw += w.sum()
        sw2 += (w * w).sum()
        swk += np.bincount(lab, weights=w, minlength=k)
        sw2k += np.bincount(lab, weights=w * w, minlength=k)
        hist += np.histogram(ln_P, bins=hist_edges, weights=w)[0]
    m = swk / sw
    # sum_i w_i^2 (1_k - m_k)^2 = sw2k (1 - 2 m_k) + m_k^2 sw2
    se = np.sqrt(np.maximum(sw2k * (1.0 - 2.0 * m) + m * m * sw2, 0.0)) / sw
    n_total = num_cells * draws_per_cell
    log_evidence = log_scale + math.log(sw / n_total)
    return {
        "mode_edges_days": list(PERIOD_MODE_EDGES),
        "mode_masses": m.tolist(),
        "mode_se": se.tolist(),
        "ess": float(sw * sw / sw2),
        "num_draws": n_total,
        "log_evidence": log_evidence,
        "ln_P_hist_edges": hist_edges.tolist(),
        "ln_P_hist": (hist / hist.sum()).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2**20)
    parser.add_argument("--draws-per-cell", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="benchmarks/results/radial_velocity_reference.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    out = reference(jax.random.key(args.seed), args.cells, args.draws_per_cell)
    out["wall_s"] = time.perf_counter() - t0
    print(f"draws {out['num_draws']:.3e}  weight ESS {out['ess']:.1f}  ln Z {out['log_evidence']:.4f}"
          f"  wall {out['wall_s']:.1f} s")
    print(f"{'period interval [d]':>24} {'mass':>10} {'se':>10}")
    for i, (m, s) in enumerate(zip(out["mode_masses"], out["mode_se"])):
        lo, hi = PERIOD_MODE_EDGES[i], PERIOD_MODE_EDGES[i + 1]
        print(f"{lo:>11.2f} - {hi:<10.2f} {m:>10.5f} {s:>10.5f}")
    import os

    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(out, fh)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
