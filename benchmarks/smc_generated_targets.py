"""``fs.samplers.smc`` (or ``ais``) at its defaults on targets generated here, none used by the tests: silent failures.

Each target has an exact ln Z (Gaussians by their determinant, Student's t by its normaliser, a
Haario banana, volume-preserving, by that of its Gaussian, Gaussian mixtures by their weights) and
is built from a seeded generator, so a held-out check can be repeated. Per run it records ln Z, its
reported SE, z = error / SE, ``converged`` and the first problem sentence; per target the counts of

* ``silent``: |z| > 4 and ``converged`` (a confident wrong answer),
* ``wrong_flagged``: |z| > 4 and flagged, ``right_flagged``: |z| <= 4 and flagged (false alarms
  by this measure; a run with a shared bias can be within 4 SE and still wrong).

The base is ``fs.targets.gaussian(0, base_var * I)`` (``--base-var``, default 25: narrower than the
long axes of the rotated ill-conditioned Gaussian, wider than everything else).

Run: ``python benchmarks/smc_generated_targets.py [--repeats 3] [--particles 1024] [--targets a,b]
[--kernel rwmh] [--target-ess 0.9] [--sampler ais]``;
writes ``benchmarks/results/smc_generated_targets.json`` (or ``--out``).
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
    """name -> () -> (log_prob, d, ln Z) (``_generated_targets``; the offsets make ln Z non-zero)."""
    def lz_only(g):
        def make():
            t = g()
            return t.log_prob, t.dim, t.log_Z
        return make

    return {
        "gauss20_rotated_cond1e3": lz_only(lambda: gen.rotated_gaussian(20, 1e3, 5.0, 1, offset=1.7)),
        "gauss5_shifted": lz_only(lambda: gen.rotated_gaussian(5, 10.0, 20.0, 2, offset=1.7)),
        "gauss50_rotated_cond30": lz_only(lambda: gen.rotated_gaussian(50, 30.0, 3.0, 5, offset=1.7)),
        "student5_nu3": lz_only(lambda: gen.student(5, 3.0)),
        "banana3_b0.03": lz_only(lambda: gen.banana(3, 0.03)),
        "mixture4_d5_narrow": lz_only(lambda: gen.mixture(5, 4, 8.0, 3, offset=3.0)),
        "mixture3_d2_sep12": lz_only(lambda: gen.mixture(2, 3, 12.0, 4, offset=3.0)),
    }


def worker(name, repeats, n, base_var, kernel="mala", target_ess="default", sampler="smc"):
    import jax
    import jax.numpy as jnp

    import flowsamp as fs

    lp, d, lz = _targets()[name]()
    base = fs.targets.gaussian(jnp.zeros(d), base_var * jnp.eye(d))
    runs = []
    for s in range(repeats):
        t0 = time.perf_counter()
        extra = {} if target_ess == "default" else {"target_ess": float(target_ess)}
        run = fs.samplers.smc if sampler == "smc" else fs.samplers.ais
        out = run(jax.random.key(s), lp, base, n, kernel=kernel, warn=False, **extra)
        err = float(out.log_Z) - lz
        runs.append({"seed": s, "log_Z": float(out.log_Z), "log_Z_se": float(out.log_Z_se), "error": err,
                     "z": err / float(out.log_Z_se), "converged": bool(out.converged),
                     "problem": out.problems[0] if out.problems else "", "wall_s": time.perf_counter() - t0,
                     "final_spread_change": out.diagnostics.get("final_spread_change"),
                     "final_spread_change_t": out.diagnostics.get("final_spread_change_t")})
    z = np.array([r["z"] for r in runs])
    conv = np.array([r["converged"] for r in runs])
    return {"target": name, "exact_log_Z": lz, "repeats": repeats, "particles": n, "base_var": base_var, "kernel": kernel,
            "target_ess": target_ess, "sampler": sampler,
            "mean_error": float(np.mean([r["error"] for r in runs])),
            "silent": int(np.sum((np.abs(z) > 4) & conv)), "wrong_flagged": int(np.sum((np.abs(z) > 4) & ~conv)),
            "right_flagged": int(np.sum((np.abs(z) <= 4) & ~conv)), "runs": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default=",".join(_targets()))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--particles", type=int, default=1024)
    ap.add_argument("--base-var", type=float, default=25.0)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "smc_generated_targets.json"))
    ap.add_argument("--kernel", default="mala", help="move kernel (mala, hmc, rwmh), every other option at its default")
    ap.add_argument("--target-ess", default="default", help="conditional-ESS target of the tempering (default: smc's)")
    ap.add_argument("--sampler", default="smc", choices=("smc", "ais"), help="fs.samplers.smc or fs.samplers.ais")
    ap.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        name, repeats, n, bv, kernel, tess, sampler = a.worker
        print("ROW " + json.dumps(worker(name, int(repeats), int(n), float(bv), kernel, tess, sampler), default=float),
              flush=True)
        return
    rows = []
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    print(f"{'target':26s} {'mean err':>9s} {'silent':>6s} {'wrong+flag':>10s} {'right+flag':>10s}   z per run")
    for name in a.targets.split(","):
        r = worker_row(__file__, [name, str(a.repeats), str(a.particles), str(a.base_var), a.kernel, a.target_ess,
                                  a.sampler], name)
        if r is None:
            continue
        rows.append(r)
        zs = " ".join(f"{x['z']:+.1f}{'' if x['converged'] else '*'}" for x in r["runs"])
        print(f"{name:26s} {r['mean_error']:+9.3f} {r['silent']:6d} {r['wrong_flagged']:10d} {r['right_flagged']:10d}   {zs}",
              flush=True)
    print("(* = flagged: converged False)")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"meta": {"git": git, "repeats": a.repeats, "particles": a.particles, "base_var": a.base_var,
                            "kernel": a.kernel, "target_ess": a.target_ess, "sampler": a.sampler},
                   "results": rows}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
