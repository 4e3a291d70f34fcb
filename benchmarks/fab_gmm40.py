r"""FAB on FAB's 40-mode Gaussian mixture in 2-D (``fs.targets.gmm40()``, ln Z = 0).

``fs.samplers.fab`` (alpha = 2 buffer loss, prioritised buffer, AIS with HMC moves from the flow
to p^2/q) trains a rational-quadratic spline flow on an over-dispersed Gaussian base of scale
``--base-scale`` (the modes' spread, as in FAB), with spline bound 3 base sd; then ln Z is
estimated by importance sampling with the trained flow (``--samples`` draws, ``--repeats`` times).
Reported: ln Z, its SE, z against 0 for every repeat, ESS/N, Pareto k-hat, the fraction of the 40
modes holding flow samples, the verdict, the training history and the wall time.

Usage::

    .venv/bin/python benchmarks/fab_gmm40.py [--iterations 1000] [--batch 256]
        [--json benchmarks/results/fab_gmm40.json]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fab_common import fab_record, write_json  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", default="64,64")
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--base-scale", type=float, default=20.0)
    ap.add_argument("--intermediate", type=int, default=4)
    ap.add_argument("--step-size", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/fab_gmm40.json")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax

    import flowsamp as fs

    t = fs.targets.gmm40()
    s = args.base_scale
    base = fs.flows.informed_gaussian(jnp.eye(2) / s**2)
    flow = fs.flows.rq_spline(2, num_layers=args.layers, hidden=tuple(int(h) for h in args.hidden.split(",")),
                              num_bins=args.bins, bound=3.0 * s, base=base)
    t0 = time.perf_counter()
    opt = None if args.lr is None else optax.adam(args.lr)
    out = fs.samplers.fab(jax.random.key(args.seed), t.log_prob, flow, num_iterations=args.iterations,
                          batch_size=args.batch, num_intermediate=args.intermediate, step_size=args.step_size,
                          num_eval_samples=args.samples, optimizer=opt, progress=True, warn=False)
    train_s = time.perf_counter() - t0
    reps = []
    for r in range(args.repeats):
        res = fs.importance_sampling(jax.random.key(1000 + r), flow, out.params, t.log_prob, args.samples, warn=False)
        modes = np.unique(np.asarray(t.mode_of(res.samples))).size if hasattr(t, "mode_of") else None
        reps.append({"log_Z": float(res.log_Z), "log_Z_se": float(res.log_Z_se), "z": float(res.log_Z / res.log_Z_se),
                     "ess_fraction": float(res.ess) / args.samples, "k_hat": float(res.pareto_k),
                     "modes_with_samples": modes, "converged": bool(res.converged), "problems": list(res.problems)})
    z = np.array([r["z"] for r in reps])
    lz = np.array([r["log_Z"] for r in reps])
    summary = {
        "target": "gmm40 (FAB, 2-D, ln Z = 0)", "exact_log_Z": 0.0,
        "mean_log_Z": float(lz.mean()), "sd_of_estimates": float(lz.std(ddof=1)),
        "mean_reported_se": float(np.mean([r["log_Z_se"] for r in reps])),
        "max_abs_z": float(np.max(np.abs(z))), "all_within_4_se": bool(np.all(np.abs(z) < 4)),
        "mean_ess_fraction": float(np.mean([r["ess_fraction"] for r in reps])),
        "train_wall_s": train_s, "repeats": reps, "config": vars(args),
        **fab_record(out),
    }
    print(f"gmm40 FAB: ln Z {summary['mean_log_Z']:+.4f} (sd {summary['sd_of_estimates']:.4f}, mean SE "
          f"{summary['mean_reported_se']:.4f}), max |z| {summary['max_abs_z']:.2f}, ESS/N "
          f"{summary['mean_ess_fraction']:.3f}, modes with samples {[r['modes_with_samples'] for r in reps][:3]}, "
          f"train {train_s:.0f} s; converged {out.converged}: {'; '.join(out.problems) or 'no problems'}")
    write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
