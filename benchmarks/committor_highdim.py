"""High-dimensional committor: Müller-Brown (V scaled by 0.1, beta = 1) plus ``--extra`` harmonic dimensions.

pi(x, y, w) = pi_MB(x, y) prod_i N(w_i; 0, sigma^2) with A, B the discs of radius 0.2 in (x, y) (any w). The
committor does not depend on w, so q(x, y, w) = q_2D(x, y) and nu = E_pi |grad q|^2 equals the 2-D value
(finite-volume reference, tests/rare/fv_committor.py). For each seed fs.rare.committor runs with importance
sampling (umbrella windows, replica exchange, MBAR) and with the same number of plain draws from pi; reported
per mode: the mean and the variance over seeds of nu_hat / nu, of q at the saddles and the intermediate minimum,
and the pi-weighted RMSE of q(x, y, w) against q_2D on exact-pi draws of w over the 2-D grid.

    python benchmarks/committor_highdim.py [--seeds 3] [--extra 8] [--rounds 40]
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
from _fv import MB_MIN_C, MB_SADDLES, mb_problem, solve

A, B, R, SIGMA = np.array([-0.5, 1.5]), np.array([0.5, 0.0]), 0.2, 0.3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--extra", type=int, default=8)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "committor_highdim.json"))
    args = p.parse_args()
    lp_np, a_np, b_np, box = mb_problem()
    ref = solve(lp_np, a_np, b_np, box, 0.01)
    mb = fs.targets.muller_brown(beta=0.1)
    m = args.extra

    def log_prob(x):
        return mb.log_prob(x[:2]) - 0.5 * jnp.sum(x[2:] ** 2) / SIGMA**2

    in_A = lambda x: jnp.sum((x[..., :2] - A) ** 2, -1) < R**2  # noqa: E731
    in_B = lambda x: jnp.sum((x[..., :2] - B) ** 2, -1) < R**2  # noqa: E731
    X, Y = np.meshgrid(ref.x, ref.y, indexing="ij")
    grid = np.stack([X, Y], -1).reshape(-1, 2)
    w = ref.pi.reshape(-1)
    keep = w > 1e-12
    grid, w, q_ref = grid[keep], w[keep] / w[keep].sum(), ref.q.reshape(-1)[keep]
    extra = SIGMA * np.random.default_rng(0).normal(size=(len(grid), m))
    pts = np.vstack([MB_SADDLES, MB_MIN_C])
    x0 = jnp.asarray(np.hstack([np.stack([A, B]), np.zeros((2, m))]), jnp.float32)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for is_ in (True, False):
            t0 = time.perf_counter()
            res = fs.rare.committor(jax.random.key(seed), log_prob, in_A, in_B, x0, importance_sampling=is_,
                                    num_rounds=args.rounds)
            full = jnp.asarray(np.hstack([grid, extra]), jnp.float32)
            q = np.concatenate([np.asarray(res.q(full[i:i + 65536])) for i in range(0, len(grid), 65536)])
            qp = np.asarray(res.q(jnp.asarray(np.hstack([pts, np.zeros((3, m))]), jnp.float32)))
            row = {"seed": seed, "importance_sampling": is_, "nu_ratio": res.nu / ref.nu, "nu_se_ratio": res.nu_se / ref.nu,
                   "rmse": float(np.sqrt(np.sum(w * (q - q_ref) ** 2))), "q_points": qp.tolist(),
                   "converged": res.converged, "problems": res.problems, "wall_s": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for is_ in (True, False):
        sel = [r for r in rows if r["importance_sampling"] == is_]
        qp = np.array([r["q_points"] for r in sel])
        summary["is" if is_ else "plain"] = {
            "nu_ratio_mean": float(np.mean([r["nu_ratio"] for r in sel])),
            "nu_ratio_var": float(np.var([r["nu_ratio"] for r in sel], ddof=1)) if len(sel) > 1 else float("nan"),
            "rmse_mean": float(np.mean([r["rmse"] for r in sel])),
            "rmse_var": float(np.var([r["rmse"] for r in sel], ddof=1)) if len(sel) > 1 else float("nan"),
            "q_points_mean": qp.mean(0).tolist(),
            "q_points_var": (qp.var(0, ddof=1) if len(sel) > 1 else np.full(3, np.nan)).tolist(),
        }
    print("summary", json.dumps(summary))
    Path(args.out).write_text(json.dumps({"reference": {"nu": ref.nu, "q_points": ref.interpolate(pts).tolist(),
                                                        "extra_dims": m, "sigma": SIGMA},
                                          "rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
