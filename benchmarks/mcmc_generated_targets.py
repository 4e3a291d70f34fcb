"""MCMC at its documented defaults on targets generated here, none used by the tests: silent failures.

Two user paths, each as the README shows it:

* ``nuts``: ``fs.kernels.window_adaptation(fs.kernels.nuts, log_prob).run(key, x0, 1000)``, then
  ``fs.sample(key, nuts(log_prob, **params), states, 1000, target_ess=1000, max_steps=10000)``;
* ``flow``: ``fs.samplers.adaptive_flow_mcmc(key, log_prob, fs.flows.rq_spline(d), x0)``.

Chains start from ``N(0, I)`` (16 chains for NUTS, 64 for the flow sampler). The mixtures pass
``mode_of`` (largest responsibility) and ``num_modes``, as a user of ``fs.targets.mixture_benchmark``
would: without them all NUTS chains can sit in one mode, and no between-chain diagnostic can see
the others (``mixture2_d3_sep3`` then came out z ~ 700 and "converged" in 3 of 3 runs). Every
target has exact first and second moments per coordinate (``_generated_targets``). For each
coordinate ``j`` and ``f = x_j`` and ``x_j^2`` the z-score is (sample mean of f - exact) / MCSE,
MCSE = sd(f) / sqrt(bulk ESS of f) over all chains (numpyro's estimator); second moments are
skipped where x^2 has no finite fourth moment (Student's t with nu <= 8). Per run: max |z|,
``converged``, the first problem; per target:

* ``silent``: max |z| > 4 + a Bonferroni allowance (the 1e-3 two-sided quantile over the 2 d tests)
  and ``converged`` (a confident wrong answer);
* ``wrong_flagged``, ``right_flagged`` as in ``smc_generated_targets.py``.

Measured (session 17, 2-core CPU, 8 targets x 3 seeds, ``results/mcmc_generated_targets_*.json``):

* ``nuts``: 0 silent of 24. Flagged: the banana and the funnel in every run (R-hat 1.01-1.18,
  all |z| <= 3.5), the 3-mode mixture (chains split over modes, R-hat 1.66, |z| 14) and the
  2-mode mixture (every chain in one mode, |z| ~ 700: caught only by ``mode_of``, "only 1 of 2
  modes visited").
* ``flow``: 2 silent of 24, both on a heavy-tailed second moment, both low: the banana's
  E[x_1^2] (z -4.9; -3.0 and -1.6 in the other seeds) and the funnel's E[x_3^2] (z -4.2). The
  flow and the local moves under-cover the far tails (the banana's arms, the funnel's mouth), and
  R-hat, bulk and tail ESS of the coordinates do not see it. Every mixture, Gaussian and
  Student-t run came out within 3.0.

Run: ``python benchmarks/mcmc_generated_targets.py [--sampler nuts|flow] [--repeats 3] [--targets a,b]``;
writes ``benchmarks/results/mcmc_generated_targets_<sampler>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _generated_targets as gen  # noqa: E402
from _worker_rows import worker_row  # noqa: E402


def _targets():
    """name -> () -> :class:`_generated_targets.Generated` (exact moments; ``mode_of`` for mixtures)."""
    return {
        "gauss10_rotated_cond100": lambda: gen.rotated_gaussian(10, 100.0, 3.0, 11),
        "gauss40_scaled_0.1_30": lambda: gen.scaled_gaussian(40, 0.1, 30.0, 12),
        "gauss3_shifted": lambda: gen.rotated_gaussian(3, 5.0, 15.0, 13),
        "student4_nu5": lambda: gen.student(4, 5.0),
        "banana2_b0.05": lambda: gen.banana(2, 0.05),
        "funnel5_scale2": lambda: gen.funnel(5, 2.0),
        "mixture2_d3_sep3": lambda: gen.mixture(3, 2, 3.0, 14),
        "mixture3_d2_sep10": lambda: gen.mixture(2, 3, 10.0, 15),
    }


def _z_scores(pos: np.ndarray, mean: np.ndarray, m2) -> np.ndarray:
    """z of the per-coordinate first (and second) moments from (chains, draws, d) draws."""
    import flowsamp as fs

    fs_ = [pos] + ([pos**2] if m2 is not None else [])
    exact = [mean] + ([m2] if m2 is not None else [])
    zs = []
    for f, e in zip(fs_, exact):
        ess = np.maximum(fs.estimators.mcmc_ess(f), 1.0)
        flat = f.reshape(-1, f.shape[-1])
        zs.append((flat.mean(0) - e) / (flat.std(0) / np.sqrt(ess) + 1e-30))
    return np.concatenate(zs)


def worker(name, repeats, sampler):
    import warnings

    import jax
    import jax.numpy as jnp
    from scipy.stats import norm

    import flowsamp as fs

    t = _targets()[name]()
    lp, d, mean, m2 = t.log_prob, t.dim, t.mean, t.m2
    modes = {} if t.mode_of is None else {"mode_of": t.mode_of, "num_modes": len(t.weights)}
    runs = []
    for s in range(repeats):
        k0, k1, k2 = jax.random.split(jax.random.key(100 + s), 3)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if sampler == "nuts":
                x0 = jax.random.normal(k0, (16, d))
                states, params = fs.kernels.window_adaptation(fs.kernels.nuts, lp).run(k1, x0, 1000)
                out = fs.sample(k2, fs.kernels.nuts(lp, **params), states, 1000, target_ess=1000, max_steps=10000,
                                **modes)
            else:
                x0 = jax.random.normal(k0, (64, d))
                out = fs.samplers.adaptive_flow_mcmc(k1, lp, fs.flows.rq_spline(d), x0, **modes)
        pos = np.asarray(out.positions, np.float64)
        z = _z_scores(pos, mean, m2)
        j = int(np.argmax(np.abs(z)))
        runs.append({"seed": s, "max_abs_z": float(np.abs(z[j])), "worst_z": float(z[j]),
                     "worst": f"E[x_{j % d}{'^2' if j >= d else ''}]",
                     "converged": bool(out.converged), "problem": out.problems[0] if out.problems else "",
                     "draws": int(pos.shape[0] * pos.shape[1]), "wall_s": time.perf_counter() - t0})
    ntest = 2 * d if m2 is not None else d
    bound = max(4.0, float(norm.isf(1e-3 / (2 * ntest))))
    zmax = np.array([r["max_abs_z"] for r in runs])
    conv = np.array([r["converged"] for r in runs])
    return {"target": name, "dim": d, "sampler": sampler, "repeats": repeats, "z_bound": bound,
            "silent": int(np.sum((zmax > bound) & conv)), "wrong_flagged": int(np.sum((zmax > bound) & ~conv)),
            "right_flagged": int(np.sum((zmax <= bound) & ~conv)), "runs": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=",".join(_targets()))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sampler", default="nuts", choices=("nuts", "flow"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        name, repeats, sampler = a.worker
        print("ROW " + json.dumps(worker(name, int(repeats), sampler), default=float), flush=True)
        return
    out = a.out or os.path.join(HERE, "results", f"mcmc_generated_targets_{a.sampler}.json")
    rows = []
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    print(f"{'target':26s} {'bound':>5s} {'silent':>6s} {'wrong+flag':>10s} {'right+flag':>10s}   max|z| per run")
    for name in a.targets.split(","):
        r = worker_row(__file__, [name, str(a.repeats), a.sampler], name)
        if r is None:
            continue
        rows.append(r)
        zs = " ".join(f"{x['max_abs_z']:.1f}{'' if x['converged'] else '*'}" for x in r["runs"])
        print(f"{name:26s} {r['z_bound']:5.2f} {r['silent']:6d} {r['wrong_flagged']:10d} {r['right_flagged']:10d}   {zs}",
              flush=True)
    print("(* = flagged: converged False)")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": {"git": git, "repeats": a.repeats, "sampler": a.sampler}, "results": rows}, f, indent=1,
                  default=float)


if __name__ == "__main__":
    main()
