r"""Many-well 32-D (FAB's benchmark): ln Z MAE of importance sampling with a FAB-trained flow.

``fs.targets.many_well(32)`` (16 independent double wells, ln Z = 164.695675 by quadrature) is
learned by ``fs.samplers.fab`` (RealNVP, fab-jax's many-well configuration scaled by the options
below), then ln Z is estimated ``--repeats`` (10) times by ``fs.importance_sampling`` with
``--samples`` (2000) flow draws each: the metric is the mean absolute error over the repeats
(FAB's published MAE with 2000 samples: 0.0316, Midgley et al. 2023, Table 2). The JSON also
records the mean reported SE, the ESS/N and Pareto k-hat of every repeat, the training history
(every ``--log-every`` iterations) and the wall time (compile included).

fab-jax (``lollcat/fab-jax``) is not on PyPI (``pip install fab-jax``: no matching
distribution), so it is not run side by side; its published figure is printed beside ours.

Usage::

    .venv/bin/python benchmarks/many_well.py [--iterations 2000] [--batch 512] [--layers 8]
        [--hidden 128,128] [--repeats 10] [--samples 2000] [--json benchmarks/results/many_well.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np

FAB_PUBLISHED_MAE = 0.0316


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", default="128,128")
    ap.add_argument("--intermediate", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/many_well.json")
    args = ap.parse_args(argv)

    import jax

    import flowsamp as fs

    t = fs.targets.many_well(args.dim)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    flow = fs.flows.realnvp(args.dim, num_layers=args.layers, hidden=hidden)
    t0 = time.perf_counter()
    out = fs.samplers.fab(jax.random.key(args.seed), t.log_prob, flow, num_iterations=args.iterations,
                          batch_size=args.batch, num_intermediate=args.intermediate, num_eval_samples=args.samples,
                          progress=True, warn=False)
    train_s = time.perf_counter() - t0
    reps = []
    for r in range(args.repeats):
        res = fs.importance_sampling(jax.random.key(1000 + r), flow, out.params, t.log_prob, args.samples, warn=False)
        reps.append({"log_Z": float(res.log_Z), "log_Z_se": float(res.log_Z_se),
                     "ess_fraction": float(res.ess) / args.samples, "k_hat": float(res.pareto_k)})
    err = np.array([r["log_Z"] - t.log_Z for r in reps])
    summary = {
        "target": f"many_well({args.dim})", "exact_log_Z": t.log_Z, "mae": float(np.mean(np.abs(err))),
        "mean_error": float(np.mean(err)), "mean_reported_se": float(np.mean([r["log_Z_se"] for r in reps])),
        "sd_of_estimates": float(np.std([r["log_Z"] for r in reps], ddof=1)),
        "mean_ess_fraction": float(np.mean([r["ess_fraction"] for r in reps])),
        "fab_published_mae": FAB_PUBLISHED_MAE, "meets_0.02": bool(np.mean(np.abs(err)) <= 0.02),
        "train_wall_s": train_s, "repeats": reps,
        "config": vars(args) | {"hidden": hidden},
        "history_every_50": {k: np.asarray(v)[::50].tolist() for k, v in out.history.items()},
        "final_step_sizes": out.step_sizes.tolist(),
        "fab_jax": "not run: `pip install fab-jax` finds no distribution on PyPI",
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "updated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(f"many_well({args.dim}): ln Z MAE over {args.repeats} x {args.samples} = {summary['mae']:.4f} "
          f"(FAB published {FAB_PUBLISHED_MAE}); mean error {summary['mean_error']:+.4f}, "
          f"mean SE {summary['mean_reported_se']:.4f}, ESS/N {summary['mean_ess_fraction']:.3f}, "
          f"train {train_s:.0f} s")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
