"""Widom insertion on the Lennard-Jones fluid at T* = 2: beta mu_ex vs cost, plain and pre-filtered.

N = 125 particles, truncated at r_c = 2.5 (tail correction added), configurations from flowsamp's
single-particle Metropolis sweeps (fs.rare.particle_sweeps: 8 chains, 100 burn-in sweeps, 400
sweeps kept every 4th). On the same test points (same key): plain Widom, the classical exact
pre-filter (skip only where beta Delta U > 40 is proven from the nearest distance), and the
learned audit pre-filter (fs.rare.widom(prefilter="ml")). Reported: beta mu_ex + tail with its SE,
the JZG 1993 reference plus the finite-size correction, expensive Delta U evaluations, and the
variance per expensive evaluation relative to plain (gain = plain / filtered).

    python benchmarks/widom.py [--insertions 512]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import flowsamp as fs


def configs(system, seed, step, chains=8, burn=100, sweeps=400, thin=4):
    x0 = jnp.asarray(np.tile(system.lattice(), (chains, 1)))
    run = jax.jit(lambda k, x, n: fs.rare.particle_sweeps(k, system, x, n, step, thin), static_argnums=2)
    xs, _ = run(jax.random.key(seed), x0, burn)
    xs, acc = run(jax.random.key(seed + 1), xs[:, -1], sweeps)
    return xs, float(acc.mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--insertions", type=int, default=512)
    args = p.parse_args()
    results = {}
    for rho, step in ((0.5, 0.2), (0.8, 0.12)):
        lj = fs.targets.lennard_jones(125, rho, 2.0)
        t0 = time.perf_counter()
        xs, acc = configs(lj, 0, step)
        row = {"acceptance": acc, "mcmc_s": time.perf_counter() - t0, "jzg": lj.beta_mu_ex_reference,
               "finite_size": lj.finite_size_correction, "tail": lj.tail_correction}
        for name, kw in (("plain", {}), ("exact", {"prefilter": "exact"}), ("ml", {"prefilter": "ml"}),
                         ("ml_amin0.05", {"prefilter": "ml", "a_min": 0.05})):
            t0 = time.perf_counter()
            r = fs.rare.widom(jax.random.key(2), lj, xs, args.insertions, **kw)
            row[name] = {"beta_mu_ex": r.beta_mu_ex + lj.tail_correction, "se": r.se, "num_expensive": r.num_expensive,
                         "num_insertions": r.num_insertions, "variance_per_evaluation": r.variance_per_evaluation,
                         "wall_s": time.perf_counter() - t0}
        for name in ("exact", "ml", "ml_amin0.05"):
            row[name]["gain_vs_plain"] = row["plain"]["variance_per_evaluation"] / row[name]["variance_per_evaluation"]
        results[f"rho{rho}"] = row
        print(f"rho={rho}", json.dumps(row), flush=True)
    out = Path(__file__).parent / "results" / "widom.json"
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
