"""``fs.samplers.parallel_tempering`` at its defaults on targets generated here, none used by the tests.

Two groups, each from a seeded generator so that a held-out check can be repeated:

* **mixtures** (Dirichlet weights, component sds in [0.5, 1.5], exact weights and ln Z), 16 chains
  started within 0.1 of one component: the largest mode-weight error, z of ln Z, ``converged``;
* **unimodal** targets of ``benchmarks/smc_generated_targets.py`` (rotated ill-conditioned and
  shifted Gaussians, Student t, a banana), 16 chains from N(0, I): the error and z of ln Z.

Per run a ``silent`` failure is a wrong answer (a weight off by more than 0.05, or |z| > 4 for
ln Z) with ``converged`` claimed.

Run: ``python benchmarks/pt_generated_targets.py [--repeats 2] [--groups mixtures,unimodal]``;
writes ``benchmarks/results/pt_generated_targets.json`` (or ``--out``).
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

#: name -> (dim, components, separation, generator seed)
MIXTURES = {"mix4_d5_sep8": (5, 4, 8.0, 3), "mix3_d2_sep12": (2, 3, 12.0, 4), "mix5_d8_sep10": (8, 5, 10.0, 11),
            "mix2_d16_sep8": (16, 2, 8.0, 12)}
UNIMODAL = ("gauss5_shifted", "banana3_b0.03", "gauss20_rotated_cond1e3", "student5_nu3", "gauss50_rotated_cond30")


def worker(group, name, repeats):
    import jax
    import jax.numpy as jnp

    import flowsamp as fs

    runs = []
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        if group == "mixtures":
            d, k, sep, gs = MIXTURES[name]
            g = gen.mixture(d, k, sep, gs, offset=3.0)
            lp, mode_of, w, lz, mus = g.log_prob, g.mode_of, g.weights, g.log_Z, g.means
            x0 = jnp.asarray(mus[0] + 0.1 * rng.normal(size=(16, d)), jnp.float32)
            kw = dict(mode_of=mode_of, num_modes=k)
        else:
            import smc_generated_targets

            lp, d, lz = smc_generated_targets._targets()[name]()
            x0 = jnp.asarray(rng.normal(size=(16, d)), jnp.float32)
            kw = {}
        t0 = time.perf_counter()
        out = fs.samplers.parallel_tempering(jax.random.key(seed), lp, x0, warn=False, **kw)
        z = (out.log_Z - lz) / out.log_Z_se
        row = {"seed": seed, "log_Z_error": float(out.log_Z - lz), "z": float(z), "converged": bool(out.converged),
               "num_temperatures": int(len(out.betas)), "wall_s": time.perf_counter() - t0,
               "problem": out.problems[0] if out.problems else ""}
        wrong = abs(z) > 4
        if group == "mixtures":
            lab = np.asarray(jax.vmap(kw["mode_of"])(jnp.asarray(np.asarray(out.positions).reshape(-1, d))))
            est = np.bincount(lab, minlength=len(w)) / lab.size
            row["max_weight_error"] = float(np.max(np.abs(est - w)))
            wrong = wrong or row["max_weight_error"] > 0.05
        row["silent"] = bool(wrong and out.converged)
        runs.append(row)
    return {"group": group, "target": name, "repeats": repeats, "silent": int(sum(r["silent"] for r in runs)),
            "runs": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", default="mixtures,unimodal")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "pt_generated_targets.json"))
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        group, name, repeats = a.worker
        print("ROW " + json.dumps(worker(group, name, int(repeats)), default=float), flush=True)
        return
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    rows = []
    print(f"{'target':26s} {'silent':>6s}   per run: max|dw| (mixtures) / ln Z z, * = flagged, rungs")
    for group in a.groups.split(","):
        for name in (MIXTURES if group == "mixtures" else UNIMODAL):
            r = worker_row(__file__, [group, name, str(a.repeats)], name)
            if r is None:
                continue
            rows.append(r)
            cells = " ".join((f"dw {x['max_weight_error']:.3f} " if "max_weight_error" in x else "")
                             + f"z {x['z']:+.1f}{'' if x['converged'] else '*'} ({x['num_temperatures']})"
                             for x in r["runs"])
            print(f"{name:26s} {r['silent']:6d}   {cells}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"meta": {"git": git, "repeats": a.repeats}, "results": rows}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
